// Where one simulator keeps its state: everything lives under its root
// directory, and every kernel object it names carries a prefix derived from
// that root, so parallel simulators (and tests) never collide and cleanup of
// one never touches another.
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface SimPaths {
  root: string;
  run: string;
  /** Control socket the xl client talks to (JSON lines). */
  control: string;
  xenstored: string;
  xsSocket: string;
  domainSockets: string;
  pidfile: string;
  journal: string;
  log: string;
  bin: string;
  xl: string;
  /** The live save helper where the product looks by default (config live_save_helper). */
  liveSaveHelper: string;
  domains: string;
  /** `DIR/etc/xen`: xl configs, where ZynClone looks for them on a Xen host. */
  xenConfigDir: string;
  /** `DIR/var`: the simulated host's /var; an XFS with reflink with `--storage xfs`. */
  varDir: string;
  /** `DIR/var.img`: the sparse image file behind the XFS at `varDir`. */
  storageImage: string;
  /** `DIR/var/lib/xen/images`: the demo VMs' disk images. */
  images: string;
  /** Short tag for namespaces and other host-wide names, e.g. `zc1a2b3c`. */
  prefix: string;
}

export function simPaths(rootArg: string): SimPaths {
  const abs = resolve(rootArg);
  let real = abs;
  try {
    real = realpathSync(abs);
  } catch {
    // The root may not exist yet (sim up creates it); the resolved path is then the identity.
  }
  const prefix = `zc${createHash('sha256').update(real).digest('hex').slice(0, 6)}`;
  const run = join(abs, 'run');
  const xenstored = join(run, 'xenstored');
  return {
    root: abs,
    run,
    control: join(run, 'sim.sock'),
    xenstored,
    xsSocket: join(xenstored, 'socket'),
    domainSockets: join(xenstored, 'domains'),
    pidfile: join(run, 'sim.pid'),
    journal: join(abs, 'sim-journal.jsonl'),
    log: join(abs, 'sim.log'),
    bin: join(abs, 'bin'),
    xl: join(abs, 'bin', 'xl'),
    liveSaveHelper: join(abs, 'usr', 'lib', 'zynclone', 'zynclone-livesave'),
    domains: join(run, 'domains'),
    xenConfigDir: join(abs, 'etc', 'xen'),
    varDir: join(abs, 'var'),
    storageImage: join(abs, 'var.img'),
    images: join(abs, 'var', 'lib', 'xen', 'images'),
    prefix,
  };
}

/**
 * Whether a process belongs to this simulator: every process it starts has the
 * root directory on its command line (the daemon's --root, QEMU's -pidfile),
 * which guards against killing a stranger that inherited a recycled pid.
 */
export function isOurProcess(cmdline: string, paths: SimPaths): boolean {
  return cmdline.includes(paths.root);
}
