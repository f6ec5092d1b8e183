import { open, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { CommandRunner } from './command.js';
import { StorageError, errnoOf } from './errors.js';
import { type ByteRange, dataRanges } from './extents.js';
import type { ProgressCallback } from './types.js';

/** Bytes read per step; progress is reported once per step. */
const CHUNK = 4 * 1024 * 1024;
/**
 * Granularity of hole detection: an all-zero block of this size is not written,
 * so it stays a hole in the copy. 64 KiB matches qcow2's default cluster size
 * and keeps the per-chunk bookkeeping small.
 */
const BLOCK = 64 * 1024;
const ZERO = Buffer.alloc(BLOCK);

export interface SparseCopyOptions {
  readonly onProgress?: ProgressCallback;
  readonly signal?: AbortSignal;
  /** Runs `filefrag` for the extent map. */
  readonly run?: CommandRunner;
}

export interface SparseCopyResult {
  /** Apparent size of the copy (equal to the source's). */
  readonly bytes: number;
  /** Bytes actually written; the rest are holes. */
  readonly bytesWritten: number;
}

/**
 * Full copy of `source` into a new file `dest` that keeps the source sparse.
 * Node has no lseek(SEEK_DATA/SEEK_HOLE): holes are skipped using the extent
 * map where the filesystem gives one (see dataRanges), and within the data (or
 * the whole file, without a map) all-zero blocks are not written; ftruncate
 * sets the final size. Never
 * overwrites `dest`; on any failure the partial `dest` is removed.
 */
export async function sparseCopy(
  source: string,
  dest: string,
  options: SparseCopyOptions = {},
): Promise<SparseCopyResult> {
  let src: FileHandle;
  try {
    src = await open(source, 'r');
  } catch (err) {
    throw new StorageError('STORAGE_SOURCE_MISSING', `cannot read ${source}: ${String(err)}`, {
      cause: err,
    });
  }
  let dst: FileHandle | undefined;
  let created = false;
  try {
    const st = await src.stat();
    if (!st.isFile()) {
      throw new StorageError('STORAGE_INVALID_DISK', `${source} is not a regular file`);
    }
    try {
      dst = await open(dest, 'wx', st.mode & 0o7777);
      created = true;
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') {
        throw new StorageError(
          'STORAGE_DEST_EXISTS',
          `${dest} already exists; not overwriting it`,
          {
            cause: err,
          },
        );
      }
      throw new StorageError('STORAGE_DEST_UNWRITABLE', `cannot create ${dest}: ${String(err)}`, {
        cause: err,
      });
    }
    const total = st.size;
    const ranges: readonly ByteRange[] = (await dataRanges(source, total, options.run)) ?? [
      [0, total],
    ];
    const buf = Buffer.allocUnsafe(CHUNK);
    let written = 0;
    options.onProgress?.({ bytesDone: 0, bytesTotal: total });
    for (const [start, end] of ranges) {
      for (let pos = start; pos < end; ) {
        if (options.signal?.aborted) {
          throw new StorageError('STORAGE_IO', `copy of ${source} aborted at byte ${pos}`, {
            cause: options.signal.reason,
          });
        }
        const want = Math.min(CHUNK, end - pos);
        let got = 0;
        while (got < want) {
          const { bytesRead } = await src.read(buf, got, want - got, pos + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got === 0) {
          throw new StorageError(
            'STORAGE_IO',
            `${source} shrank while being copied (at byte ${pos})`,
          );
        }
        written += await writeNonZeroRuns(dst, buf, got, pos);
        pos += got;
        options.onProgress?.({ bytesDone: pos, bytesTotal: total });
      }
    }
    if (total > 0 && ranges.at(-1)?.[1] !== total) {
      options.onProgress?.({ bytesDone: total, bytesTotal: total });
    }
    await dst.truncate(total);
    await dst.datasync();
    return { bytes: total, bytesWritten: written };
  } catch (err) {
    await dst?.close().catch(() => {});
    dst = undefined;
    if (created) await unlink(dest).catch(() => {});
    if (err instanceof StorageError) throw err;
    throw new StorageError('STORAGE_IO', `copy of ${source} to ${dest} failed: ${String(err)}`, {
      cause: err,
    });
  } finally {
    await dst?.close();
    await src.close();
  }
}

/** Writes the non-zero blocks of buf[0, len) at file offset `at`, coalesced into runs. */
async function writeNonZeroRuns(
  dst: FileHandle,
  buf: Buffer,
  len: number,
  at: number,
): Promise<number> {
  let written = 0;
  let runStart = -1;
  for (let off = 0; off <= len; off += BLOCK) {
    const n = Math.min(BLOCK, len - off);
    const zero = n <= 0 || buf.subarray(off, off + n).equals(ZERO.subarray(0, n));
    if (!zero && runStart < 0) runStart = off;
    if (zero && runStart >= 0) {
      written += await writeAll(dst, buf, runStart, off - runStart, at + runStart);
      runStart = -1;
    }
  }
  if (runStart >= 0) written += await writeAll(dst, buf, runStart, len - runStart, at + runStart);
  return written;
}

async function writeAll(
  dst: FileHandle,
  buf: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await dst.write(buf, offset + done, length - done, position + done);
    done += bytesWritten;
  }
  return length;
}
