import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type SnapshotRecord,
  parseSnapshotPlan,
  parseSnapshotRecord,
  planSnapshot,
  remove,
} from '../../../src/core/storage/index.js';

const records: SnapshotRecord[] = [
  {
    backend: 'reflink',
    vdev: 'xvda',
    source: '/srv/img/web.img',
    dest: '/srv/img/web-c.xvda.img',
    format: 'raw',
    reason: 'filesystem of /srv/img supports reflink',
    createdAt: '2025-01-02T03:04:05.678Z',
    tookMs: 0.42,
  },
  {
    backend: 'copy',
    vdev: 'hda',
    source: '/srv/img/w.vhd',
    dest: '/srv/img/w-c.hda.vhd',
    format: 'vhd',
    bytes: 10737418240,
    reason: 'full copy requested',
    createdAt: '2025-01-02T03:04:05.678Z',
    tookMs: 5012,
  },
  {
    backend: 'qcow2-overlay',
    vdev: 'xvdb',
    source: '/srv/img/d.raw',
    dest: '/srv/img/d-c.xvdb.qcow2',
    format: 'qcow2',
    backingFormat: 'raw',
    reason: '',
    createdAt: '2025-01-02T03:04:05.678Z',
    tookMs: 30,
  },
  {
    backend: 'lvm-classic',
    vdev: 'xvda',
    vg: 'vg0',
    lv: 'db',
    source: '/dev/vg0/db',
    name: 'db-c.xvda',
    dest: '/dev/vg0/db-c.xvda',
    format: 'raw',
    size: '20%ORIGIN',
    reason: '',
    createdAt: '2025-01-02T03:04:05.678Z',
    tookMs: 180,
  },
];

describe('snapshot records', () => {
  it('round-trip through JSON for every backend', () => {
    for (const r of records) {
      expect(parseSnapshotRecord(JSON.parse(JSON.stringify(r)))).toEqual(r);
    }
  });

  it('reject damaged records that could point remove() at the wrong thing', () => {
    const r = records[0]!;
    const bad: unknown[] = [
      null,
      [],
      'x',
      { ...r, backend: 'zfs' },
      { ...r, dest: 'relative.img' },
      { ...r, dest: r.source },
      { ...r, createdAt: 'yesterday' },
      { ...r, tookMs: -1 },
      { ...records[1]!, bytes: '10' },
      { ...records[3]!, name: 'db' },
      { ...records[2]!, backingFormat: 'vmdk' },
    ];
    for (const b of bad) {
      expect(() => parseSnapshotRecord(b), JSON.stringify(b)).toThrow(
        expect.objectContaining({ code: 'STORAGE_BAD_RECORD' }),
      );
    }
    const { createdAt: _c, tookMs: _t, ...plan } = r;
    expect(parseSnapshotPlan(plan)).toEqual(plan);
    expect(() => parseSnapshotRecord(plan)).toThrow(/createdAt/);
  });
});

describe('planning input checks', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zc-storage-plan-'));
  const img = join(dir, 'a.img');
  writeFileSync(img, 'data');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const opts = { kind: 'offline', originalState: 'stopped', cloneName: 'c1' } as const;
  const file = { target: img, format: 'raw', vdev: 'xvda', kind: 'file' } as const;

  it('rejects bad vdevs, clone names and relative targets', async () => {
    for (const [disk, o] of [
      [{ ...file, vdev: '../x' }, opts],
      [{ ...file, target: 'a.img' }, opts],
      [file, { ...opts, cloneName: 'a/b' }],
      [file, { ...opts, cloneName: '' }],
    ] as const) {
      await expect(planSnapshot(disk, o)).rejects.toMatchObject({ code: 'STORAGE_INVALID_DISK' });
    }
  });

  it('names a missing source, and an offline clone of a running original', async () => {
    await expect(
      planSnapshot({ ...file, target: join(dir, 'nope.img') }, opts),
    ).rejects.toMatchObject({
      code: 'STORAGE_SOURCE_MISSING',
      message: expect.stringContaining('nope.img'),
    });
    await expect(planSnapshot(file, { ...opts, originalState: 'running' })).rejects.toMatchObject({
      code: 'STORAGE_NO_BACKEND',
      message: expect.stringMatching(/shut down/),
    });
  });

  it('refuses to treat the original as a snapshot to remove', async () => {
    await expect(remove({ ...records[0]!, dest: img, source: img })).rejects.toMatchObject({
      code: 'STORAGE_BAD_RECORD',
    });
  });
});
