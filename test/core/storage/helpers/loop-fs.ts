import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function hasTool(name: string): boolean {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(join(d, name)));
}

/** Loop-mounted filesystems need root, a loop driver and xfsprogs. */
export const canMountLoop =
  process.getuid?.() === 0 && existsSync('/dev/loop-control') && hasTool('mkfs.xfs');

export const hasQemuImg = hasTool('qemu-img');

export interface LoopFs {
  /** Mount point. */
  readonly dir: string;
  readonly device: string;
  /** Unmounts, detaches and deletes; safe to call more than once and after a failed mount. */
  cleanup(): void;
}

/**
 * A fresh XFS on a sparse image file on a loop device, mounted in a temp dir.
 * `reflink` picks mkfs.xfs -m reflink=1 or 0.
 */
export function mountXfs(opts: { reflink: boolean; size?: string }): LoopFs {
  const base = mkdtempSync(join(tmpdir(), 'zc-storage-fs-'));
  const img = join(base, 'fs.img');
  const dir = join(base, 'mnt');
  let device = '';
  let mounted = false;
  const cleanup = () => {
    if (mounted) {
      try {
        execFileSync('umount', [dir], { stdio: 'pipe' });
        mounted = false;
      } catch {
        execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
        mounted = false;
      }
    }
    if (device !== '') {
      try {
        execFileSync('losetup', ['-d', device], { stdio: 'pipe' });
      } catch {
        // already detached
      }
      device = '';
    }
    rmSync(base, { recursive: true, force: true });
  };
  try {
    execFileSync('truncate', ['-s', opts.size ?? '512M', img]);
    execFileSync('mkfs.xfs', ['-q', '-m', `reflink=${opts.reflink ? 1 : 0}`, img], {
      stdio: 'pipe',
    });
    device = execFileSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).trim();
    mkdirSync(dir);
    execFileSync('mount', [device, dir], { stdio: 'pipe' });
    mounted = true;
  } catch (err) {
    cleanup();
    throw err;
  }
  return {
    dir,
    get device() {
      return device;
    },
    cleanup,
  };
}

/** Whether `filefrag -v` reports any extent of `file` as shared with another file. */
export function hasSharedExtents(file: string): boolean {
  const out = execFileSync('filefrag', ['-v', file], { encoding: 'utf8' });
  return /\bshared\b/.test(out);
}
