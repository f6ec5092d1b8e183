import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseFilefrag } from '../../../src/core/storage/extents.js';
import { type CommandRunner, runCommand, sparseCopy } from '../../../src/core/storage/index.js';

const MiB = 1024 * 1024;

describe('sparseCopy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zc-storage-copy-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('copies odd sizes exactly, writing only non-zero blocks', async () => {
    const src = join(dir, 'odd.img');
    const fd = openSync(src, 'w');
    // Data straddling a chunk edge, a lone byte deep in a hole, and a tail that is not block-aligned.
    writeSync(fd, Buffer.alloc(100_000, 7), 0, 100_000, 4 * MiB - 50_000);
    writeSync(fd, Buffer.from([1]), 0, 1, 9 * MiB + 12345);
    writeSync(fd, Buffer.alloc(3, 9), 0, 3, 11 * MiB + 17);
    closeSync(fd);
    const res = await sparseCopy(src, join(dir, 'odd.copy'));
    expect(res.bytes).toBe(statSync(src).size);
    expect(readFileSync(join(dir, 'odd.copy')).equals(readFileSync(src))).toBe(true);
    expect(res.bytesWritten).toBeLessThan(512 * 1024);
  });

  it('without an extent map, finds holes by content and still copies exactly', async () => {
    const src = join(dir, 'nomap.img');
    const fd = openSync(src, 'w');
    writeSync(fd, Buffer.alloc(70_000, 3), 0, 70_000, 6 * MiB + 5);
    writeSync(fd, Buffer.alloc(1, 1), 0, 1, 20 * MiB);
    closeSync(fd);
    const noFilefrag: CommandRunner = (argv) =>
      // The real runner, asked for a program that is not installed.
      runCommand([`/nonexistent/${argv[0]}`, ...argv.slice(1)]);
    const seen: number[] = [];
    const res = await sparseCopy(src, join(dir, 'nomap.copy'), {
      run: noFilefrag,
      onProgress: (p) => seen.push(p.bytesDone),
    });
    expect(readFileSync(join(dir, 'nomap.copy')).equals(readFileSync(src))).toBe(true);
    expect(res.bytesWritten).toBeLessThan(512 * 1024);
    expect(statSync(join(dir, 'nomap.copy')).blocks * 512).toBeLessThan(MiB);
    expect(seen.length).toBeGreaterThan(5);
    expect(seen.at(-1)).toBe(res.bytes);
  });

  it('copies an empty file', async () => {
    const src = join(dir, 'empty.img');
    closeSync(openSync(src, 'w'));
    const seen: number[] = [];
    await sparseCopy(src, join(dir, 'empty.copy'), { onProgress: (p) => seen.push(p.bytesDone) });
    expect(statSync(join(dir, 'empty.copy')).size).toBe(0);
    expect(seen).toEqual([0]);
  });

  it('stops when aborted and leaves no partial copy', async () => {
    const src = join(dir, 'big.img');
    const fd = openSync(src, 'w');
    writeSync(fd, Buffer.alloc(16 * MiB, 1), 0, 16 * MiB, 0);
    closeSync(fd);
    const ac = new AbortController();
    const dest = join(dir, 'big.copy');
    await expect(
      sparseCopy(src, dest, {
        signal: ac.signal,
        onProgress: (p) => {
          if (p.bytesDone >= 4 * MiB) ac.abort();
        },
      }),
    ).rejects.toMatchObject({ code: 'STORAGE_IO', message: expect.stringMatching(/aborted/) });
    expect(existsSync(dest)).toBe(false);
  });
});

describe('parseFilefrag', () => {
  const head = (size: number, blocks: number) =>
    `Filesystem type is: 58465342\nFile size of f is ${size} (${blocks} blocks of 4096 bytes)\n ext:     logical_offset:        physical_offset: length:   expected: flags:\n`;

  it('turns extents into merged byte ranges, skipping unwritten ones', () => {
    const text =
      head(1073741824, 262144) +
      '   0:        1..       1:    6326273..   6326273:      1:          1:\n' +
      '   1:        2..       3:    6326280..   6326281:      2:    6326274:\n' +
      '   2:    25600..   26111:    6329344..   6329855:    512:    6351872:\n' +
      '   3:   128000..  128255:    6324992..   6325247:    256:    6431744: last,unwritten\n' +
      'f: 3 extents found\n';
    expect(parseFilefrag(text, 1073741824)).toEqual([
      [4096, 16384],
      [25600 * 4096, 26112 * 4096],
    ]);
  });

  it('clamps the last block to the file size and accepts a file with no extents', () => {
    const text = `${head(5000, 2)}   0:        0..       1:      100..     101:      2:             last,eof\nf: 1 extent found\n`;
    expect(parseFilefrag(text, 5000)).toEqual([[0, 5000]]);
    expect(parseFilefrag(`${head(8192, 2)}f: 0 extents found\n`, 8192)).toEqual([]);
  });

  it('gives up (full read) on anything it does not understand', () => {
    expect(parseFilefrag('f: FIBMAP/FIEMAP unsupported\n', 10)).toBeUndefined();
    expect(parseFilefrag(`${head(8192, 2)}f: 0 extents found\n`, 4096)).toBeUndefined();
    expect(
      parseFilefrag(`${head(8192, 2)}   0: garbage\nf: 1 extent found\n`, 8192),
    ).toBeUndefined();
    expect(parseFilefrag(head(8192, 2), 8192)).toBeUndefined();
  });
});
