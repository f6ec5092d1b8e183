// A network driver domain in a box for the net monitor's tests: namespaces the
// test creates itself (unique names), a bridge in the "netdd" namespace, and
// guests joined to it by veth pairs whose netdd ends are named like vif
// backends. Everything lives in those namespaces; `destroy` deletes them all.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], timeoutMs = 20_000): Promise<Out> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim() || r.code}`);
  return r.stdout;
}

function hasTool(name: string): boolean {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(`${d}/${name}`));
}

/** Why these tests cannot run here, or undefined if they can. */
export function labUnavailable(tools: string[] = ['ip', 'nft', 'python3']): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, nftables)';
  const missing = tools.filter((t) => !hasTool(t));
  return missing.length ? `missing tools: ${missing.join(', ')}` : undefined;
}

export interface GuestNic {
  /** Backend name in the netdd namespace (vif5.0, zcv9.1, ...). */
  vif: string;
  /** Undefined: the backend end stays off any bridge (an address of its own, say). */
  bridge: string | undefined;
  mac: string;
  /** CIDR, e.g. 10.99.0.10/24. */
  ip: string;
}

export class Lab {
  readonly netdd: string;
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();

  constructor(readonly prefix: string) {
    this.netdd = `${prefix}-netdd`;
  }

  static async create(tag: string): Promise<Lab> {
    const lab = new Lab(`zc${tag}${process.pid % 10000}${Math.random().toString(36).slice(2, 5)}`);
    try {
      await lab.addNs(lab.netdd);
    } catch (err) {
      // The caller never gets the lab to clean up: its namespace must not outlive this.
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  ns(name: string): string {
    return `${this.prefix}-${name}`;
  }

  private async addNs(name: string): Promise<void> {
    this.namespaces.push(name);
    await must('ip', ['netns', 'add', name]);
    await must('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    // No IPv6 autoconfiguration chatter: each test counts frames.
    await must('ip', ['netns', 'exec', name, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    await must('ip', [
      'netns',
      'exec',
      name,
      'sysctl',
      '-qw',
      'net.ipv6.conf.default.disable_ipv6=1',
    ]);
  }

  async addBridge(bridge: string, ip?: string): Promise<void> {
    await must('ip', ['-n', this.netdd, 'link', 'add', bridge, 'type', 'bridge']);
    await must('ip', ['-n', this.netdd, 'link', 'set', bridge, 'up']);
    if (ip) await must('ip', ['-n', this.netdd, 'addr', 'add', ip, 'dev', bridge]);
  }

  async addGuest(guest: string): Promise<string> {
    const name = this.ns(guest);
    await this.addNs(name);
    return name;
  }

  /** A vif: the backend end in netdd on `bridge`, `eth<n>` in the guest with its MAC and IP. */
  async addNic(guest: string, eth: string, nic: GuestNic): Promise<void> {
    const g = this.ns(guest);
    await must('ip', [
      ...['-n', this.netdd, 'link', 'add', nic.vif, 'type', 'veth'],
      ...['peer', 'name', eth, 'netns', g],
    ]);
    if (nic.bridge)
      await must('ip', ['-n', this.netdd, 'link', 'set', nic.vif, 'master', nic.bridge]);
    await must('ip', ['-n', this.netdd, 'link', 'set', nic.vif, 'up']);
    await must('ip', ['-n', g, 'link', 'set', eth, 'address', nic.mac]);
    await must('ip', ['-n', g, 'addr', 'add', nic.ip, 'dev', eth]);
    await must('ip', ['-n', g, 'link', 'set', eth, 'up']);
  }

  /**
   * The production network the packet labs stand on: bridge br0 at
   * `<subnet>.1/24` with an original (vif5.0, `<subnet>.10`) and a client
   * (vif7.0, `<subnet>.20`).
   */
  async addProductionNet(subnet: string, macs: { orig: string; client: string }): Promise<void> {
    await this.addBridge('br0', `${subnet}.1/24`);
    await this.addGuest('orig');
    await this.addNic('orig', 'eth0', {
      vif: 'vif5.0',
      bridge: 'br0',
      mac: macs.orig,
      ip: `${subnet}.10/24`,
    });
    await this.addGuest('client');
    await this.addNic('client', 'eth0', {
      vif: 'vif7.0',
      bridge: 'br0',
      mac: macs.client,
      ip: `${subnet}.20/24`,
    });
  }

  /** The net monitor as systemd runs it, from its `bundle`, on this lab's network domain; output to `logs`. */
  startNetMonitor(bundle: string, xenstoreSocket: string, logs: string[]): ChildProcess {
    const c = spawn(
      process.execPath,
      [bundle, '--xenstore', xenstoreSocket, '--netns', this.netdd, '--heartbeat-ms', '200'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    c.stdout!.on('data', (d: Buffer) => logs.push(d.toString()));
    c.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
    this.track(c);
    return c;
  }

  exec(ns: string, cmd: string, args: string[], timeoutMs?: number): Promise<Out> {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], timeoutMs);
  }

  /** True if `count` pings from `ns` to `ip` all get an answer. */
  /**
   * Whether `ip` answers within a few seconds, stopping at the first reply.
   * The neighbour entry is flushed first: an earlier "must stay dark" ping
   * leaves it FAILED, and the kernel may then not ask again within the
   * test's time. For "must stay dark" checks use `ping`.
   */
  async reaches(ns: string, ip: string): Promise<boolean> {
    await this.exec(ns, 'ip', ['neigh', 'flush', 'to', ip]);
    const r = await this.exec(ns, 'ping', ['-n', '-q', '-c', '1', '-i', '0.2', '-w', '5', ip]);
    return r.code === 0;
  }

  async ping(ns: string, ip: string, count = 2): Promise<boolean> {
    const r = await this.exec(ns, 'ping', [
      '-n',
      '-q',
      '-c',
      String(count),
      '-i',
      '0.2',
      '-W',
      '1',
      ip,
    ]);
    return r.code === 0;
  }

  /** Starts a capture in `ns`; `stop()` returns the packet lines tcpdump printed. */
  async capture(
    ns: string,
    iface: string,
    filter: string[],
    inboundOnly = false,
  ): Promise<Capture> {
    const args = [
      'netns',
      'exec',
      ns,
      'tcpdump',
      '-l',
      '-n',
      '-e',
      '--immediate-mode',
      '-i',
      iface,
    ];
    if (inboundOnly) args.push('-Q', 'in');
    const child = spawn('ip', [...args, ...filter], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`tcpdump did not start: ${stderr}`)), 10_000);
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/listening on/.test(stderr)) {
          clearTimeout(t);
          resolve();
        }
      });
      child.on('exit', () => {
        clearTimeout(t);
        reject(new Error(`tcpdump exited: ${stderr}`));
      });
    });
    return {
      stop: async () => {
        if (child.exitCode === null) {
          const done = new Promise((r) => child.once('exit', r));
          child.kill('SIGINT');
          await done;
        }
        this.children.delete(child);
        return stdout.split('\n').filter((l) => l.trim() !== '');
      },
    };
  }

  track(child: ChildProcess): void {
    this.children.add(child);
  }

  async destroy(): Promise<void> {
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    // Guests first: deleting a namespace destroys its veth ends, and the peers with them.
    for (const name of [...this.namespaces].reverse()) await run('ip', ['netns', 'del', name]);
  }
}

export interface Capture {
  stop(): Promise<string[]>;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
