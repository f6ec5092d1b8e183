import { type CommandRunner, runCommand } from './command.js';

/** A half-open byte range [start, end) of a file. */
export type ByteRange = readonly [start: number, end: number];

/**
 * The byte ranges of `path` that hold data, from the filesystem's extent map
 * (FIEMAP, through e2fsprogs' `filefrag -v -s`, which also flushes delayed
 * allocations first). Node has no lseek(SEEK_DATA), and reading gigabytes of
 * holes only to find them zero costs seconds per 10 GB. Unwritten
 * (preallocated) extents read as zeros and are left out.
 *
 * Returns undefined whenever the map is not available or not understood
 * (no filefrag, no FIEMAP on this filesystem, unexpected output): the caller
 * must then read the whole file. Never returns a partial map.
 */
export async function dataRanges(
  path: string,
  size: number,
  run: CommandRunner = runCommand,
): Promise<ByteRange[] | undefined> {
  let res: Awaited<ReturnType<CommandRunner>>;
  try {
    res = await run(['filefrag', '-v', '-s', path]);
  } catch {
    return undefined;
  }
  if (res.code !== 0) return undefined;
  return parseFilefrag(res.stdout, size);
}

export function parseFilefrag(text: string, size: number): ByteRange[] | undefined {
  const lines = text.split('\n');
  const header = lines.findIndex((l) => /^\s*ext:\s+logical_offset:/.test(l));
  const sizeLine = lines.find((l) => l.startsWith('File size of '));
  if (header < 0 || sizeLine === undefined) return undefined;
  const m = /is (\d+) \((\d+) blocks? of (\d+) bytes\)\s*$/.exec(sizeLine);
  if (m === null || Number(m[1]) !== size) return undefined;
  const blockSize = Number(m[3]);
  if (!(blockSize > 0)) return undefined;
  if (!lines.some((l) => / \d+ extents? found\s*$/.test(l))) return undefined;

  const ranges: Array<[number, number]> = [];
  for (const line of lines.slice(header + 1)) {
    if (/ extents? found\s*$/.test(line) || line.trim() === '') continue;
    const e = /^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+\S+\.\.\s*\S+:\s+\d+:\s*(?:\d+:)?\s*(.*)$/.exec(
      line,
    );
    if (e === null) return undefined;
    const flags = e[3]!.split(',').map((f) => f.trim());
    if (flags.includes('unwritten')) continue;
    const start = Number(e[1]) * blockSize;
    const end = Math.min(size, (Number(e[2]) + 1) * blockSize);
    if (!(end > start)) continue;
    const last = ranges.at(-1);
    if (last !== undefined && start < last[0]) return undefined;
    if (last !== undefined && start <= last[1]) last[1] = Math.max(last[1], end);
    else ranges.push([start, end]);
  }
  return ranges;
}
