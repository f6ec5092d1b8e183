/**
 * Guest disks on real Xen: a raw file handed to blkback (through the block
 * hotplug script's loop device), and a copy-on-write snapshot of a disk used
 * as another guest's disk. The snapshot backend is an LVM thin snapshot when
 * dom0 can load dm-thin-pool, else a reflink copy on XFS.
 */
import { randomBytes } from 'node:crypto';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type RunOptions,
  assertTrue,
  destroyQuietly,
  run,
  waitConsole,
  writeGuestConfig,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario, ScenarioContext } from '../runner/types.js';
import { makeThinPool } from '../runner/zynclone-tools.js';

const SECTOR = 512;

function markerBlock(text: string): Buffer {
  const b = Buffer.alloc(SECTOR);
  b.write(`${text}\n`, 'utf8');
  return b;
}

async function writeMarker(path: string, text: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(markerBlock(text), 0, SECTOR, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function readMarker(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(SECTOR);
    await fh.read(b, 0, SECTOR, 0);
    return b.toString('utf8').split('\n')[0] ?? '';
  } finally {
    await fh.close();
  }
}

/** Boots a guest with `target` as xvda and checks it reads `marker` from it. */
async function guestReads(
  ctx: ScenarioContext,
  name: string,
  target: string,
  marker: string,
): Promise<void> {
  const log = ctx.log;
  const cfg = await writeGuestConfig(ctx.workDir, {
    name,
    disks: [`format=raw, vdev=xvda, access=rw, target=${target}`],
  });
  try {
    await xl(['create', cfg], { timeoutMs: 90_000, log });
    const blocks = await xl(['block-list', name], { timeoutMs: 30_000 });
    log(blocks.stdout.trim().replace(/\n/g, ' | '));
    const m = await waitConsole(name, /ZC-GUEST-DISK xvda marker=(\S*)/, {
      timeoutMs: 120_000,
      signal: ctx.signal,
    });
    assertTrue(
      m[1] === marker,
      'LANE_DISK_MARKER',
      `${name} read '${m[1]}' from /dev/xvda, expected '${marker}'`,
    );
    log(`${name} read ${m[1]} from /dev/xvda`);
  } finally {
    await destroyQuietly(name, log);
  }
}

interface Snapshot {
  backend: string;
  origin: string;
  snapshot: string;
  cleanup(): Promise<void>;
}

async function lvmThinSnapshot(ctx: ScenarioContext, before: string): Promise<Snapshot> {
  const o: RunOptions = { log: ctx.log, timeoutMs: 90_000 };
  const pool = await makeThinPool(ctx.workDir, 'zclane', ctx.log);
  try {
    const origin = await pool.thinLv('origin', '64M');
    await writeMarker(origin, before);
    await run('lvm', ['lvcreate', '-y', '-s', '-n', 'snap', `${pool.vg}/origin`], o);
    // Thin snapshots are created with activation skip set.
    await run('lvm', ['lvchange', '-ay', '-K', `${pool.vg}/snap`], o);
    const lvs = await run(
      'lvm',
      ['lvs', '--noheadings', '-o', 'lv_name,origin,pool_lv,data_percent', pool.vg],
      o,
    );
    ctx.log(lvs.stdout.trim().replace(/\n\s*/g, ' | '));
    return {
      backend: 'lvm-thin',
      origin,
      snapshot: `/dev/mapper/${pool.vg}-snap`,
      cleanup: () => pool.cleanup(),
    };
  } catch (e) {
    await pool.cleanup();
    throw e;
  }
}

async function xfsReflinkSnapshot(ctx: ScenarioContext, before: string): Promise<Snapshot> {
  const o: RunOptions = { log: ctx.log, timeoutMs: 90_000 };
  await run('modprobe', ['xfs'], o);
  const fsImage = join(ctx.workDir, 'xfs.img');
  const mnt = join(ctx.workDir, 'xfs');
  await run('truncate', ['-s', '320M', fsImage], o);
  await run('mkfs.xfs', ['-q', '-m', 'reflink=1', fsImage], o);
  await run('mkdir', ['-p', mnt], o);
  await run('mount', ['-o', 'loop', fsImage, mnt], o);
  const cleanup = async (): Promise<void> => {
    await run('umount', [mnt], { ...o, allowFail: true });
  };
  try {
    const origin = join(mnt, 'origin.img');
    await run('truncate', ['-s', '64M', origin], o);
    await writeMarker(origin, before);
    const snapshot = join(mnt, 'snap.img');
    await run('cp', ['--reflink=always', origin, snapshot], o);
    return { backend: 'xfs-reflink', origin, snapshot, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

const scenario: Scenario = {
  name: 'disk-snapshot',
  title: 'file disk through blkback; copy-on-write snapshot as a guest disk',
  timeoutMs: 240_000,
  async run(ctx) {
    const tag = randomBytes(4).toString('hex');

    // 1. A plain file as the guest's disk.
    const img = join(ctx.workDir, 'disk.img');
    await writeFile(img, Buffer.alloc(16 * 1048576));
    const fileMarker = `ZCDISK:file-${tag}`;
    await writeMarker(img, fileMarker);
    await guestReads(ctx, 'zc-disk1', img, fileMarker);
    const loops = await run('losetup', ['-a'], { allowFail: true });
    assertTrue(
      !loops.stdout.includes(img),
      'LANE_LOOP_LEFT',
      `the block script left a loop device on ${img}: ${loops.stdout.trim()}`,
    );

    // 2. A copy-on-write snapshot: the origin changes after the snapshot,
    //    the guest on the snapshot still sees the content from before.
    const before = `ZCDISK:before-${tag}`;
    const after = `ZCDISK:after-${tag}`;
    let snap: Snapshot;
    try {
      snap = await lvmThinSnapshot(ctx, before);
    } catch (e) {
      ctx.log(`LVM thin snapshot unavailable (${(e as Error).message}); trying XFS reflink`);
      ctx.note('lvm_error', (e as Error).message.slice(0, 80));
      snap = await xfsReflinkSnapshot(ctx, before);
    }
    ctx.note('snapshot', snap.backend);
    try {
      await writeMarker(snap.origin, after);
      assertTrue(
        (await readMarker(snap.origin)) === after,
        'LANE_ORIGIN_WRITE',
        'the origin does not show the write made after the snapshot',
      );
      const seen = await readMarker(snap.snapshot);
      assertTrue(
        seen === before,
        'LANE_SNAPSHOT_NOT_COW',
        `the snapshot shows '${seen}', expected the pre-snapshot '${before}'`,
      );
      await guestReads(ctx, 'zc-disk2', snap.snapshot, before);
    } finally {
      await snap.cleanup();
    }
  },
};

export default scenario;
