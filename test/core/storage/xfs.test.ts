// Reflink and full-copy backends on real XFS filesystems (loop devices): one
// made with reflink=1, one with reflink=0 standing in for "any other filesystem".
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CopyProgress,
  type DiskSpec,
  StorageError,
  clearReflinkCache,
  execute,
  executeAll,
  parseSnapshotRecord,
  planSnapshot,
  probeReflink,
  remove,
} from '../../../src/core/storage/index.js';
import { skipWithout } from '../../prerequisites.js';
import { type LoopFs, canMountLoop, hasSharedExtents, mountXfs } from './helpers/loop-fs.js';

const MiB = 1024 * 1024;

/** A 64 MiB sparse file with 1 MiB of random data at three places. */
function makeDisk(path: string): void {
  const fd = openSync(path, 'wx');
  try {
    for (const at of [0, 20 * MiB, 63 * MiB]) {
      const data = randomBytes(MiB);
      writeSync(fd, data, 0, data.length, at);
    }
  } finally {
    closeSync(fd);
  }
}

function disk(target: string, vdev = 'xvda'): DiskSpec {
  return { target, format: 'raw', vdev, kind: 'file' };
}

/** A new disk image `file` in `dir` (makeDisk) and its spec. */
function newDisk(dir: string, file: string, vdev = 'xvda'): DiskSpec {
  const target = join(dir, file);
  makeDisk(target);
  return disk(target, vdev);
}

const OFFLINE = { kind: 'offline', originalState: 'stopped' } as const;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(StorageError);
    return (err as StorageError).code;
  }
  throw new Error('expected a StorageError, got success');
}

describe.skipIf(skipWithout(canMountLoop, 'root, /dev/loop-control and mkfs.xfs'))(
  'storage on XFS loop filesystems',
  () => {
    let cow: LoopFs | undefined;
    let plain: LoopFs | undefined;

    beforeAll(() => {
      clearReflinkCache();
      cow = mountXfs({ reflink: true });
      plain = mountXfs({ reflink: false });
    });
    afterAll(() => {
      clearReflinkCache();
      cow?.cleanup();
      plain?.cleanup();
    });

    it('probes reflink support per filesystem and leaves no probe files behind', async () => {
      expect((await probeReflink(cow!.dir)).supported).toBe(true);
      const p = await probeReflink(plain!.dir);
      expect(p.supported).toBe(false);
      expect(p.errno).toBeTypeOf('string');
      expect(execFileSync('ls', ['-A', cow!.dir], { encoding: 'utf8' })).toBe('');
      expect(execFileSync('ls', ['-A', plain!.dir], { encoding: 'utf8' })).toBe('');
    });

    it('online disk-only clone on reflink XFS: shared extents, same content, isolated writes', async () => {
      const d = newDisk(cow!.dir, 'web.img');
      const src = d.target;
      const plan = await planSnapshot(d, {
        kind: 'online-disk',
        originalState: 'running',
        cloneName: 'web-clone',
      });
      expect(plan.backend).toBe('reflink');
      expect(plan.dest).toBe(join(cow!.dir, 'web-clone.xvda.img'));

      const record = await execute(plan, { originalState: 'paused' });
      const original = readFileSync(src);
      expect(readFileSync(record.dest).equals(original)).toBe(true);
      expect(hasSharedExtents(record.dest)).toBe(true);
      expect(hasSharedExtents(src)).toBe(true);

      const fd = openSync(record.dest, 'r+');
      writeSync(fd, Buffer.alloc(MiB, 0xab), 0, MiB, 0);
      closeSync(fd);
      expect(readFileSync(src).equals(original)).toBe(true);
      expect(
        readFileSync(record.dest)
          .subarray(0, MiB)
          .every((b) => b === 0xab),
      ).toBe(true);

      expect(await remove(record)).toBe(true);
      expect(existsSync(record.dest)).toBe(false);
      expect(await remove(record)).toBe(false);
      expect(readFileSync(src).equals(original)).toBe(true);
    });

    it('a snapshot record round-trips through JSON and still removes the snapshot', async () => {
      const d = newDisk(cow!.dir, 'db.img', 'xvdb');
      const src = d.target;
      const plan = await planSnapshot(d, { ...OFFLINE, cloneName: 'db-c1' });
      const record = await execute(plan);
      const back = parseSnapshotRecord(JSON.parse(JSON.stringify(record)));
      expect(back).toEqual(record);
      expect(await remove(back)).toBe(true);
      expect(existsSync(record.dest)).toBe(false);
      expect(existsSync(src)).toBe(true);
    });

    it('without reflink, an offline clone gets a sparse full copy with monotonic progress', async () => {
      const d = newDisk(plain!.dir, 'app.img');
      const src = d.target;
      const plan = await planSnapshot(d, { ...OFFLINE, cloneName: 'app-c' });
      expect(plan.backend).toBe('copy');
      expect(plan.reason).toMatch(/reflink/);
      const seen: CopyProgress[] = [];
      const record = await execute(plan, {
        originalState: 'stopped',
        onProgress: (p) => seen.push(p),
      });
      const total = statSync(src).size;
      expect(seen.length).toBeGreaterThan(2);
      for (let i = 1; i < seen.length; i++) {
        expect(seen[i]!.bytesDone).toBeGreaterThanOrEqual(seen[i - 1]!.bytesDone);
      }
      expect(seen.at(-1)).toEqual({ bytesDone: total, bytesTotal: total, vdev: 'xvda' });
      expect(readFileSync(record.dest).equals(readFileSync(src))).toBe(true);
      // 3 MiB of data in a 64 MiB file: the copy must stay about as sparse as the source.
      expect(statSync(record.dest).blocks * 512).toBeLessThan(8 * MiB);
      expect(hasSharedExtents(record.dest)).toBe(false);
      expect(await remove(record)).toBe(true);
    });

    it('refuses a full copy for an online disk-only clone, naming why', async () => {
      const d = newDisk(plain!.dir, 'live.img');
      const opts = { kind: 'online-disk', originalState: 'running', cloneName: 'live-c' } as const;
      await expect(planSnapshot(d, opts)).rejects.toMatchObject({
        code: 'STORAGE_COPY_NEEDS_PAUSE',
        message: expect.stringMatching(/does not support reflink.*online disk-only/),
      });
      expect(await codeOf(planSnapshot(d, { ...opts, backend: 'reflink' }))).toBe(
        'STORAGE_REFLINK_UNSUPPORTED',
      );
    });

    it('online with memory may copy, but only while the original is paused', async () => {
      const d = newDisk(plain!.dir, 'mem.img');
      const src = d.target;
      const plan = await planSnapshot(d, {
        kind: 'online-memory',
        originalState: 'running',
        cloneName: 'mem-c',
      });
      expect(plan.backend).toBe('copy');
      expect(await codeOf(execute(plan, { originalState: 'running' }))).toBe(
        'STORAGE_COPY_NEEDS_PAUSE',
      );
      expect(await codeOf(execute(plan))).toBe('STORAGE_COPY_NEEDS_PAUSE');
      expect(existsSync(plan.dest)).toBe(false);
      const record = await execute(plan, { originalState: 'paused' });
      expect(readFileSync(record.dest).equals(readFileSync(src))).toBe(true);
      await remove(record);
    });

    it('reflink is refused across filesystems', async () => {
      const d = newDisk(cow!.dir, 'cross.img');
      const err = await planSnapshot(d, {
        ...OFFLINE,
        cloneName: 'x',
        backend: 'reflink',
        destDir: plain!.dir,
      }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'STORAGE_REFLINK_UNSUPPORTED' });
      expect((err as Error).message).toMatch(/another filesystem/);
    });

    it('never overwrites an existing destination', async () => {
      const d = newDisk(cow!.dir, 'keep.img');
      const opts = { ...OFFLINE, cloneName: 'keep-c' };
      const plan = await planSnapshot(d, opts);
      writeFileSync(plan.dest, 'precious');
      expect(await codeOf(planSnapshot(d, opts))).toBe('STORAGE_DEST_EXISTS');
      expect(await codeOf(execute(plan))).toBe('STORAGE_DEST_EXISTS');
      expect(readFileSync(plan.dest, 'utf8')).toBe('precious');
    });

    it('executeAll is all or nothing', async () => {
      const opts = { ...OFFLINE, cloneName: 'multi' };
      const plans = [
        await planSnapshot(newDisk(cow!.dir, 'multi-a.img', 'xvda'), opts),
        await planSnapshot(newDisk(cow!.dir, 'multi-b.img', 'xvdb'), opts),
      ];
      writeFileSync(plans[1]!.dest, 'in the way');
      expect(await codeOf(executeAll(plans))).toBe('STORAGE_DEST_EXISTS');
      expect(existsSync(plans[0]!.dest)).toBe(false);
      expect(readFileSync(plans[1]!.dest, 'utf8')).toBe('in the way');
    });
  },
);
