/**
 * `vmclone`: create and manage clones of Xen VMs. A thin shell over
 * src/core/clones: parses the command line (args.ts, by the table in
 * commands.ts), runs crash recovery, calls the lifecycle, prints results
 * (text or --json) and maps errors to exit codes.
 *
 * Start-up time is part of the interface (`npm run bench -- cli`): what the
 * read-only commands run (the parser, the state store, the configuration)
 * is imported up front, and bundled into one chunk (scripts/bundle-cli.mjs);
 * every other command imports the core modules it uses (and with them
 * node:child_process, node:net, node:crypto) when it runs. `list` and
 * `status` read the state store without the lifecycle unless a dead process
 * left an operation to recover, or there is a clone (status) or a shared
 * volume (list) to show.
 */
import { existsSync } from 'node:fs';
import { cloneJson, createResultJson, statusJson } from '../core/clones/json.js';
import type { CloneLifecycle, CreateResult } from '../core/clones/lifecycle.js';
import {
  CONFIG_KEYS,
  type ConfigKey,
  effectiveConfig,
  setOverride,
  unsetOverride,
} from '../core/config/index.js';
import type { Finding } from '../core/health/index.js';
import {
  type VmName,
  type ZynclonePaths,
  validateVmName,
  zynclonePaths,
  zyncloneRoot,
} from '../core/paths.js';
import { type StateStore, openStateStore } from '../core/state/index.js';
import type { UpgradeReport } from '../core/upgrade/index.js';
import type { SwitchResult, VolumeHolding, VolumeSwitcher } from '../core/volumes/index.js';
import type { XsClient } from '../xenstore/index.js';
import { type ParsedOptions, UsageError, commandHelp, parseCommandLine } from './args.js';
import { COMMANDS } from './commands.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { type CliOutput, fdOutput } from './process-io.js';
import { createProgress, formatMs } from './progress.js';
import { packageVersion } from './version.js';

export interface CliIo {
  readonly stdout: CliOutput;
  readonly stderr: CliOutput;
  readonly env: NodeJS.ProcessEnv;
  /** For confirmations (switch-volume --force); none: they need --yes. */
  readonly stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
}

function requester(env: NodeJS.ProcessEnv): string {
  const login =
    env.SUDO_USER ||
    (() => {
      try {
        // Looked up here, not imported: only commands that change clones name a requester.
        return process.getBuiltinModule('node:os').userInfo().username;
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
  private volumesInstance: VolumeSwitcher | undefined;
  private storeInstance: StateStore | undefined;

  constructor(
    readonly io: CliIo,
    readonly quiet: boolean,
  ) {}

  get paths() {
    return zynclonePaths(zyncloneRoot(this.io.env));
  }

  store(): StateStore {
    this.storeInstance ??= openStateStore({ paths: this.paths });
    return this.storeInstance;
  }

  /** The state store to read, once no operation of a dead process is left to recover. */
  async recoveredStore(): Promise<StateStore> {
    const store = this.store();
    if (store.staleOperations().length > 0) await this.lifecycle();
    return store;
  }

  /** The lifecycle, after recovering operations left by dead processes. */
  async lifecycle(): Promise<CloneLifecycle> {
    if (this.lifecycleInstance) return this.lifecycleInstance;
    const [{ CloneLifecycle }, { crashPointsFromEnv }, { XlDriver }, { VolumeSwitcher }] =
      await Promise.all([
        import('../core/clones/lifecycle.js'),
        import('../core/clones/journal.js'),
        import('../xen/index.js'),
        import('../core/volumes/index.js'),
      ]);
    const common = {
      paths: this.paths,
      store: this.store(),
      xl: new XlDriver({ env: this.io.env }),
      xs: () => this.xs(),
      requestedBy: requester(this.io.env),
      progress: createProgress({ stream: this.io.stderr, env: this.io.env, quiet: this.quiet }),
      crash: crashPointsFromEnv(this.io.env),
    };
    const lc = new CloneLifecycle(common);
    const volumes = new VolumeSwitcher(common);
    // Switches first: the lifecycle's recovery leaves them alone.
    for (const r of await volumes.recover()) {
      const msg = `recovered operation ${r.opId} (switch-volume of ${r.vm}): ${r.outcome}${r.error ? `: ${r.error}` : ''}`;
      this.io.stderr.write(`${msg}\n`);
    }
    this.volumesInstance = volumes;
    for (const r of await lc.recover()) {
      const msg = `recovered operation ${r.opId} (${r.kind} of ${r.vm}): ${r.outcome}${r.error ? `: ${r.error}` : ''}`;
      this.io.stderr.write(`${msg}\n`);
    }
    this.lifecycleInstance = lc;
    return lc;
  }

  async xs(): Promise<XsClient> {
    if (this.xsClient) return this.xsClient;
    const { XsClient, defaultSocketPath } = await import('../xenstore/index.js');
    this.xsClient = await XsClient.connect({
      path: defaultSocketPath(this.io.env),
      reconnect: false,
      requestTimeoutMs: 15_000,
    });
    return this.xsClient;
  }

  /** Shared volumes, after the same recovery as lifecycle(). */
  async volumes(): Promise<VolumeSwitcher> {
    await this.lifecycle();
    return this.volumesInstance!;
  }

  async close(): Promise<void> {
    await this.xsClient?.close().catch(() => {});
    this.storeInstance?.close();
  }
}

function printJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A shared volume's holder and where it is attached, in one line. */
function holdingText(h: VolumeHolding): string {
  const at = h.attachedTo.map((a) => `${a.domain}${a.mode === 'r' ? ' (ro)' : ''}`);
  return `${h.vdev}: held by the ${h.holder}; attached to ${at.length > 0 ? at.join(', ') : 'no domain'}`;
}

function switchText(r: SwitchResult): string {
  if (!r.changed) return `${r.vdev} of ${r.vm} is already held by the ${r.to}\n`;
  const times = [
    r.detachMs === undefined ? undefined : `detach ${formatMs(r.detachMs)}`,
    r.attachMs === undefined ? undefined : `attach ${formatMs(r.attachMs)}`,
  ].filter((t) => t !== undefined);
  const where = r.attached ? 'attached now' : 'attached when it starts';
  return `${r.vdev} of ${r.vm} is now held by the ${r.to} (${where}${times.length > 0 ? `; ${times.join(', ')}` : ''})\n`;
}

/** Asks on a terminal; without one the caller must have said --yes. */
async function confirm(io: CliIo, question: string): Promise<boolean> {
  const stdin = io.stdin;
  if (stdin === undefined || stdin.isTTY !== true) return false;
  io.stderr.write(`${question} [type yes] `);
  const { createInterface } = await import('node:readline');
  const rl = createInterface({ input: stdin });
  try {
    const answer = await new Promise<string>((r) => rl.once('line', r));
    return answer.trim() === 'yes';
  } finally {
    rl.close();
  }
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
    throw new UsageError(
      `--set needs key=value, got ${JSON.stringify(text)}`,
      commandHelp(COMMANDS.find((c) => c.name === 'config')!),
    );
  }
  return { key: text.slice(0, eq), value: text.slice(eq + 1) };
}

/**
 * A typo in `vmclone config NAME --set` would otherwise leave an override and
 * a generated cfg for a VM that never existed. A VM is known by its domain,
 * its xl config file, or an override it already has.
 */
async function refuseUnknownVm(vm: VmName, s: Session): Promise<void> {
  const paths = s.paths;
  const files = [...paths.xlConfigCandidates(vm), paths.overrideFile(vm)];
  if (files.some((f) => existsSync(f))) return;
  const [{ XlDriver }, { CloneError }] = await Promise.all([
    import('../xen/index.js'),
    import('../core/clones/errors.js'),
  ]);
  let domains: string;
  try {
    if ((await new XlDriver({ env: s.io.env }).list()).some((d) => d.name === vm)) return;
    domains = 'no domain of that name';
  } catch (err) {
    domains = `\`xl list\` failed (${(err as Error).message})`;
  }
  throw new CloneError(
    'VM_NOT_FOUND',
    `VM ${vm} is not known here: ${domains}, and none of ${files.join(', ')} exists; ` +
      'check the name, or pass --force to configure it anyway',
  );
}

/** Whether a VM is configured to share volumes; an unreadable configuration counts (holders() decides). */
function sharesVolumes(vms: readonly VmName[], paths: ZynclonePaths): boolean {
  return vms.some((vm) => {
    try {
      return effectiveConfig(vm, paths).values.shared_volumes.length > 0;
    } catch {
      return true;
    }
  });
}

type Handler = (
  s: Session,
  args: Readonly<Record<string, string>>,
  o: ParsedOptions,
) => Promise<number>;

const vmArg = (vm: string): VmName => validateVmName(vm);

async function transition(
  s: Session,
  name: 'start' | 'activate' | 'deactivate',
  vm: string,
): Promise<number> {
  const c = await (await s.lifecycle())[name](vmArg(vm));
  s.io.stdout.write(`clone ${c.cloneName} of ${vm} is ${c.state}\n`);
  return EXIT.OK;
}

/** What each command does, by name; commands.ts says what each one takes. */
const HANDLERS: Readonly<Record<string, Handler>> = {
  async create(s, { vm: arg }, o) {
    const io = s.io;
    const vm = vmArg(arg!);
    const kind = o.flag('offline')
      ? 'offline'
      : o.flag('memory')
        ? 'memory'
        : o.flag('online')
          ? 'online'
          : undefined;
    const config = o.value('config');
    const lc = await s.lifecycle();
    const r: CreateResult = await lc.create(vm, {
      ...(kind === undefined ? {} : { kind }),
      ...(o.flag('no-start') ? { start: false } : {}),
      ...(config === undefined ? {} : { configFile: config }),
    });
    if (o.flag('json')) {
      printJson(io, createResultJson(r));
    } else {
      const pause =
        r.originalPauseMs === undefined
          ? ''
          : `; ${vm} paused ${formatMs(r.originalPauseMs)}${
              r.memoryCopy === undefined
                ? ''
                : r.memoryCopy.method === 'live'
                  ? ' (live pre-copy)'
                  : ` (xl save -p: ${r.memoryCopy.fallback})`
            }`;
      io.stdout.write(
        `clone ${r.clone.cloneName} of ${vm} is ${r.clone.state} (${r.clone.kind}, ${formatMs(r.totalMs)}${pause})\n`,
      );
    }
    return EXIT.OK;
  },

  start: (s, { vm }) => transition(s, 'start', vm!),
  activate: (s, { vm }) => transition(s, 'activate', vm!),
  deactivate: (s, { vm }) => transition(s, 'deactivate', vm!),

  async stop(s, { vm }, o) {
    const c = await (await s.lifecycle()).stop(vmArg(vm!), { force: o.flag('force') });
    s.io.stdout.write(`clone ${c.cloneName} of ${vm} is ${c.state}\n`);
    return EXIT.OK;
  },

  async remove(s, { vm }) {
    const r = await (await s.lifecycle()).remove(vmArg(vm!));
    s.io.stdout.write(
      r.removed ? `clone of ${vm} removed\n` : `${vm} has no clone; nothing to remove\n`,
    );
    return EXIT.OK;
  },

  async 'switch-volume'(s, { vm: arg, vdev }, o) {
    const io = s.io;
    const vm = vmArg(arg!);
    const force = o.flag('force');
    if (force && !o.flag('yes')) {
      const ok = await confirm(
        io,
        `Force ${vdev} away from its holder? Its guest may crash or lose data it has not written.`,
      );
      if (!ok) {
        io.stderr.write(
          'vmclone: --force not confirmed (answer yes on a terminal, or add --yes); nothing changed\n',
        );
        return EXIT.REFUSED;
      }
    }
    const to = o.value('to') as 'clone' | 'original';
    const r = await (await s.volumes()).switchVolume(vm, vdev!, to, { force });
    if (o.flag('json')) printJson(io, r);
    else io.stdout.write(switchText(r));
    return EXIT.OK;
  },

  async list(s, _, o) {
    const io = s.io;
    const clones = (await s.recoveredStore()).listClones();
    // The shared volumes' holders need the volume switcher (and with it the
    // lifecycle, xl and XenStore clients): only for VMs configured to share any.
    const sharing = sharesVolumes(
      clones.map((c) => c.vm),
      s.paths,
    );
    const volumes = sharing ? await s.volumes() : undefined;
    const holders = new Map(
      clones.map((c) => {
        try {
          return [c.vm, volumes?.holders(c.vm) ?? []];
        } catch {
          return [c.vm, []]; // The VM's xl config is gone: nothing to show.
        }
      }),
    );
    if (o.flag('json'))
      printJson(
        io,
        clones.map((c) => ({ ...cloneJson(c), sharedVolumes: holders.get(c.vm) ?? [] })),
      );
    else if (clones.length === 0) io.stdout.write('no clones\n');
    else {
      io.stdout.write(
        table([
          ['VM', 'CLONE', 'STATE', 'KIND', 'DOMID', 'SHARED', 'CREATED', 'BY'],
          ...clones.map((c) => [
            c.vm,
            c.cloneName,
            c.state,
            c.kind,
            c.cloneDomid === null ? '-' : String(c.cloneDomid),
            (holders.get(c.vm) ?? []).map((h) => `${h.vdev}:${h.holder}`).join(',') || '-',
            new Date(c.createdAt).toISOString().replace(/\.\d+Z$/, 'Z'),
            c.requestedBy,
          ]),
        ]),
      );
    }
    return EXIT.OK;
  },

  async status(s, { vm: arg }, o) {
    const io = s.io;
    const vm = vmArg(arg!);
    // Without a clone the text names none of Xen's facts: neither xl nor XenStore is asked.
    if (!o.flag('json') && (await s.recoveredStore()).getClone(vm) === undefined) {
      io.stdout.write(`${vm} has no clone\n`);
      return EXIT.NOT_FOUND;
    }
    const st = await (await s.lifecycle()).status(vm);
    const volumes = st.clone ? await (await s.volumes()).holdings(vm).catch(() => []) : [];
    if (o.flag('json')) {
      const { holdingsJson } = await import('../core/volumes/index.js');
      printJson(io, statusJson(st, holdingsJson(volumes)));
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
        st.originalDomain ? `${st.originalDomain.domid} ${st.originalDomain.state}` : 'not running',
      ],
      ['lockdown', `generation ${st.generation ?? '-'}, acknowledged ${st.ack ?? '-'}`],
      ['created', `${new Date(c.createdAt).toISOString()} by ${c.requestedBy}`],
      ['volumes', String(c.snapshots.length)],
      ...volumes.map((h) => ['shared', holdingText(h)]),
      ['config', st.configFile ?? '-'],
    ];
    if (st.running)
      lines.push(['operation', `${st.running.kind} (id ${st.running.id}) in progress`]);
    if (st.note) lines.push(['note', st.note]);
    io.stdout.write(table(lines));
    return EXIT.OK;
  },

  async console(s, { vm: arg }, o) {
    const io = s.io;
    const vm = vmArg(arg!);
    const [{ consoleTicketJson, issueConsoleTicket }, { XlDriver }] = await Promise.all([
      import('../core/console/index.js'),
      import('../xen/index.js'),
    ]);
    const t = await issueConsoleTicket(
      {
        xs: await s.xs(),
        store: await s.recoveredStore(),
        xl: new XlDriver({ env: io.env }),
        paths: s.paths,
      },
      vm,
      requester(io.env),
    );
    if (o.flag('json')) printJson(io, consoleTicketJson(t));
    else io.stdout.write(`${t.url}\n`);
    if (o.flag('open') && !(await openBrowser(t.url, io.env))) {
      io.stderr.write(
        'vmclone: no browser found here ($BROWSER, xdg-open); open the URL yourself\n',
      );
    }
    return EXIT.OK;
  },

  async config(s, { vm: arg }, o) {
    const io = s.io;
    const vm = vmArg(arg!);
    // A malformed --set is refused before anything is looked up or written.
    const sets = o.list('set').map(parseAssignment);
    const paths = s.paths;
    if (sets.length > 0 && !o.flag('force')) await refuseUnknownVm(vm, s);
    for (const { key, value } of sets) {
      // Refused before anything is written: masked clone vifs would sit on that network.
      if (key === 'isolation_bridge') {
        const [{ refuseProductionBridge }, { productionBridgesOf }] = await Promise.all([
          import('../core/clones/bridge.js'),
          import('../core/clones/original.js'),
        ]);
        refuseProductionBridge(value, {
          vm: vm,
          clonePrefix: effectiveConfig(vm, paths).values.clone_vif_prefix,
          productionBridges: productionBridgesOf(paths, vm),
        });
      }
    }
    for (const { key, value } of sets) setOverride(vm, key, value, paths);
    for (const key of o.list('unset')) unsetOverride(vm, key, paths);
    const eff = effectiveConfig(vm, paths);
    if (o.flag('json')) {
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
  },

  async doctor(s, _, o) {
    const io = s.io;
    const netns = o.value('netns') ?? (io.env.ZYNCLONE_NETNS || undefined);
    const [{ runDoctor }, { XlDriver }, { defaultSocketPath }] = await Promise.all([
      import('../core/health/index.js'),
      import('../xen/index.js'),
      import('../xenstore/index.js'),
    ]);
    const findings = await runDoctor({
      paths: s.paths,
      xl: new XlDriver({ env: io.env }),
      xenstorePath: defaultSocketPath(io.env),
      ...(netns === undefined ? {} : { netns }),
    });
    const healthy = findings.every((f) => f.ok);
    if (o.flag('json')) printJson(io, { healthy, findings });
    else io.stdout.write(formatFindings(findings, healthy));
    return healthy ? EXIT.OK : EXIT.FAILURE;
  },

  async logs(s, { daemon }, o) {
    const { logsCommand, relay } = await import('./logs.js');
    const file = o.value('file');
    const argv = logsCommand(
      daemon,
      {
        lines: Number(o.value('lines')),
        follow: o.flag('follow'),
        ...(file === undefined ? {} : { file }),
      },
      s.paths,
    );
    return (await relay(argv, s.io)) === 0 ? EXIT.OK : EXIT.FAILURE;
  },

  async upgrade(s, _, o) {
    const io = s.io;
    const [{ upgrade }, { XsClient, defaultSocketPath }] = await Promise.all([
      import('../core/upgrade/index.js'),
      import('../xenstore/index.js'),
    ]);
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
        { dryRun: o.flag('dry-run') },
      );
      if (o.flag('json')) printJson(io, report);
      else if (!o.flag('quiet') || report.backupDir) io.stdout.write(formatUpgrade(report));
    } finally {
      await xs?.close().catch(() => {});
    }
    return EXIT.OK;
  },
};

/** Starts $BROWSER or xdg-open on `url` (argv, never a shell); false when there is none. */
async function openBrowser(url: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const graphical = Boolean(env.DISPLAY || env.WAYLAND_DISPLAY);
  const candidates = [env.BROWSER, graphical ? 'xdg-open' : undefined].filter(
    (c): c is string => typeof c === 'string' && c !== '',
  );
  for (const cmd of candidates) {
    const exe = cmd.includes('/')
      ? cmd
      : (env.PATH ?? '')
          .split(':')
          .map((d) => `${d}/${cmd}`)
          .find((p) => existsSync(p));
    if (exe === undefined || !existsSync(exe)) continue;
    const { spawn } = await import('node:child_process');
    spawn(exe, [url], { detached: true, stdio: 'ignore', env })
      .on('error', () => {})
      .unref();
    return true;
  }
  return false;
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
  io: CliIo = {
    stdout: fdOutput(1),
    stderr: fdOutput(2),
    env: process.env,
    get stdin() {
      return process.stdin;
    },
  },
): Promise<number> {
  // Scripts using --json get a failure as JSON too.
  const json = argv.includes('--json');
  const fail = (err: unknown): number => {
    const code = (err as { code?: unknown }).code;
    const message = (err as Error).message ?? String(err);
    const help = err instanceof UsageError ? `\n${err.help}` : '';
    io.stderr.write(`vmclone: ${message}${typeof code === 'string' ? ` [${code}]` : ''}\n${help}`);
    const status = exitCodeFor(err);
    if (json) {
      printJson(io, {
        error: { code: typeof code === 'string' ? code : 'FAILED', message, exitCode: status },
      });
    }
    return status;
  };
  let line: ReturnType<typeof parseCommandLine>;
  try {
    line = parseCommandLine(argv);
  } catch (err) {
    if (err instanceof UsageError) return fail(err);
    throw err;
  }
  if (line.kind === 'help') {
    io.stdout.write(line.text);
    return EXIT.OK;
  }
  if (line.kind === 'version') {
    io.stdout.write(`${packageVersion()}\n`);
    return EXIT.OK;
  }
  const { command, args, options } = line;
  const s = new Session(io, !command.progress || options.flag('quiet'));
  try {
    return await HANDLERS[command.name]!(s, args, options);
  } catch (err) {
    return fail(err);
  } finally {
    await s.close();
  }
}
