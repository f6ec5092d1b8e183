// A simulated host (plain temp dir, no namespaces) with a running clone of
// win01 (HVM, VNC console served by QEMU), and ZynClone's daemons run as
// processes the way systemd runs them: clone_console_monitor, and on request
// clone_monitor (which follows the clone to a new domid after a reboot).
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { buildConsolePage } from '../../../scripts/build-console-page.mjs';
import { bundleEntry, repo } from '../../bundle.js';
import { CloneHost, type RunOut } from '../../e2e/clone-helpers.js';
import { type DataPathName, spliceHelper } from './splice-build.js';

export interface Daemon {
  child: ChildProcess;
  log: string;
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class ConsoleHost {
  consoleMonitor: Daemon | undefined;
  cloneMonitor: Daemon | undefined;
  url = '';

  private constructor(
    readonly host: CloneHost,
    readonly zynclone: string,
    readonly assets: string,
  ) {}

  /**
   * The simulator with a running clone of win01; no daemon started yet. On
   * the splice data path the helper is where the monitor looks by default;
   * on the js path console_splice_helper is empty.
   */
  static async create(dataPath: DataPathName = 'js'): Promise<ConsoleHost> {
    const host = await CloneHost.create({ plain: true });
    try {
      // Inside the repository so that the native better-sqlite3 resolves from node_modules.
      const cache = join(repo, 'node_modules/.cache/zynclone-console');
      mkdirSync(cache, { recursive: true });
      const zynclone = join(cache, `zynclone-${process.pid}-${Date.now()}.mjs`);
      await bundleEntry('bin/zynclone.ts', zynclone);
      const assets = await buildConsolePage(join(host.fs.dir, 'console-page'));
      const ch = new ConsoleHost(host, zynclone, assets);
      ch.setBase({ console_port: 0, storage_backend: 'copy' });
      if (dataPath === 'js') ch.setBase({ console_splice_helper: '' });
      else {
        const at = join(host.root, 'usr/lib/zynclone/zynclone-console-splice');
        mkdirSync(dirname(at), { recursive: true });
        copyFileSync(await spliceHelper(), at);
      }
      const down = await host.xl('destroy', 'win01');
      if (down.code !== 0) throw new Error(`xl destroy win01: ${down.stderr}`);
      const made = await host.vmclone(['create', 'win01', '--offline', '-q']);
      if (made.code !== 0) throw new Error(`vmclone create win01: ${made.stderr}`);
      return ch;
    } catch (err) {
      await host.dispose();
      throw err;
    }
  }

  get root(): string {
    return this.host.root;
  }

  get socket(): string {
    return join(this.root, 'run/xenstored/socket');
  }

  /** Merges `values` into base.json. */
  setBase(values: Record<string, unknown>): void {
    const file = join(this.root, 'etc/xen/clone/base.json');
    let current: Record<string, unknown> = {};
    try {
      current = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch {
      mkdirSync(join(this.root, 'etc/xen/clone'), { recursive: true });
    }
    writeFileSync(file, `${JSON.stringify({ ...current, ...values }, null, 2)}\n`);
  }

  private async daemon(args: string[], logName: string, ready: RegExp): Promise<Daemon> {
    const log = join(this.host.fs.dir, logName);
    writeFileSync(log, '');
    const child = spawn(process.execPath, [this.zynclone, ...args], {
      env: this.host.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const append = (d: Buffer) => writeFileSync(log, d, { flag: 'a' });
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    await waitFor(`${args[0]} to start (log ${log})`, () => {
      if (child.exitCode !== null)
        throw new Error(`${args[0]} exited: ${readFileSync(log, 'utf8')}`);
      return ready.test(readFileSync(log, 'utf8')) || undefined;
    });
    return { child, log };
  }

  async startConsoleMonitor(extra: string[] = []): Promise<string> {
    this.consoleMonitor = await this.daemon(
      [
        'console-monitor',
        '--xenstore',
        this.socket,
        '--root',
        this.root,
        '--assets',
        this.assets,
        '--heartbeat-ms',
        '1000',
        '--reject-delay-ms',
        '300',
        ...extra,
      ],
      'console-monitor.log',
      /"msg":"serving"/,
    );
    const line = readFileSync(this.consoleMonitor.log, 'utf8')
      .split('\n')
      .find((l) => l.includes('"msg":"serving"'))!;
    this.url = (JSON.parse(line) as { url: string }).url;
    return this.url;
  }

  async startCloneMonitor(): Promise<void> {
    this.cloneMonitor = await this.daemon(
      ['clone-monitor', '--xenstore', this.socket, '--root', this.root, '--poll-ms', '100'],
      'clone-monitor.log',
      /"msg":"watching"/,
    );
  }

  consoleLog(): string {
    return this.consoleMonitor ? readFileSync(this.consoleMonitor.log, 'utf8') : '';
  }

  static async stop(d: Daemon | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!d || d.child.exitCode !== null || d.child.signalCode !== null) return;
    const exited = new Promise((r) => d.child.once('exit', r));
    d.child.kill(signal);
    const timer = setTimeout(() => d.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  vmclone(args: readonly string[]): Promise<RunOut> {
    return this.host.vmclone(args);
  }

  /** `vmclone console <vm> --json`, parsed. */
  async ticketUrl(vm = 'win01'): Promise<{ url: string; domid: number; cloneName: string }> {
    const r = await this.vmclone(['console', vm, '--json']);
    if (r.code !== 0) throw new Error(`vmclone console ${vm}: ${r.stderr}`);
    return JSON.parse(r.stdout) as { url: string; domid: number; cloneName: string };
  }

  async dispose(): Promise<void> {
    await ConsoleHost.stop(this.consoleMonitor);
    await ConsoleHost.stop(this.cloneMonitor);
    rmSync(this.zynclone, { force: true });
    await this.host.dispose();
  }
}
