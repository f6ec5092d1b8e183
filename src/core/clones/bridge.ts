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
 * Makes sure `bridge` exists and has no port other than clone vifs (names
 * starting with `clonePrefix`). Throws ISOLATION_BRIDGE naming the offending
 * port when it has an uplink, or when it cannot be created.
 */
export async function ensureIsolationBridge(
  bridge: string,
  clonePrefix: string,
  opts: { sysNet?: string; ip?: IpRunner } = {},
): Promise<'created' | 'exists'> {
  const sysNet = opts.sysNet ?? '/sys/class/net';
  const dir = join(sysNet, bridge);
  if (existsSync(dir)) {
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
    return 'exists';
  }
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
