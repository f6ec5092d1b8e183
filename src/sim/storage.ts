// The simulated host's /var on a filesystem with reflink: an XFS made with
// `mkfs.xfs -m reflink=1` on a sparse image file, attached to a loop device
// and mounted at DIR/var. ZynClone snapshots a VM's disks with reflinks into
// its storage_dir, which must be on the same filesystem as the disks; with the
// demo's disks in DIR/var/lib/xen/images and storage_dir under DIR/var, both are.
// Each step is journaled before it acts, so `sim down` undoes it after a crash.
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
} from 'node:fs';
import { resolve, sep } from 'node:path';
import type { Journal } from './journal.js';
import type { SimPaths } from './paths.js';
import { mustRun, run } from './proc.js';

/** Apparent size of the image; it is sparse, so only what is written takes space. */
export const STORAGE_SIZE_GIB = 64;

export type StorageKind = 'plain' | 'xfs';

export type StorageResult =
  | { kind: 'xfs'; device: string; image: string; fresh: boolean }
  | { kind: 'plain'; reason: string };

function realOrResolved(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/** Mount points of this mount namespace (mountinfo escapes space, tab, newline, backslash). */
export function mountPoints(): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const points: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    points.push(
      field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))),
    );
  }
  return points;
}

export function isMountPoint(path: string): boolean {
  return mountPoints().includes(realOrResolved(path));
}

/** Mount points at or below `dir`. */
export function mountsUnder(dir: string): string[] {
  const real = realOrResolved(dir);
  return mountPoints().filter((p) => p === real || p.startsWith(real + sep));
}

/** Unmounts `path`; lazily when busy, so the loop device can still be released. */
export async function unmount(path: string): Promise<void> {
  const r = await run('umount', [path]);
  if (r.code !== 0 && isMountPoint(path)) await mustRun('umount', ['-l', path]);
}

/** Loop devices backed by `image`, from `losetup -j` (`/dev/loop3: []: (/path)`). */
export async function loopsOf(image: string): Promise<string[]> {
  if (!existsSync(image)) return [];
  const r = await run('losetup', ['-j', image]);
  if (r.code !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => l.split(':')[0]!.trim())
    .filter((d) => d.startsWith('/dev/'));
}

/** Detaches every loop device backed by `image`; returns the devices. */
export async function detachLoops(image: string): Promise<string[]> {
  const devices = await loopsOf(image);
  for (const dev of devices) {
    // A device still in use (lazily unmounted) is detached by the kernel once released.
    await run('losetup', ['-d', dev]);
  }
  return devices;
}

async function hasCommand(cmd: string, args: string[]): Promise<boolean> {
  return (await run(cmd, args)).code !== 127;
}

/** Why an XFS on a loop device cannot be made here, or undefined if it can. */
export async function xfsUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not running as root (loop devices and mount need it)';
  if (!existsSync('/dev/loop-control')) return 'no loop devices (/dev/loop-control is missing)';
  if (!(await hasCommand('mkfs.xfs', ['-V'])))
    return 'mkfs.xfs not found (Debian package xfsprogs)';
  if (!(await hasCommand('losetup', ['--version'])))
    return 'losetup not found (Debian package mount)';
  return undefined;
}

function mkdirJournaled(dir: string, journal: Journal): void {
  if (existsSync(dir)) return;
  journal.made({ kind: 'dir', path: dir });
  mkdirSync(dir, { recursive: true });
}

/**
 * Makes DIR/var an XFS with reflink on a loop device, or, where that cannot
 * be done (no root, no loop devices, no mkfs.xfs, a failing step), a plain
 * directory, with the reason. Idempotent: an XFS already mounted from our
 * image is kept.
 */
export async function ensureStorage(
  paths: SimPaths,
  journal: Journal,
  kind: StorageKind,
): Promise<StorageResult> {
  const plain = (reason: string): StorageResult => {
    mkdirJournaled(paths.varDir, journal);
    return { kind: 'plain', reason };
  };
  if (kind === 'plain') return plain('plain directory requested');
  if (isMountPoint(paths.varDir)) {
    const [device] = await loopsOf(paths.storageImage);
    if (device !== undefined)
      return { kind: 'xfs', device, image: paths.storageImage, fresh: false };
    return {
      kind: 'plain',
      reason: `${paths.varDir} is a mount point the simulator did not make; used as it is`,
    };
  }
  const why = await xfsUnavailable();
  if (why !== undefined) return plain(why);
  if (existsSync(paths.varDir) && readdirSync(paths.varDir).length > 0) {
    return plain(`${paths.varDir} already holds files; not mounting over them`);
  }
  mkdirJournaled(paths.varDir, journal);
  const image = paths.storageImage;
  try {
    // A leftover image (its journal lost) may still back a loop device.
    await detachLoops(image);
    journal.made({ kind: 'file', path: image });
    rmSync(image, { force: true });
    const fd = openSync(image, 'w');
    try {
      ftruncateSync(fd, STORAGE_SIZE_GIB * 1024 ** 3);
    } finally {
      closeSync(fd);
    }
    await mustRun('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', image]);
    journal.made({ kind: 'loop', image });
    const device = (await mustRun('losetup', ['--find', '--show', image])).trim();
    journal.made({ kind: 'mount', path: paths.varDir });
    await mustRun('mount', ['-t', 'xfs', device, paths.varDir]);
    return { kind: 'xfs', device, image, fresh: true };
  } catch (err) {
    // Undo in reverse, so the plain directory is not left on a half-made filesystem.
    if (isMountPoint(paths.varDir)) await unmount(paths.varDir).catch(() => {});
    journal.gone({ kind: 'mount', path: paths.varDir });
    await detachLoops(image);
    journal.gone({ kind: 'loop', image });
    rmSync(image, { force: true });
    journal.gone({ kind: 'file', path: image });
    return plain(`cannot make an XFS on a loop device: ${(err as Error).message}`);
  }
}

/** One line for the user: what DIR/var is. */
export function describeStorage(paths: SimPaths, r: StorageResult): string {
  return r.kind === 'xfs'
    ? `storage: ${paths.varDir} is XFS with reflink on ${r.device} (sparse image ${r.image}, ${STORAGE_SIZE_GIB} GiB)`
    : `storage: ${paths.varDir} is a plain directory (no reflink): ${r.reason}`;
}
