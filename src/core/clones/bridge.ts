/**
 * The isolation bridge: masked clone vifs are attached to it instead of their
 * production bridge. It must never have an uplink, so every port it has must
 * be a clone vif. On a plain Xen host (dom0 is the network domain) vmclone
 * creates it when it is missing; under a test or simulator root the
 * simulator's network domain makes bridges itself and the host is not touched.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CloneError } from './errors.js';

export type IpRunner = (args: readonly string[]) => Promise<void>;

const runIp: IpRunner = (args) =>
  new Promise((resolve, reject) => {
    execFile('ip', [...args], (err, _out, stderr) =>
      err ? reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(),
    );
  });

/**
 * Refuses a production bridge as the isolation bridge: one a vif of the VM
 * (or of its clone, on its production network) is attached to, or, when it
 * exists in this domain, one that carries any port that is not a clone vif
 * (a production vif or an uplink). Where bridges live in another domain (the
 * simulator's network namespace), only the first check can be made here;
 * `vmclone doctor` checks the ports there.
 */
export function refuseProductionBridge(
  bridge: string,
  opts: {
    readonly clonePrefix: string;
    /** The bridges the VM's vifs use on its production network. */
    readonly productionBridges: readonly string[];
    readonly vm: string;
    readonly sysNet?: string;
  },
): void {
  if (opts.productionBridges.includes(bridge)) {
    throw new CloneError(
      'ISOLATION_BRIDGE',
      `isolation_bridge ${bridge} is a production bridge: a vif of ${opts.vm} is attached to it, so masked clone vifs would sit on that network; choose a bridge no VM uses (default zc-isolated)`,
    );
  }
  checkPorts(bridge, opts.clonePrefix, opts.sysNet ?? '/sys/class/net');
}

function checkPorts(bridge: string, clonePrefix: string, sysNet: string): boolean {
  const dir = join(sysNet, bridge);
  if (!existsSync(dir)) return false;
  if (!existsSync(join(dir, 'bridge'))) {
    throw new CloneError(
      'ISOLATION_BRIDGE',
      `isolation bridge ${bridge} exists but is not a bridge; change isolation_bridge or remove that interface`,
    );
  }
  const ports = existsSync(join(dir, 'brif')) ? readdirSync(join(dir, 'brif')) : [];
  const uplinks = ports.filter((p) => !p.startsWith(clonePrefix));
  if (uplinks.length > 0) {
    throw new CloneError(
      'ISOLATION_BRIDGE',
      `isolation bridge ${bridge} has ports that are not clone vifs (${uplinks.join(', ')}): ` +
        'it would connect clones to a network; detach them or choose another isolation_bridge',
    );
  }
  return true;
}

/**
 * Makes sure `bridge` exists and has no port other than clone vifs (names
 * starting with `clonePrefix`). Throws ISOLATION_BRIDGE naming the offending
 * port when it has an uplink, or when it cannot be created.
 */
export async function ensureIsolationBridge(
  bridge: string,
  clonePrefix: string,
  opts: { sysNet?: string; ip?: IpRunner } = {},
): Promise<'created' | 'exists'> {
  if (checkPorts(bridge, clonePrefix, opts.sysNet ?? '/sys/class/net')) return 'exists';
  const ip = opts.ip ?? runIp;
  try {
    await ip(['link', 'add', 'name', bridge, 'type', 'bridge']);
    await ip(['link', 'set', bridge, 'up']);
  } catch (err) {
    throw new CloneError(
      'ISOLATION_BRIDGE',
      `cannot create isolation bridge ${bridge}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return 'created';
}
