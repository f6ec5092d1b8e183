#!/usr/bin/env node
// `zynclone`: the daemons and tools. Each subcommand module is loaded only when
// asked for, so the simulator stays out of every product process.
import { enableCompileCache } from 'node:module';
import { packageVersion } from '../cli/version.js';

// A daemon's modules are compiled once and cached beside this file (where only
// its owner, root on a host, can write), so a restart by systemd is quick.
enableCompileCache(
  process.env.NODE_COMPILE_CACHE ?? new URL('.compile-cache', import.meta.url).pathname,
);

type Runner = (argv: string[]) => Promise<number>;

const subcommands: Record<string, { summary: string; load(): Promise<Runner> }> = {
  'clone-monitor': {
    summary: 'clone_monitor: publishes clone state and masks to XenStore, moves masked vifs',
    load: async () => (await import('../daemons/clone-monitor/main.js')).runCloneMonitor,
  },
  'net-monitor': {
    summary: 'clone_net_monitor: nftables lockdown of clone and original vifs, from XenStore',
    load: async () => (await import('../daemons/net-monitor/main.js')).runNetMonitor,
  },
  orchestrator: {
    summary: 'clone_guest_orchestrator: clone operations that VMs request through XenStore',
    load: async () => (await import('../daemons/orchestrator/main.js')).runOrchestrator,
  },
  'console-monitor': {
    summary: 'clone_console_monitor: web console (noVNC) of running clones, by ticket',
    load: async () => (await import('../daemons/console-monitor/main.js')).runConsoleMonitor,
  },
  web: {
    summary: "the operator's dashboard and HTTP API (--listen HOST:PORT, default loopback)",
    load: async () => (await import('../web/main.js')).runWeb,
  },
  xenstored: {
    summary: 'run the simulator XenStore server in the foreground (--socket PATH)',
    load: async () => (await import('../sim/xenstored/main.js')).runXenstored,
  },
  sim: {
    summary: 'a Xen host in a box: up | down | env | demo --root DIR',
    load: async () => (await import('../sim/main.js')).runSim,
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(subcommands).map((n) => n.length));
  const lines = Object.entries(subcommands).map(
    ([name, { summary }]) => `  ${name.padEnd(width)}  ${summary}`,
  );
  return `usage: zynclone <command> [args...]\n\ncommands:\n${lines.join('\n')}\n`;
}

const [name, ...rest] = process.argv.slice(2);
if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
  process.stdout.write(usage());
} else if (name === '-V' || name === '--version') {
  process.stdout.write(`${packageVersion()}\n`);
} else {
  const sub = subcommands[name];
  if (!sub) {
    process.stderr.write(`zynclone: unknown command '${name}'\n${usage()}`);
    process.exitCode = 2;
  } else {
    process.exitCode = await (await sub.load())(rest);
  }
}
