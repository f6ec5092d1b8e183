// qcow2 overlays with the real qemu-img, in a temp dir on any filesystem.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DiskSpec,
  execute,
  imageInfo,
  overlayCreateArgv,
  planSnapshot,
  remove,
} from '../../../src/core/storage/index.js';
import { skipWithout } from '../../prerequisites.js';
import { hasQemuImg } from './helpers/loop-fs.js';

function qemuImg(args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: 'pipe' });
}

function compareExit(a: string, b: string): number {
  try {
    qemuImg(['compare', '-q', a, b]);
    return 0;
  } catch (err) {
    return (err as { status: number }).status;
  }
}

describe.skipIf(skipWithout(hasQemuImg, 'qemu-img (qemu-utils)'))('qcow2 overlay backend', () => {
  let dir = '';
  let image = '';
  const disk = (): DiskSpec => ({ target: image, format: 'qcow2', vdev: 'xvda', kind: 'file' });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'zc-storage-qcow2-'));
    const raw = join(dir, 'seed.raw');
    const data = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 4096) data.write(`block ${i / 4096}\n`, i);
    writeFileSync(raw, data);
    image = join(dir, 'vm.qcow2');
    qemuImg(['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image]);
  });
  afterAll(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('builds the qemu-img command line with explicit formats and an absolute backing path', () => {
    expect(overlayCreateArgv('/images/vm.qcow2', 'qcow2', '/images/c.xvda.qcow2')).toEqual([
      'qemu-img',
      'create',
      '-q',
      '-f',
      'qcow2',
      '-F',
      'qcow2',
      '-b',
      '/images/vm.qcow2',
      '/images/c.xvda.qcow2',
    ]);
  });

  it('offline clone: overlay backed by the original, same content, removable twice', async () => {
    const plan = await planSnapshot(disk(), {
      kind: 'offline',
      originalState: 'stopped',
      cloneName: 'vm-c',
      backend: 'qcow2-overlay',
    });
    expect(plan.backend).toBe('qcow2-overlay');
    const record = await execute(plan, { originalState: 'stopped' });
    const info = JSON.parse(qemuImg(['info', '--output', 'json', record.dest])) as Record<
      string,
      unknown
    >;
    expect(info.format).toBe('qcow2');
    expect(info['backing-filename']).toBe(image);
    expect(info['backing-filename-format']).toBe('qcow2');
    expect((await imageInfo(record.dest)).backingFilename).toBe(image);
    expect(compareExit(record.dest, image)).toBe(0);

    // Writes through the overlay must not reach the original.
    qemuImg(['convert', '-q', '-O', 'raw', image, join(dir, 'before.raw')]);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 64k', record.dest], {
      stdio: 'pipe',
    });
    expect(compareExit(record.dest, image)).toBe(1);
    expect(compareExit(join(dir, 'before.raw'), image)).toBe(0);

    expect(await remove(record)).toBe(true);
    expect(await remove(record)).toBe(false);
    expect(existsSync(image)).toBe(true);
  });

  it('refuses an overlay while the original runs', async () => {
    for (const [kind, originalState] of [
      ['online-disk', 'running'],
      ['online-memory', 'running'],
    ] as const) {
      await expect(
        planSnapshot(disk(), { kind, originalState, cloneName: 'c', backend: 'qcow2-overlay' }),
      ).rejects.toMatchObject({
        code: 'STORAGE_OVERLAY_UNSAFE',
        message: expect.stringMatching(/backing file/),
      });
    }
    const plan = await planSnapshot(disk(), {
      kind: 'offline',
      originalState: 'stopped',
      cloneName: 'late',
      backend: 'qcow2-overlay',
    });
    await expect(execute(plan, { originalState: 'running' })).rejects.toMatchObject({
      code: 'STORAGE_OVERLAY_UNSAFE',
    });
    expect(existsSync(plan.dest)).toBe(false);
  });

  it('refuses to copy a qcow2 with a relative backing file into another directory', async () => {
    const sub = join(dir, 'chain');
    mkdirSync(sub);
    qemuImg([
      'create',
      '-q',
      '-f',
      'qcow2',
      '-F',
      'qcow2',
      '-b',
      '../vm.qcow2',
      join(sub, 'top.qcow2'),
    ]);
    const top: DiskSpec = {
      target: join(sub, 'top.qcow2'),
      format: 'qcow2',
      vdev: 'xvda',
      kind: 'file',
    };
    await expect(
      planSnapshot(top, {
        kind: 'offline',
        originalState: 'stopped',
        cloneName: 'c2',
        destDir: dir,
      }),
    ).rejects.toMatchObject({ code: 'STORAGE_BACKING_RELATIVE' });
    // Beside the original the relative name still resolves, so that is fine.
    const plan = await planSnapshot(top, {
      kind: 'offline',
      originalState: 'stopped',
      cloneName: 'c2',
    });
    expect(plan.dest).toBe(join(sub, 'c2.xvda.qcow2'));
  });
});
