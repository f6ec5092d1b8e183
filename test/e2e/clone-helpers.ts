// A simulated Xen host on a fresh XFS (reflink) filesystem, with the demo VMs,
// and vmclone run as a user runs it (a separate process per command).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XsClient } from '../../src/xenstore/index.js';
import { bundleDaemon, bundleEntry, repo } from '../bundle.js';
import { type LoopFs, canMountLoop, mountXfs } from '../core/storage/helpers/loop-fs.js';

export interface RunOut {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export const E2E_NEEDS = 'root, /dev/loop-control, mkfs.xfs, xenstore-utils and iproute2';
export const canRunE2e =
  canMountLoop && existsSync('/usr/bin/xenstore-ls') && existsSync('/usr/sbin/ip');

export function run(
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 60_000,
): Promise<RunOut> {
  return new Promise((r) => {
    execFile(
      cmd,
      [...args],
      { env, maxBuffer: 16 * 1024 * 1024, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; signal?: string | null }) | null;
        r({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout,
          stderr,
        });
      },
    );
  });
}

/**
 * Stand-in for clone_net_monitor's acknowledgement, below the boundary the
 * tests check: it applies nothing, it only writes net/ack/$VM = the published
 * generation, as the net monitor does once its rules are in place.
 */
export class AckStandIn {
  private constructor(
    private readonly flags: { stopped: boolean },
    private readonly xs: XsClient,
    private readonly loop: Promise<void>,
    private readonly watch: { close(): Promise<void> },
  ) {}

  static async start(socket: string): Promise<AckStandIn> {
    const xs = await XsClient.connect({ path: socket, transport: 'socket', reconnect: false });
    const watch = await xs.watch('/tool/zynclone/vm');
    const flags = { stopped: false };
    const loop = (async () => {
      for await (const _ of watch) {
        if (flags.stopped) continue;
        let vms: string[] = [];
        try {
          vms = await xs.directory('/tool/zynclone/vm');
        } catch {
          continue;
        }
        for (const vm of vms) {
          const g = await xs.tryRead(`/tool/zynclone/vm/${vm}/generation`);
          if (g !== undefined) await xs.write(`/tool/zynclone/net/ack/${vm}`, g);
        }
      }
    })().catch(() => {});
    return new AckStandIn(flags, xs, loop, watch);
  }

  /** Stops acknowledging (as if the net monitor were down). */
  pause(): void {
    this.flags.stopped = true;
  }

  resume(): void {
    this.flags.stopped = false;
  }

  async close(): Promise<void> {
    await this.watch.close().catch(() => {});
    await this.xs.close().catch(() => {});
    await this.loop;
  }
}

/**
 * The real clone_net_monitor (src/daemons/net-monitor) in the simulator's
 * network domain namespace, when it can run here (nft with libnftables).
 */
export class RealNetMonitor {
  private constructor(
    private child: ChildProcess,
    private readonly startArgs: [string, string, string, string],
  ) {}

  /** SIGKILLs the monitor, as a crash would; its nftables table stays. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }

  /** Starts a new monitor process with the same arguments. */
  async restart(): Promise<void> {
    const next = await RealNetMonitor.start(...this.startArgs);
    if (!next) throw new Error('the net monitor did not come back');
    this.child = next.child;
  }

  static async start(
    entry: string,
    socket: string,
    netns: string,
    log: string,
  ): Promise<RealNetMonitor | undefined> {
    const before = existsSync(log)
      ? readFileSync(log, 'utf8').split('"msg":"watching"').length - 1
      : 0;
    const out = openSync(log, 'a');
    const child = spawn(
      process.execPath,
      [
        entry,
        '--xenstore',
        socket,
        '--netns',
        netns,
        '--clone-vif-prefix',
        'zcv',
        '--heartbeat-ms',
        '60000',
      ],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) return undefined;
      const watching = readFileSync(log, 'utf8').split('"msg":"watching"').length - 1;
      if (watching > before) return new RealNetMonitor(child, [entry, socket, netns, log]);
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGKILL');
    return undefined;
  }

  /** Stops acknowledging (SIGSTOP), as if the monitor hung. */
  pause(): void {
    this.child.kill('SIGSTOP');
  }

  resume(): void {
    this.child.kill('SIGCONT');
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGCONT');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** The real clone_monitor (src/daemons/clone-monitor) as its own process. */
export class CloneMonitorProcess {
  private constructor(private readonly child: ChildProcess) {}

  static async start(entry: string, host: CloneHost, log: string): Promise<CloneMonitorProcess> {
    const before = existsSync(log)
      ? readFileSync(log, 'utf8').split('"msg":"watching"').length - 1
      : 0;
    const out = openSync(log, 'a');
    const child = spawn(
      process.execPath,
      [entry, '--root', host.root, '--poll-ms', '50', '--heartbeat-ms', '60000'],
      { stdio: ['ignore', out, out], env: host.env },
    );
    closeSync(out);
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) break;
      const watching = readFileSync(log, 'utf8').split('"msg":"watching"').length - 1;
      if (watching > before) return new CloneMonitorProcess(child);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    throw new Error(`clone-monitor did not start: ${readFileSync(log, 'utf8').slice(-2000)}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** Bundles a daemon's `run*` entry (`src/daemons/<dir>/main.ts`) into `outfile`. */

function plainDir(): LoopFs {
  const dir = mkdtempSync(join(tmpdir(), 'zc-e2e-'));
  return { dir, device: '', cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export class CloneHost {
  /** The net monitor's acknowledgements: the real monitor if it runs here, else the stand-in. */
  ack: AckStandIn | RealNetMonitor | undefined;
  netMonitor: 'real' | 'stand-in' = 'stand-in';
  private constructor(
    readonly fs: LoopFs,
    readonly simEntry: string,
    readonly vmcloneEntry: string,
  ) {}

  get root(): string {
    return join(this.fs.dir, 'root');
  }

  get env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      PATH: `${join(this.root, 'bin')}:${process.env.PATH ?? ''}`,
      XENSTORED_PATH: join(this.root, 'run/xenstored/socket'),
      ZYNCLONE_ROOT: this.root,
      ZYNCLONE_SIM_ENTRY: this.simEntry,
      NO_COLOR: '1',
    };
  }

  /** The simulator's prefix of namespaces (as src/sim/paths.ts derives it). */
  get netPrefix(): string {
    return `zc${createHash('sha256').update(realpathSync(this.root)).digest('hex').slice(0, 6)}`;
  }

  /**
   * `plain`: no XFS, no network namespaces, no root needed: the root is a
   * plain temp dir (no reflink), and the stand-in acknowledges lockdowns.
   */
  static async create(opts: { plain?: boolean } = {}): Promise<CloneHost> {
    const fs: LoopFs = opts.plain ? plainDir() : mountXfs({ reflink: true, size: '1G' });
    let vmcloneEntry: string | undefined;
    try {
      const simEntry = join(fs.dir, 'sim.mjs');
      await bundleEntry('sim/bin.ts', simEntry);
      const cache = join(repo, 'node_modules/.cache/zynclone-e2e');
      mkdirSync(cache, { recursive: true });
      vmcloneEntry = join(cache, `vmclone-${process.pid}-${Date.now()}.mjs`);
      await bundleEntry('bin/vmclone.ts', vmcloneEntry);
      const host = new CloneHost(fs, simEntry, vmcloneEntry);
      // The test's root is already on its own XFS (or meant to be plain). The
      // tests run their own monitors, from the sources.
      const up = await (opts.plain
        ? host.sim('demo', '--no-network', '--no-monitors', '--storage', 'plain')
        : host.sim('demo', '--no-monitors', '--storage', 'plain'));
      if (up.code !== 0) throw new Error(`sim demo failed: ${up.stderr}${up.stdout}`);
      const socket = join(host.root, 'run/xenstored/socket');
      const nmEntry = join(fs.dir, 'net-monitor.mjs');
      await bundleDaemon('runNetMonitor', 'net-monitor', nmEntry).catch(() => undefined);
      const real =
        !opts.plain && existsSync(nmEntry)
          ? await RealNetMonitor.start(
              nmEntry,
              socket,
              `${host.netPrefix}-netdd`,
              join(fs.dir, 'net-monitor.log'),
            )
          : undefined;
      if (real) {
        host.ack = real;
        host.netMonitor = 'real';
      } else {
        host.ack = await AckStandIn.start(socket);
      }
      return host;
    } catch (err) {
      if (vmcloneEntry !== undefined) rmSync(vmcloneEntry, { force: true });
      await run(
        process.execPath,
        [join(fs.dir, 'sim.mjs'), 'sim', 'down', '--root', join(fs.dir, 'root')],
        process.env,
      ).catch(() => {});
      fs.cleanup();
      throw err;
    }
  }

  private cloneMonitorEntry: string | undefined;

  /** Starts the real clone_monitor against this host (stop it with its stop()). */
  async startCloneMonitor(): Promise<CloneMonitorProcess> {
    if (this.cloneMonitorEntry === undefined) {
      // Next to vmclone's bundle, so that better-sqlite3 resolves from node_modules.
      const entry = this.vmcloneEntry.replace(/\.mjs$/, '-clone-monitor.mjs');
      await bundleDaemon('runCloneMonitor', 'clone-monitor', entry);
      this.cloneMonitorEntry = entry;
    }
    return CloneMonitorProcess.start(
      this.cloneMonitorEntry,
      this,
      join(this.fs.dir, 'clone-monitor.log'),
    );
  }

  sim(...args: string[]): Promise<RunOut> {
    return run(process.execPath, [this.simEntry, 'sim', ...args, '--root', this.root], this.env);
  }

  vmclone(args: readonly string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<RunOut> {
    return run(process.execPath, [this.vmcloneEntry, ...args], { ...this.env, ...extraEnv });
  }

  xl(...args: string[]): Promise<RunOut> {
    return run(join(this.root, 'bin/xl'), args, this.env);
  }

  async domains(): Promise<Map<string, { domid: number; state: string }>> {
    const r = await this.xl('list');
    const out = new Map<string, { domid: number; state: string }>();
    for (const line of r.stdout.split('\n').slice(1)) {
      const m = /^(\S+)\s+(\d+)\s+\d+\s+\d+\s+(\S+)/.exec(line);
      if (m) out.set(m[1]!, { domid: Number(m[2]), state: m[3]! });
    }
    return out;
  }

  async xsRead(path: string): Promise<string | undefined> {
    const r = await run('xenstore-read', [path], this.env);
    return r.code === 0 ? r.stdout.replace(/\n$/, '') : undefined;
  }

  /** Everything a clone of `vm` may leave behind; all empty when none is left. */
  async leftovers(vm: string): Promise<string[]> {
    const left: string[] = [];
    const doms = await this.domains();
    for (const name of doms.keys()) if (name.startsWith(`${vm}-clone`)) left.push(`domain ${name}`);
    const orig = doms.get(vm);
    if (orig?.state.includes('p')) left.push(`${vm} left paused`);
    if (orig?.state.includes('s')) left.push(`${vm} left suspended`);
    for (const dir of [
      'var/lib/zynclone/volumes',
      'var/lib/zynclone/clones',
      'var/lib/zynclone/save',
    ]) {
      const d = join(this.root, dir);
      if (existsSync(d)) for (const f of readdirSync(d)) left.push(`file ${dir}/${f}`);
    }
    if ((await this.xsRead(`/tool/zynclone/vm/${vm}/state`)) !== undefined) {
      left.push(`xenstore /tool/zynclone/vm/${vm}`);
    }
    const list = await this.vmclone(['list', '--json']);
    const clones = JSON.parse(list.stdout || '[]') as { vm: string }[];
    if (clones.some((c) => c.vm === vm)) left.push('clone record');
    const st = await this.vmclone(['status', vm, '--json']);
    if (st.stdout && (JSON.parse(st.stdout) as { operation: unknown }).operation !== null) {
      left.push('running operation');
    }
    return left;
  }

  async dispose(): Promise<void> {
    await this.ack?.close().catch(() => {});
    await this.sim('down').catch(() => {});
    try {
      rmSync(this.vmcloneEntry, { force: true });
      if (this.cloneMonitorEntry !== undefined) rmSync(this.cloneMonitorEntry, { force: true });
    } finally {
      this.fs.cleanup();
    }
  }
}
