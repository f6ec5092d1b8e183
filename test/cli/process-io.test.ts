// vmclone's own output: synchronous writes to a descriptor, and what happens
// when the descriptor is non-blocking and full.
import { spawnSync } from 'node:child_process';
import { constants, closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fdOutput } from '../../src/cli/process-io.js';

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** A FIFO opened read-write and non-blocking: writes fail with EAGAIN once its buffer is full. */
function nonBlockingFifo(): number {
  const dir = mkdtempSync(join(tmpdir(), 'zc-io-'));
  const fifo = join(dir, 'out');
  expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
  const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
  cleanup.push(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  return fd;
}

describe('fdOutput', () => {
  it('writes text and bytes to the descriptor, in order', () => {
    const fd = nonBlockingFifo();
    const out = fdOutput(fd);
    out.write('no clones\n');
    out.write(Buffer.from('[]\n'));
    const buf = Buffer.alloc(64);
    expect(buf.subarray(0, readSync(fd, buf)).toString()).toBe('no clones\n[]\n');
  });

  it('hands what does not fit to the stream when the descriptor is full, losing nothing', () => {
    const fd = nonBlockingFifo();
    const later: Buffer[] = [];
    const out = fdOutput(fd, () => ({ write: (chunk) => later.push(Buffer.from(chunk)) }));
    const big = Buffer.alloc(1024 * 1024, 'x');
    out.write(big);
    out.write('after\n');
    // What the descriptor took, then what the stream got, is everything, in order.
    const taken: Buffer[] = [];
    const buf = Buffer.alloc(65536);
    for (;;) {
      try {
        taken.push(Buffer.from(buf.subarray(0, readSync(fd, buf))));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
        throw err;
      }
    }
    expect(Buffer.concat(taken).length).toBeGreaterThan(0);
    expect(later.length).toBe(2);
    expect(Buffer.concat([...taken, ...later]).toString()).toBe(`${big.toString()}after\n`);
  });
});
