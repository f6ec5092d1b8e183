// ZynClone's daemons beside the simulator, run as systemd runs them on a Xen
// host: in the order of their units (the net monitor before the clone
// monitor), each in its own session and process group, output to a log file
// (DIR/log/NAME.log), started once and stopped by `sim down`. They are
// processes of the product's own entry point, never imports: the product and
// the simulator only meet through XenStore and `xl`, as on real Xen.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ZYNCLONE_NODE_FLAGS } from '../daemons/common/node-flags.js';
import { XsClient } from '../xenstore/index.js';
import { Journal, findProcesses } from './journal.js';
import type { SimPaths } from './paths.js';
import { isAlive, shq, sleep, terminate } from './proc.js';

/** The product's `zynclone` entry point that runs the daemons. */
export function productEntry(): string {
  return (
    process.env.ZYNCLONE_ENTRY ?? fileURLToPath(new URL('../bin/zynclone.js', import.meta.url))
  );
}

export interface Monitor {
  name: string;
  /** Options beyond --xenstore, which every daemon gets. */
  args(paths: SimPaths): string[];
  /** What the daemon's configuration needs in the simulator, before it starts. */
  prepare?(paths: SimPaths, journal: Journal): void;
}

/** In start order; stopped in reverse. */
export const MONITORS: readonly Monitor[] = [
  // The net monitor lives in the network driver domain: here the netdd namespace.
  { name: 'net-monitor', args: (paths) => ['--netns', `${paths.prefix}-netdd`] },
  { name: 'clone-monitor', args: (paths) => ['--root', paths.root] },
  { name: 'orchestrator', args: (paths) => ['--root', paths.root] },
  // The web console: on any free port unless base.json names one (a host uses 6080).
  {
    name: 'console-monitor',
    args: (paths) => ['--root', paths.root],
    prepare: (paths, journal) => {
      const base = join(paths.root, 'etc/xen/clone/base.json');
      if (existsSync(base)) return;
      mkdirSync(dirname(base), { recursive: true });
      journal.made({ kind: 'file', path: base });
      writeFileSync(base, '{ "console_port": 0 }\n');
    },
  },
  // The dashboard, on a free loopback port: its URL is in its log (`"msg":"serving"`).
  {
    name: 'web',
    args: (paths) => [
      '--root',
      paths.root,
      '--listen',
      '127.0.0.1:0',
      '--netns',
      `${paths.prefix}-netdd`,
    ],
  },
];

export function monitorLog(paths: SimPaths, name: string): string {
  return join(paths.root, 'log', `${name}.log`);
}

/** What the daemon's command line carries, unique to this simulator (its XenStore socket). */
function commandMatch(paths: SimPaths, m: Monitor): string {
  return ` ${m.name} --xenstore ${paths.xsSocket} `;
}

function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/**
 * The monitor's processes. A child it is starting carries the monitor's
 * command line until its exec, so a match whose parent matches too is not one.
 */
export function monitorPids(paths: SimPaths, m: Monitor): number[] {
  const pids = findProcesses(commandMatch(paths, m));
  return pids.filter((pid) => !pids.includes(parentPid(pid) ?? -1));
}

/** The environment `sim env` gives a shell: this simulator's xl, XenStore and root. */
export function simEnv(paths: SimPaths): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PATH: `${paths.bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
    XENSTORED_PATH: paths.xsSocket,
    ZYNCLONE_ROOT: paths.root,
  };
}

/**
 * `DIR/bin/vmclone` and `DIR/bin/zynclone`: the product as installed on the
 * simulated host, so that after `eval "$(zynclone sim env ...)"` a user's own
 * commands reach this simulator.
 */
export function writeProductLaunchers(paths: SimPaths, journal: Journal): void {
  const zynclone = productEntry();
  const tools = { zynclone, vmclone: join(dirname(zynclone), 'vmclone.js') };
  for (const [tool, entry] of Object.entries(tools)) {
    if (!existsSync(entry)) continue;
    const file = join(paths.bin, tool);
    journal.made({ kind: 'file', path: file });
    const flags = tool === 'zynclone' ? ZYNCLONE_NODE_FLAGS.map((f) => ` ${shq(f)}`).join('') : '';
    writeFileSync(file, `#!/bin/sh\nexec ${shq(process.execPath)}${flags} ${shq(entry)} "$@"\n`);
    chmodSync(file, 0o755);
  }
}

async function registeredPid(xs: XsClient, name: string): Promise<number | undefined> {
  const [pid, beat] = await Promise.all([
    xs.tryRead(`/tool/zynclone/daemons/${name}/pid`),
    xs.tryRead(`/tool/zynclone/daemons/${name}/heartbeat`),
  ]);
  return pid !== undefined && beat !== undefined ? Number(pid) : undefined;
}

/**
 * Starts every monitor not already running, in order, each once its
 * predecessor beats in XenStore. Writes one line per monitor to `out`; throws
 * with the daemon's log tail if one does not come up.
 */
export async function startMonitors(
  paths: SimPaths,
  out: (line: string) => void,
  timeoutMs = 20_000,
): Promise<void> {
  const journal = new Journal(paths.journal);
  const logDir = join(paths.root, 'log');
  if (!existsSync(logDir)) {
    journal.made({ kind: 'dir', path: logDir });
    mkdirSync(logDir, { recursive: true });
  }
  const xs = await XsClient.connect({ path: paths.xsSocket, reconnect: false });
  try {
    for (const m of MONITORS) {
      const log = monitorLog(paths, m.name);
      const running = monitorPids(paths, m);
      if (running.length > 0) {
        out(`${m.name} already running (pid ${running.join(', ')}), log: ${log}`);
        continue;
      }
      m.prepare?.(paths, journal);
      journal.made({ kind: 'proc', match: commandMatch(paths, m) });
      const fd = openSync(log, 'a');
      const child = spawn(
        process.execPath,
        [
          ...ZYNCLONE_NODE_FLAGS,
          productEntry(),
          m.name,
          '--xenstore',
          paths.xsSocket,
          ...m.args(paths),
        ],
        { detached: true, stdio: ['ignore', fd, fd], env: simEnv(paths) },
      );
      closeSync(fd);
      child.unref();
      const pid = child.pid;
      const deadline = Date.now() + timeoutMs;
      let up = false;
      while (pid !== undefined && isAlive(pid) && Date.now() < deadline) {
        if ((await registeredPid(xs, m.name)) === pid) {
          up = true;
          break;
        }
        await sleep(50);
      }
      if (!up) {
        if (pid !== undefined) await terminate(pid);
        const tail = readFileSync(log, 'utf8').trimEnd().split('\n').slice(-10).join('\n');
        throw new Error(`${m.name} did not start; the end of its log ${log}:\n${tail}`);
      }
      out(`${m.name} running (pid ${pid}), log: ${log}`);
    }
  } finally {
    await xs.close();
  }
}

/** Stops the monitors, newest first (SIGTERM, as systemd does); returns what it stopped. */
export async function stopMonitors(paths: SimPaths): Promise<string[]> {
  const stopped: string[] = [];
  for (const m of [...MONITORS].reverse()) {
    for (const pid of monitorPids(paths, m)) {
      await terminate(pid, 5000);
      stopped.push(`${m.name} (pid ${pid})`);
    }
  }
  return stopped;
}
