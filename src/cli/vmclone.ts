/**
 * `vmclone`: create and manage clones of Xen VMs. A thin shell over
 * src/core/clones: parses the command line, runs crash recovery, calls the
 * lifecycle, prints results (text or --json) and maps errors to exit codes.
 */
import { userInfo } from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { crashPointsFromEnv } from '../core/clones/journal.js';
import {
  type CloneLifecycle,
  type CloneStatus,
  type CreateResult,
  CloneLifecycle as Lifecycle,
} from '../core/clones/lifecycle.js';
import {
  CONFIG_KEYS,
  type ConfigKey,
  effectiveConfig,
  setOverride,
  unsetOverride,
} from '../core/config/index.js';
import { type Finding, runDoctor } from '../core/health/index.js';
import { validateVmName, zynclonePaths, zyncloneRoot } from '../core/paths.js';
import { openStateStore } from '../core/state/index.js';
import type { CloneRecord } from '../core/state/types.js';
import { type UpgradeReport, upgrade } from '../core/upgrade/index.js';
import { XlDriver } from '../xen/index.js';
import { XsClient, defaultSocketPath } from '../xenstore/index.js';
import { EXIT, EXIT_CODES_HELP, exitCodeFor } from './exit-codes.js';
import { logsCommand, relay } from './logs.js';
import { createProgress, formatMs } from './progress.js';
import { packageVersion } from './version.js';

export interface CliIo {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  readonly env: NodeJS.ProcessEnv;
}

const EXAMPLES = `
Examples:
  vmclone create web01                  clone web01 the configured way (default: online)
  vmclone create web01 --memory         clone with memory: the clone resumes where web01 was
  vmclone create web01 --offline --no-start
  vmclone status web01 --json           the clone's state, domain and lockdown ack
  vmclone stop web01 && vmclone deactivate web01
  vmclone remove web01                  delete the clone, its volumes and lockdowns
  vmclone config web01 --set clone_vif_mask=0,2 --set mac_policy=regenerate
  vmclone list --json

${EXIT_CODES_HELP}

Environment:
  ZYNCLONE_ROOT    root prefix of every file (default /)
  XENSTORED_PATH   xenstored socket (default /run/xenstored/socket)
  NO_COLOR         no colour in progress output`;

function requester(env: NodeJS.ProcessEnv): string {
  const login =
    env.SUDO_USER ||
    (() => {
      try {
        return userInfo().username;
      } catch {
        return `uid${process.getuid?.() ?? 'unknown'}`;
      }
    })();
  const clean = login.replace(/[^\x21-\x7e]/g, '').slice(0, 64);
  return `user:${clean === '' ? 'unknown' : clean}`;
}

class Session {
  private xsClient: XsClient | undefined;
  private lifecycleInstance: CloneLifecycle | undefined;
  private storeInstance: ReturnType<typeof openStateStore> | undefined;

  constructor(
    readonly io: CliIo,
    readonly quiet: boolean,
  ) {}

  get paths() {
    return zynclonePaths(zyncloneRoot(this.io.env));
  }

  /** The lifecycle, after recovering operations left by dead processes. */
  async lifecycle(): Promise<CloneLifecycle> {
    if (this.lifecycleInstance) return this.lifecycleInstance;
    const paths = this.paths;
    this.storeInstance = openStateStore({ paths });
    const lc = new Lifecycle({
      paths,
      store: this.storeInstance,
      xl: new XlDriver({ env: this.io.env }),
      xs: async () => {
        this.xsClient ??= await XsClient.connect({
          path: defaultSocketPath(this.io.env),
          reconnect: false,
          requestTimeoutMs: 15_000,
        });
        return this.xsClient;
      },
      requestedBy: requester(this.io.env),
      progress: createProgress({ stream: this.io.stderr, env: this.io.env, quiet: this.quiet }),
      crash: crashPointsFromEnv(this.io.env),
    });
    for (const r of await lc.recover()) {
      const msg = `recovered operation ${r.opId} (${r.kind} of ${r.vm}): ${r.outcome}${r.error ? `: ${r.error}` : ''}`;
      this.io.stderr.write(`${msg}\n`);
    }
    this.lifecycleInstance = lc;
    return lc;
  }

  async close(): Promise<void> {
    await this.xsClient?.close().catch(() => {});
    this.storeInstance?.close();
  }
}

function printJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function cloneJson(c: CloneRecord) {
  return {
    vm: c.vm,
    cloneName: c.cloneName,
    state: c.state,
    kind: c.kind,
    cloneDomid: c.cloneDomid,
    cloneUuid: c.cloneUuid,
    sourceUuid: c.sourceUuid,
    requestedBy: c.requestedBy,
    createdAt: new Date(c.createdAt).toISOString(),
    updatedAt: new Date(c.updatedAt).toISOString(),
    snapshots: c.snapshots,
  };
}

function statusJson(s: CloneStatus) {
  return {
    vm: s.vm,
    clone: s.clone ? cloneJson(s.clone) : null,
    domain: s.domain ?? null,
    original: s.originalDomain ?? null,
    lockdown: { generation: s.generation ?? null, ack: s.ack ?? null },
    operation: s.running
      ? { id: s.running.id, kind: s.running.kind, ownerPid: s.running.owner.pid }
      : null,
    configFile: s.configFile ?? null,
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return `${rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

function parseAssignment(text: string): { key: string; value: string } {
  const eq = text.indexOf('=');
  if (eq <= 0) {
    throw new CommanderError(
      EXIT.USAGE,
      'vmclone.usage',
      `--set needs key=value, got ${JSON.stringify(text)}`,
    );
  }
  return { key: text.slice(0, eq), value: text.slice(eq + 1) };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function buildProgram(
  io: CliIo,
  run: (fn: (s: Session) => Promise<number>, quiet?: boolean) => Promise<void>,
): Command {
  const program = new Command()
    .name('vmclone')
    .description('Create and manage clones of Xen virtual machines.')
    .version(packageVersion(), '-V, --version')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride()
    .showHelpAfterError()
    .addHelpText('after', EXAMPLES);

  const vmArg = (vm: string) => {
    validateVmName(vm);
    return vm;
  };

  program
    .command('create')
    .description(
      'clone a VM; the clone is created paused and started once its lockdown is acknowledged',
    )
    .argument('<vm>', 'the original VM (domain name)')
    .addOption(
      new Option(
        '--offline',
        'the original is shut down; its disks are snapshotted or copied',
      ).conflicts(['online', 'memory']),
    )
    .addOption(
      new Option(
        '--online',
        'disk-only: pause the original only while its disks are snapshotted',
      ).conflicts(['memory']),
    )
    .option(
      '--memory',
      'with memory: xl save -p, snapshot disks, unpause the original, restore the clone',
    )
    .option('--no-start', 'stop at state active (configured, not running)')
    .option('--config <file>', "the original's xl config file (default <root>/etc/xen/<vm>.cfg)")
    .option('--json', 'print the result as JSON')
    .option('-q, --quiet', 'no progress output')
    .action(
      (
        vm: string,
        o: {
          offline?: boolean;
          online?: boolean;
          memory?: boolean;
          start: boolean;
          config?: string;
          json?: boolean;
          quiet?: boolean;
        },
        cmd: Command,
      ) =>
        run(async (s) => {
          vmArg(vm);
          const kind = o.offline
            ? 'offline'
            : o.memory
              ? 'memory'
              : o.online
                ? 'online'
                : undefined;
          const startGiven = cmd.getOptionValueSource('start') === 'cli';
          const lc = await s.lifecycle();
          const r: CreateResult = await lc.create(vm, {
            ...(kind === undefined ? {} : { kind }),
            ...(startGiven ? { start: o.start } : {}),
            ...(o.config === undefined ? {} : { configFile: o.config }),
          });
          if (o.json) {
            printJson(io, {
              clone: cloneJson(r.clone),
              originalPauseMs: r.originalPauseMs ?? null,
              totalMs: r.totalMs,
              removedPeripherals: r.plan.removedPeripherals,
              vifs: r.plan.cloneVifs.map((v) => ({
                devid: v.devid,
                name: v.name,
                masked: v.masked,
                bridge: v.bridge,
                mac: v.mac ?? null,
              })),
              warnings: r.warnings,
            });
          } else {
            const pause =
              r.originalPauseMs === undefined
                ? ''
                : `; ${vm} paused ${formatMs(r.originalPauseMs)}`;
            io.stdout.write(
              `clone ${r.clone.cloneName} of ${vm} is ${r.clone.state} (${r.clone.kind}, ${formatMs(r.totalMs)}${pause})\n`,
            );
          }
          return EXIT.OK;
        }, o.quiet),
    );

  const transition = (name: 'start' | 'activate' | 'deactivate', desc: string) =>
    program
      .command(name)
      .description(desc)
      .argument('<vm>', 'the original VM')
      .option('-q, --quiet', 'no progress output')
      .action((vm: string, o: { quiet?: boolean }) =>
        run(async (s) => {
          const c = await (await s.lifecycle())[name](vmArg(vm));
          io.stdout.write(`clone ${c.cloneName} of ${vm} is ${c.state}\n`);
          return EXIT.OK;
        }, o.quiet),
      );
  transition('start', 'start the clone (active or inactive -> running)');
  program
    .command('stop')
    .description('shut the clone down (running -> active); lockdowns stay')
    .argument('<vm>', 'the original VM')
    .option('-f, --force', 'destroy the clone domain at once instead of shutting it down')
    .option('-q, --quiet', 'no progress output')
    .action((vm: string, o: { force?: boolean; quiet?: boolean }) =>
      run(async (s) => {
        const c = await (await s.lifecycle()).stop(vmArg(vm), { force: o.force ?? false });
        io.stdout.write(`clone ${c.cloneName} of ${vm} is ${c.state}\n`);
        return EXIT.OK;
      }, o.quiet),
    );
  transition('activate', 'enforce the lockdowns on the original again (inactive -> active)');
  transition(
    'deactivate',
    'lift the lockdowns on the original, keep the clone (active -> inactive)',
  );

  program
    .command('remove')
    .description(
      'delete the clone from any state: its domain, volumes, config and lockdowns (safe to repeat)',
    )
    .argument('<vm>', 'the original VM')
    .option('-q, --quiet', 'no progress output')
    .action((vm: string, o: { quiet?: boolean }) =>
      run(async (s) => {
        const r = await (await s.lifecycle()).remove(vmArg(vm));
        io.stdout.write(
          r.removed ? `clone of ${vm} removed\n` : `${vm} has no clone; nothing to remove\n`,
        );
        return EXIT.OK;
      }, o.quiet),
    );

  program
    .command('list')
    .description('list the clones')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) =>
      run(async (s) => {
        const clones = (await s.lifecycle()).list();
        if (o.json) printJson(io, clones.map(cloneJson));
        else if (clones.length === 0) io.stdout.write('no clones\n');
        else {
          io.stdout.write(
            table([
              ['VM', 'CLONE', 'STATE', 'KIND', 'DOMID', 'CREATED', 'BY'],
              ...clones.map((c) => [
                c.vm,
                c.cloneName,
                c.state,
                c.kind,
                c.cloneDomid === null ? '-' : String(c.cloneDomid),
                new Date(c.createdAt).toISOString().replace(/\.\d+Z$/, 'Z'),
                c.requestedBy,
              ]),
            ]),
          );
        }
        return EXIT.OK;
      }, true),
    );

  program
    .command('status')
    .description("the clone of a VM: state, domain, lockdown generation and the net monitor's ack")
    .argument('<vm>', 'the original VM')
    .option('--json', 'print JSON')
    .action((vm: string, o: { json?: boolean }) =>
      run(async (s) => {
        const st = await (await s.lifecycle()).status(vmArg(vm));
        if (o.json) {
          printJson(io, statusJson(st));
          return st.clone ? EXIT.OK : EXIT.NOT_FOUND;
        }
        if (!st.clone) {
          io.stdout.write(`${vm} has no clone\n`);
          return EXIT.NOT_FOUND;
        }
        const c = st.clone;
        const lines = [
          ['clone', `${c.cloneName} (${c.kind})`],
          ['state', c.state],
          ['domain', st.domain ? `${st.domain.domid} ${st.domain.state}` : 'none'],
          [
            'original',
            st.originalDomain
              ? `${st.originalDomain.domid} ${st.originalDomain.state}`
              : 'not running',
          ],
          ['lockdown', `generation ${st.generation ?? '-'}, acknowledged ${st.ack ?? '-'}`],
          ['created', `${new Date(c.createdAt).toISOString()} by ${c.requestedBy}`],
          ['volumes', String(c.snapshots.length)],
          ['config', st.configFile ?? '-'],
        ];
        if (st.running)
          lines.push(['operation', `${st.running.kind} (id ${st.running.id}) in progress`]);
        io.stdout.write(table(lines));
        return EXIT.OK;
      }, true),
    );

  program
    .command('config')
    .description(
      'show the effective configuration of a VM and where each value comes from, or change it',
    )
    .argument('<vm>', 'the VM')
    .option('--set <key=value>', 'set a key in the VM override (repeatable)', collect, [])
    .option('--unset <key>', 'remove a key from the VM override (repeatable)', collect, [])
    .option('--json', 'print JSON')
    .action((vm: string, o: { set: string[]; unset: string[]; json?: boolean }) =>
      run(async (s) => {
        vmArg(vm);
        const paths = s.paths;
        for (const a of o.set) {
          const { key, value } = parseAssignment(a);
          setOverride(vm, key, value, paths);
        }
        for (const key of o.unset) unsetOverride(vm, key, paths);
        const eff = effectiveConfig(vm, paths);
        if (o.json) {
          printJson(io, {
            vm,
            values: eff.values,
            origins: eff.origins,
            files: { base: eff.baseFile, override: eff.overrideFile, generated: eff.guestCfgFile },
          });
        } else {
          const rows = [['KEY', 'VALUE', 'FROM']];
          for (const key of CONFIG_KEYS as ConfigKey[]) {
            rows.push([key, JSON.stringify(eff.values[key]), eff.origins[key]]);
          }
          io.stdout.write(table(rows));
        }
        return EXIT.OK;
      }, true),
    );

  program
    .command('doctor')
    .description(
      'check the host: xl, XenStore, monitor heartbeats, nftables lockdown, isolation bridge, config',
    )
    .option(
      '--netns <name>',
      "network namespace of the network domain's bridges and nftables (default $ZYNCLONE_NETNS, else this one)",
    )
    .option('--json', 'print JSON')
    .action((o: { netns?: string; json?: boolean }) =>
      run(async (s) => {
        const netns = o.netns ?? (io.env.ZYNCLONE_NETNS || undefined);
        const findings = await runDoctor({
          paths: s.paths,
          xl: new XlDriver({ env: io.env }),
          xenstorePath: defaultSocketPath(io.env),
          ...(netns === undefined ? {} : { netns }),
        });
        const healthy = findings.every((f) => f.ok);
        if (o.json) printJson(io, { healthy, findings });
        else io.stdout.write(formatFindings(findings, healthy));
        return healthy ? EXIT.OK : EXIT.FAILURE;
      }, true),
    );

  program
    .command('logs')
    .description(
      "a daemon's log (net-monitor, clone-monitor, ...; none: all): the systemd journal, or a log file",
    )
    .argument('[daemon]', 'the daemon, as in its unit name zynclone-<daemon>.service')
    .option('-n, --lines <n>', 'how many recent lines', (v) => Number(v), 100)
    .option('-f, --follow', 'keep printing new lines')
    .option('--file <path>', 'read this log file instead of the journal')
    .action((daemon: string | undefined, o: { lines: number; follow?: boolean; file?: string }) =>
      run(async (s) => {
        const argv = logsCommand(
          daemon,
          {
            lines: o.lines,
            follow: o.follow ?? false,
            ...(o.file === undefined ? {} : { file: o.file }),
          },
          s.paths,
        );
        return (await relay(argv, io)) === 0 ? EXIT.OK : EXIT.FAILURE;
      }, true),
    );

  program
    .command('upgrade')
    .description(
      'migrate the state database, configuration files and XenStore tree to this release, after a backup',
    )
    .option('--dry-run', 'only show what would change')
    .option('--json', 'print JSON')
    .option('-q, --quiet', 'print nothing when there is nothing to do')
    .action((o: { dryRun?: boolean; json?: boolean; quiet?: boolean }) =>
      run(async (s) => {
        let xs: XsClient | undefined;
        let xsProblem: string | undefined;
        try {
          xs = await XsClient.connect({
            path: defaultSocketPath(io.env),
            reconnect: false,
            requestTimeoutMs: 5000,
          });
        } catch (err) {
          xsProblem = `XenStore not reachable at ${defaultSocketPath(io.env)} (${(err as Error).message})`;
        }
        try {
          const report = await upgrade(
            { paths: s.paths, ...(xs ? { xs } : {}), ...(xsProblem ? { xsProblem } : {}) },
            { dryRun: o.dryRun ?? false },
          );
          if (o.json) printJson(io, report);
          else if (!o.quiet || report.backupDir) io.stdout.write(formatUpgrade(report));
        } finally {
          await xs?.close().catch(() => {});
        }
        return EXIT.OK;
      }, true),
    );

  return program;
}

function formatUpgrade(r: UpgradeReport): string {
  const version = (v: number | null) => (v === null ? '-' : String(v));
  const rows = r.parts.map((p) => [
    p.part,
    p.migrate ? `${version(p.from)} -> ${p.to}` : `${version(p.from)} (current: ${p.to})`,
    p.found,
  ]);
  const pending = r.parts.filter((p) => p.migrate).length;
  const verdict =
    pending === 0
      ? 'nothing to upgrade'
      : r.dryRun
        ? `${pending} part(s) would be migrated (dry run: nothing changed)`
        : `${pending} part(s) migrated; backup in ${r.backupDir}`;
  return `${table([['PART', 'VERSION', 'FOUND'], ...rows])}${verdict}\n`;
}

function formatFindings(findings: readonly Finding[], healthy: boolean): string {
  const lines = findings.map((f) => {
    const mark = f.ok ? 'ok  ' : f.severity === 'warning' ? 'WARN' : 'FAIL';
    const fix = !f.ok && f.fix ? `\n        fix: ${f.fix}` : '';
    const docs = !f.ok && f.docs ? `\n        see: ${f.docs}` : '';
    return `[${mark}] ${f.check}: ${f.message}${fix}${docs}`;
  });
  const verdict = healthy ? 'healthy' : `${findings.filter((f) => !f.ok).length} problem(s) found`;
  return `${lines.join('\n')}\n${verdict}\n`;
}

/** Runs vmclone with `argv` (without node and script); resolves to the exit status. */
export async function runVmclone(
  argv: readonly string[],
  io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number> {
  let status: number = EXIT.OK;
  const json = argv.includes('--json');
  const run = async (fn: (s: Session) => Promise<number>, quiet = false) => {
    const s = new Session(io, quiet);
    try {
      status = await fn(s);
    } catch (err) {
      if (err instanceof CommanderError) throw err;
      const code = (err as { code?: unknown }).code;
      const message = (err as Error).message ?? String(err);
      io.stderr.write(`vmclone: ${message}${typeof code === 'string' ? ` [${code}]` : ''}\n`);
      status = exitCodeFor(err);
      // Scripts using --json get the failure as JSON too.
      if (json) {
        printJson(io, {
          error: { code: typeof code === 'string' ? code : 'FAILED', message, exitCode: status },
        });
      }
    } finally {
      await s.close();
    }
  };
  const program = buildProgram(io, run);
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version')
        return EXIT.OK;
      if (err.code === 'vmclone.usage') io.stderr.write(`vmclone: ${err.message}\n`);
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    throw err;
  }
  return status;
}
