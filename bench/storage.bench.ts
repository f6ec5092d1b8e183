// Snapshot time of the storage backends: reflink (FICLONE) against a full
// sparse copy, for 1, 10 and 50 GB disk images on an XFS (reflink=1) loop
// filesystem. Each image is sparse with 64 MiB of random data in 8 places, so
// it has real extents. Needs root and a loop device. Figures only.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CommandRunner,
  type SnapshotPlan,
  clearReflinkCache,
  execute,
  planSnapshot,
  remove,
  sparseCopy,
} from '../src/core/storage/index.js';
import type { BenchResult } from './types.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const SIZES_GB = [1, 10, 50];
const REFLINK_RUNS = 7;
/** A full copy of 50 GB is run only if 10 GB was quick (it is, when the extent map works). */
const COPY_50_IF_10_UNDER_MS = 8000;

function makeImage(path: string, bytes: number): void {
  const fd = openSync(path, 'wx');
  try {
    const pieces = 8;
    for (let i = 0; i < pieces; i++) {
      const at = Math.floor((bytes / pieces) * i);
      writeSync(fd, randomBytes(8 * MiB), 0, 8 * MiB, at - (at % 4096));
    }
    // Apparent size exactly `bytes`; the data above ends well before it.
    execFileSync('truncate', ['-s', String(bytes), path]);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;

export async function run(): Promise<BenchResult[]> {
  if (process.getuid?.() !== 0) {
    return [{ name: 'skipped', value: 0, unit: '-', note: 'needs root (loop-mounted XFS)' }];
  }
  const base = mkdtempSync(join(tmpdir(), 'zc-bench-storage-'));
  const img = join(base, 'xfs.img');
  const mnt = join(base, 'mnt');
  let device = '';
  let mounted = false;
  const out: BenchResult[] = [];
  try {
    execFileSync('truncate', ['-s', '120G', img]);
    execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', img], { stdio: 'pipe' });
    device = execFileSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).trim();
    mkdirSync(mnt);
    execFileSync('mount', [device, mnt]);
    mounted = true;
    clearReflinkCache();

    const copyMs = new Map<number, number>();
    for (const gb of SIZES_GB) {
      const src = join(mnt, `vm${gb}.img`);
      makeImage(src, gb * GiB);
      const disk = { target: src, format: 'raw', vdev: 'xvda', kind: 'file' } as const;

      const t0 = performance.now();
      const plan = await planSnapshot(disk, {
        kind: 'online-disk',
        originalState: 'running',
        cloneName: 'bench',
      });
      const planMs = performance.now() - t0;
      if (plan.backend !== 'reflink') throw new Error(`expected reflink, planned ${plan.backend}`);

      const times: number[] = [];
      for (let i = 0; i < REFLINK_RUNS; i++) {
        const t = performance.now();
        const rec = await execute(plan, { originalState: 'paused' });
        times.push(performance.now() - t);
        await remove(rec);
      }
      out.push({
        name: `reflink snapshot ${gb} GB (median of ${REFLINK_RUNS})`,
        value: round(median(times)),
        unit: 'ms',
        note: `max ${round(Math.max(...times))} ms; 64 MiB data in 8 extents`,
      });
      out.push({
        name: `plan (incl. reflink probe) ${gb} GB`,
        value: round(planMs),
        unit: 'ms',
        note: gb === SIZES_GB[0] ? 'first plan probes the filesystem' : 'probe cached per device',
      });

      if (gb === SIZES_GB[0]) {
        // The fallback where the filesystem gives no extent map: every byte is read.
        const noMap: CommandRunner = async () => {
          throw Object.assign(new Error('no extent map'), { code: 'ENOENT' });
        };
        const t = performance.now();
        await sparseCopy(src, join(mnt, 'scan.img'), { run: noMap });
        const ms = performance.now() - t;
        rmSync(join(mnt, 'scan.img'));
        out.push({
          name: `full copy ${gb} GB, no extent map`,
          value: round(ms),
          unit: 'ms',
          note: `reads holes too: ${Math.round((gb * GiB) / MiB / (ms / 1000))} MiB/s apparent`,
        });
      }

      const tenMs = copyMs.get(10);
      if (gb === 50 && tenMs !== undefined && tenMs > COPY_50_IF_10_UNDER_MS) {
        out.push({
          name: `full copy ${gb} GB`,
          value: 0,
          unit: 'ms',
          note: `not run: 10 GB took ${Math.round(tenMs)} ms`,
        });
        continue;
      }
      const copyPlan: SnapshotPlan = await planSnapshot(disk, {
        kind: 'offline',
        originalState: 'stopped',
        cloneName: 'bench-copy',
        backend: 'copy',
      });
      const t = performance.now();
      const rec = await execute(copyPlan, { originalState: 'stopped' });
      const ms = performance.now() - t;
      await remove(rec);
      copyMs.set(gb, ms);
      const reflinkMedian = median(times);
      out.push({
        name: `full sparse copy ${gb} GB`,
        value: round(ms),
        unit: 'ms',
        note: `64 MiB of data, holes skipped via the extent map; ${Math.round(64 / (ms / 1000))} MiB/s of data`,
      });
      out.push({
        name: `copy / reflink ratio ${gb} GB`,
        value: Math.round(ms / reflinkMedian),
        unit: 'x',
      });
    }
  } finally {
    if (mounted) execFileSync('umount', [mnt]);
    if (device !== '') execFileSync('losetup', ['-d', device]);
    rmSync(base, { recursive: true, force: true });
  }
  return out;
}
