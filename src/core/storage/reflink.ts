import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REFLINK_REFUSALS, StorageError, errnoOf } from './errors.js';

/** Probe answers per filesystem (st_dev): reflink support does not change while mounted. */
const probeCache = new Map<number, ReflinkProbe>();

export interface ReflinkProbe {
  readonly supported: boolean;
  /** The errno the kernel refused the probe with, when unsupported. */
  readonly errno?: string;
}

/**
 * Whether files in `dir` can be cloned copy-on-write, found by trying it: a
 * FICLONE of a tiny temp file in `dir` itself. Statfs magic numbers would lie
 * (XFS made with reflink=0, btrfs fine, overlayfs, NFS 4.2 servers vary).
 * Cached per device, so only the first call per filesystem touches the disk;
 * callers probe while planning, before any pause.
 */
export async function probeReflink(dir: string): Promise<ReflinkProbe> {
  let dev: number;
  try {
    dev = (await stat(dir)).dev;
  } catch (err) {
    throw new StorageError(
      'STORAGE_DEST_UNWRITABLE',
      `cannot use directory ${dir}: ${String(err)}`,
      {
        cause: err,
      },
    );
  }
  const cached = probeCache.get(dev);
  if (cached !== undefined) return cached;

  const tag = `${process.pid}-${randomBytes(6).toString('hex')}`;
  const a = join(dir, `.zynclone-reflink-probe-${tag}.a`);
  const b = join(dir, `.zynclone-reflink-probe-${tag}.b`);
  let result: ReflinkProbe;
  try {
    try {
      await writeFile(a, randomBytes(4096), { flag: 'wx' });
    } catch (err) {
      throw new StorageError(
        'STORAGE_DEST_UNWRITABLE',
        `cannot write in ${dir} (needed for the clone's disks): ${errnoOf(err) ?? String(err)}`,
        { cause: err },
      );
    }
    try {
      await copyFile(a, b, constants.COPYFILE_FICLONE_FORCE | constants.COPYFILE_EXCL);
      result = { supported: true };
    } catch (err) {
      const errno = errnoOf(err) ?? 'EUNKNOWN';
      if (!REFLINK_REFUSALS.has(errno)) {
        throw new StorageError('STORAGE_IO', `reflink probe in ${dir} failed: ${String(err)}`, {
          cause: err,
        });
      }
      result = { supported: false, errno };
    }
  } finally {
    await unlink(a).catch(() => {});
    await unlink(b).catch(() => {});
  }
  probeCache.set(dev, result);
  return result;
}

/** Forget probe answers (tests mount and unmount filesystems that may reuse a device number). */
export function clearReflinkCache(): void {
  probeCache.clear();
}

/**
 * Clones `source` to a new file `dest` sharing all its extents (FICLONE).
 * Nothing but the open + ioctl happens here: this runs while the original is
 * paused. Never overwrites; on failure no `dest` is left behind.
 */
export async function reflinkFile(source: string, dest: string): Promise<void> {
  try {
    await copyFile(source, dest, constants.COPYFILE_FICLONE_FORCE | constants.COPYFILE_EXCL);
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'EEXIST') {
      throw new StorageError('STORAGE_DEST_EXISTS', `${dest} already exists; not overwriting it`, {
        cause: err,
      });
    }
    if (errno === 'ENOENT') {
      throw new StorageError('STORAGE_SOURCE_MISSING', `cannot clone ${source}: ${String(err)}`, {
        cause: err,
      });
    }
    if (errno !== undefined && REFLINK_REFUSALS.has(errno)) {
      throw new StorageError(
        'STORAGE_REFLINK_UNSUPPORTED',
        `cannot reflink ${source} to ${dest}: the filesystem refused a copy-on-write clone (${errno}); reflink needs both on one XFS (reflink=1) or btrfs filesystem`,
        { cause: err },
      );
    }
    throw new StorageError('STORAGE_IO', `reflink of ${source} to ${dest} failed: ${String(err)}`, {
      cause: err,
    });
  }
}
