// Online (disk-only) clone time and the original's pause, for disks of 1, 10
// and 50 GB (ZC_BENCH_SIZES_GB), on XFS with reflink, against what a full
// copy of the same disk takes (the pause a copy-based clone would need). The
// disks are sparse files with real data written (1/ZC_BENCH_FILL_DIVISOR of
// each, default 1/64, spread over the whole disk). The lifecycle runs
// in-process against the simulator; its `xl` is a Node program, so each xl
// command costs a process start that the real C xl does not: the xl unpause
// time is reported separately. Then memory clones of a PVH guest of 128 and
// 512 MiB (ZC_BENCH_MEMORY_MIB): the original's pause with the live pre-copy
// (the simulator's zynclone-livesave) against xl save -p of the same guest.
// Needs root, loop devices and mkfs.xfs.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloneLifecycle } from '../src/core/clones/lifecycle.js';
import { setOverride } from '../src/core/config/index.js';
import { validateVmName, zynclonePaths } from '../src/core/paths.js';
import { openStateStore } from '../src/core/state/index.js';
import { execute, planSnapshot, remove } from '../src/core/storage/index.js';
import { XlDriver } from '../src/xen/index.js';
import { XsClient } from '../src/xenstore/index.js';
import { ackEveryGeneration, sh, simEnv } from './sim-host.js';
import type { BenchResult } from './types.js';

const here = dirname(fileURLToPath(import.meta.url));
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** A sparse disk of `bytes` with 4 MiB of random data every `4 MiB * divisor`. */
function makeDisk(file: string, bytes: number, divisor: number): number {
  const fd = openSync(file, 'w');
  const chunk = randomBytes(4 * MiB);
  let written = 0;
  try {
    for (let off = 0; off + chunk.length <= bytes; off += chunk.length * divisor) {
      writeSync(fd, chunk, 0, chunk.length, off);
      written += chunk.length;
    }
    execFileSync('truncate', ['-s', String(bytes), file]);
  } finally {
    closeSync(fd);
  }
  return written;
}

export async function run(): Promise<BenchResult[]> {
  if (
    process.getuid?.() !== 0 ||
    !existsSync('/dev/loop-control') ||
    !existsSync('/usr/sbin/mkfs.xfs')
  ) {
    return [
      { name: 'skipped', value: 0, unit: '-', note: 'needs root, loop devices and mkfs.xfs' },
    ];
  }
  const sizes = (process.env.ZC_BENCH_SIZES_GB ?? '1,10,50').split(',').map(Number);
  const divisor = Number(process.env.ZC_BENCH_FILL_DIVISOR ?? '64');
  const base = mkdtempSync(join(tmpdir(), 'zc-bench-clone-'));
  const img = join(base, 'fs.img');
  const mnt = join(base, 'mnt');
  const root = join(mnt, 'root');
  const zynclone = resolve(here, '../src/bin/zynclone.js');
  let device = '';
  let mounted = false;
  let simUp = false;
  const results: BenchResult[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  try {
    const fsBytes = Math.ceil(sizes.reduce((a, b) => a + b, 0) * 1.2 + 4) * GiB;
    execFileSync('truncate', ['-s', String(fsBytes), img]);
    execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', img], { stdio: 'pipe' });
    device = execFileSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).trim();
    mkdirSync(mnt);
    execFileSync('mount', [device, mnt]);
    mounted = true;
    mkdirSync(join(root, 'etc/xen'), { recursive: true });
    await sh(process.execPath, [zynclone, 'sim', 'up', '--no-network', '--root', root]);
    simUp = true;
    const env = simEnv(root);
    const xl = new XlDriver({ env });
    const socket = join(root, 'run/xenstored/socket');
    const xs = await XsClient.connect({ path: socket, transport: 'socket', reconnect: false });
    cleanups.push(() => xs.close());
    // No network in this run: a stand-in acks the lockdown.
    cleanups.push(await ackEveryGeneration(socket));
    const paths = zynclonePaths(root);
    const store = openStateStore({ paths });
    cleanups.push(async () => store.close());
    const lc = new CloneLifecycle({
      paths,
      store,
      xl,
      xs: async () => xs,
      requestedBy: 'system:bench',
    });

    for (const gb of sizes) {
      const vm = validateVmName(`bench${gb}g`);
      const disk = join(root, `${vm}.img`);
      const data = makeDisk(disk, gb * GiB, divisor);
      const cfg = join(root, 'etc/xen', `${vm}.cfg`);
      writeFileSync(
        cfg,
        `name = "${vm}"\ntype = "pv"\nkernel = "/boot/vmlinuz"\nmemory = 16\nvif = [ 'bridge=xenbr0' ]\n` +
          `disk = [ 'format=raw,vdev=xvda,access=rw,target=${disk}' ]\n`,
      );
      await xl.create(cfg);
      const note = `${gb} GB disk, ${(data / MiB).toFixed(0)} MiB of data`;

      const r = await lc.create(vm, { kind: 'online' });
      const snap = r.clone.snapshots[0] as { tookMs: number; backend: string };
      results.push({
        name: `online clone ready, ${gb} GB (${snap.backend})`,
        value: r.totalMs,
        unit: 'ms',
        note,
      });
      results.push({
        name: `original paused, ${gb} GB`,
        value: r.originalPauseMs ?? Number.NaN,
        unit: 'ms',
        note: 'pause window incl. the xl unpause command',
      });
      results.push({
        name: `reflink snapshot in the pause, ${gb} GB`,
        value: snap.tookMs,
        unit: 'ms',
      });
      await lc.remove(vm);

      // The simulator's xl unpause alone: the part of the pause that is process start-up.
      await xl.pause(vm);
      const tu = performance.now();
      await xl.unpause(vm);
      const unpauseMs = performance.now() - tu;
      results.push({
        name: `xl unpause command (simulator), ${gb} GB`,
        value: unpauseMs,
        unit: 'ms',
      });

      // A full copy: what a clone without copy-on-write would pause the original for.
      const plan = await planSnapshot(
        { target: disk, format: 'raw', vdev: 'xvda', kind: 'file' },
        {
          kind: 'offline',
          originalState: 'stopped',
          cloneName: `${vm}-copy`,
          backend: 'copy',
          destDir: paths.resolve('/var/lib/zynclone/volumes'),
        },
      );
      const copy = await execute(plan, { originalState: 'paused' });
      await remove(copy);
      results.push({ name: `full copy, ${gb} GB`, value: copy.tookMs, unit: 'ms', note });
      const inner = r.originalPauseInnerMs ?? Number.NaN;
      results.push({
        name: `pause spent snapshotting, ${gb} GB`,
        value: inner,
        unit: 'ms',
        note: 'between xl pause and xl unpause',
      });
      results.push({
        name: `pause ratio copy / reflink, ${gb} GB`,
        value: copy.tookMs / Math.max(inner, 0.001),
        unit: 'x',
        note: 'full copy time over the reflink pause (xl command start-up excluded)',
      });
      await xl.destroy(vm);
      rmSync(disk, { force: true });
    }

    const memories = (process.env.ZC_BENCH_MEMORY_MIB ?? '128,512').split(',').map(Number);
    for (const mib of memories) {
      const vm = validateVmName(`benchmem${mib}`);
      const disk = join(root, `${vm}.img`);
      makeDisk(disk, 64 * MiB, 1);
      const cfg = join(root, 'etc/xen', `${vm}.cfg`);
      writeFileSync(
        cfg,
        `name = "${vm}"\ntype = "pvh"\nkernel = "/boot/vmlinuz"\nmemory = ${mib}\nvif = [ 'bridge=xenbr0' ]\n` +
          `disk = [ 'format=raw,vdev=xvda,access=rw,target=${disk}' ]\n`,
      );
      await xl.create(cfg);
      const memoryClone = async (live: boolean) => {
        setOverride(vm, 'memory_clone_live', live, paths);
        const r = await lc.create(vm, { kind: 'memory' });
        await lc.remove(vm);
        if ((r.memoryCopy?.method === 'live') !== live) {
          throw new Error(
            `memory clone of ${vm}: expected live=${live}, got ${r.memoryCopy?.fallback}`,
          );
        }
        return r;
      };
      const live = await memoryClone(true);
      const paused = await memoryClone(false);
      const livePause = live.originalPauseMs ?? Number.NaN;
      const savePause = paused.originalPauseMs ?? Number.NaN;
      results.push(
        {
          name: `memory clone, original paused, live pre-copy, ${mib} MiB`,
          value: livePause,
          unit: 'ms',
        },
        {
          name: `memory clone, original paused, xl save -p, ${mib} MiB`,
          value: savePause,
          unit: 'ms',
        },
        {
          name: `memory clone pause ratio save -p / live, ${mib} MiB`,
          value: savePause / Math.max(livePause, 0.001),
          unit: 'x',
          note: "simulator: a 1/32 final round; the real figures are the lane's live-save scenario",
        },
        { name: `memory clone ready, live pre-copy, ${mib} MiB`, value: live.totalMs, unit: 'ms' },
        { name: `memory clone ready, xl save -p, ${mib} MiB`, value: paused.totalMs, unit: 'ms' },
      );
      await xl.destroy(vm);
      rmSync(disk, { force: true });
    }
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    if (simUp)
      await sh(process.execPath, [zynclone, 'sim', 'down', '--root', root]).catch(() => '');
    if (mounted) {
      try {
        execFileSync('umount', [mnt]);
      } catch {
        execFileSync('umount', ['-l', mnt]);
      }
    }
    if (device !== '') execFileSync('losetup', ['-d', device]);
    rmSync(base, { recursive: true, force: true });
  }
  return results;
}
