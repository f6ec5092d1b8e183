// The simulated host's network: one "network driver domain" namespace holding
// the bridges and the vif backends, and one namespace per guest holding its
// NICs. A vif is a veth pair: `vif<domid>.<devid>` (or its vifname) in the
// netdd namespace, enslaved to its bridge, and `eth<devid>` in the guest's
// namespace with the config's MAC and the simulator's IP, so the guest kernel
// answers ARP and ping like a real guest. Every name is created inside a
// namespace that carries the simulator's prefix, so two simulators never see
// each other's links and deleting the namespaces removes everything.
import type { Journal } from '../journal.js';
import type { SimPaths } from '../paths.js';
import { SimError, mustRun, run } from '../proc.js';

export interface VifPlumbing {
  devid: number;
  /** Backend interface name in the netdd namespace. */
  name: string;
  mac: string;
  bridge: string;
  /** CIDR addresses for the guest side, e.g. 10.77.0.10/24. */
  ips: string[];
}

/** Xen gives every vif backend this MAC so the bridge never picks a guest's. */
const BACKEND_MAC = 'fe:ff:ff:ff:ff:ff';

export class SimNetwork {
  private readonly bridges = new Set<string>();

  private constructor(
    private readonly paths: SimPaths,
    private readonly journal: Journal,
    readonly enabled: boolean,
    readonly reason: string | undefined,
  ) {}

  get netddNs(): string {
    return `${this.paths.prefix}-netdd`;
  }

  guestNs(domid: number): string {
    return `${this.paths.prefix}-d${domid}`;
  }

  /**
   * Creates the netdd namespace. Without root (or without a working `ip netns`)
   * the network is disabled and `reason` says why; everything else still works.
   */
  static async init(paths: SimPaths, journal: Journal, want = true): Promise<SimNetwork> {
    if (!want) return new SimNetwork(paths, journal, false, 'network disabled by --no-network');
    if (process.getuid?.() !== 0) {
      return new SimNetwork(
        paths,
        journal,
        false,
        'network disabled: network namespaces need root (run the simulator as root)',
      );
    }
    const net = new SimNetwork(paths, journal, true, undefined);
    try {
      await net.addNs(net.netddNs);
    } catch (err) {
      return new SimNetwork(
        paths,
        journal,
        false,
        `network disabled: cannot create a network namespace (${(err as Error).message})`,
      );
    }
    return net;
  }

  private async addNs(name: string): Promise<void> {
    this.journal.made({ kind: 'netns', name });
    await run('ip', ['netns', 'delete', name]);
    await mustRun('ip', ['netns', 'add', name]);
    await mustRun('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  }

  private async delNs(name: string): Promise<void> {
    const r = await run('ip', ['netns', 'delete', name]);
    if (r.code !== 0 && !/No such file/.test(r.stderr)) {
      throw new SimError('SIM_NETNS', `cannot delete namespace ${name}: ${r.stderr.trim()}`);
    }
    this.journal.gone({ kind: 'netns', name });
  }

  async ensureBridge(bridge: string): Promise<void> {
    if (this.bridges.has(bridge)) return;
    checkIfName(bridge, 'bridge');
    const r = await run('ip', [
      '-n',
      this.netddNs,
      'link',
      'add',
      'name',
      bridge,
      'type',
      'bridge',
    ]);
    if (r.code !== 0 && !/File exists/.test(r.stderr)) {
      throw new SimError('SIM_BRIDGE', `cannot create bridge ${bridge}: ${r.stderr.trim()}`);
    }
    await mustRun('ip', ['-n', this.netddNs, 'link', 'set', bridge, 'up']);
    this.bridges.add(bridge);
  }

  listBridges(): string[] {
    return [...this.bridges].sort();
  }

  async addGuest(domid: number): Promise<void> {
    await this.addNs(this.guestNs(domid));
  }

  async removeGuest(domid: number): Promise<void> {
    await this.delNs(this.guestNs(domid));
  }

  /** Plumbs one vif; the guest side stays down when the guest is paused. */
  async addVif(domid: number, vif: VifPlumbing, guestUp: boolean): Promise<void> {
    checkIfName(vif.name, 'vifname');
    await this.ensureBridge(vif.bridge);
    const eth = `eth${vif.devid}`;
    const g = this.guestNs(domid);
    const added = await run('ip', [
      '-n',
      this.netddNs,
      'link',
      'add',
      vif.name,
      'address',
      BACKEND_MAC,
      'type',
      'veth',
      'peer',
      'name',
      eth,
      'address',
      vif.mac,
      'netns',
      g,
    ]);
    if (added.code !== 0) {
      throw new SimError(
        /File exists/.test(added.stderr) ? 'SIM_VIF_EXISTS' : 'SIM_VIF',
        `cannot create vif ${vif.name} for domain ${domid}: ${added.stderr.trim()}`,
      );
    }
    await mustRun(
      'ip',
      ['-n', this.netddNs, '-batch', '-'],
      `link set ${vif.name} master ${vif.bridge}\nlink set ${vif.name} up\n`,
    );
    const lines = vif.ips.map((ip) => `addr add ${ip} dev ${eth}`);
    if (guestUp) lines.push(`link set ${eth} up`);
    if (lines.length > 0) await mustRun('ip', ['-n', g, '-batch', '-'], `${lines.join('\n')}\n`);
  }

  async removeVif(vifName: string): Promise<void> {
    const r = await run('ip', ['-n', this.netddNs, 'link', 'delete', vifName]);
    if (r.code !== 0 && !/Cannot find device/.test(r.stderr)) {
      throw new SimError('SIM_VIF', `cannot delete vif ${vifName}: ${r.stderr.trim()}`);
    }
  }

  /**
   * Pause and unpause: a paused guest's NICs are set down inside its namespace,
   * so the kernel neither sends nor answers a single frame (the backend vif
   * stays, as on Xen, and shows no carrier).
   */
  async setGuestLinks(domid: number, devids: readonly number[], up: boolean): Promise<void> {
    if (devids.length === 0) return;
    const state = up ? 'up' : 'down';
    await mustRun(
      'ip',
      ['-n', this.guestNs(domid), '-batch', '-'],
      `${devids.map((d) => `link set eth${d} ${state}`).join('\n')}\n`,
    );
  }

  async close(): Promise<void> {
    if (!this.enabled) return;
    await this.delNs(this.netddNs);
    this.bridges.clear();
  }
}

function checkIfName(name: string, what: string): void {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) {
    throw new SimError(
      'SIM_IFNAME',
      `${what} '${name}' is not a valid interface name (1 to 15 of A-Z a-z 0-9 _ . -)`,
    );
  }
}
