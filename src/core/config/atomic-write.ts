import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** A temp file beside `file` (same filesystem, so rename is atomic), written and fsynced. */
export interface StagedFile {
  readonly file: string;
  readonly temp: string;
}

export function stageFile(file: string, text: string, mode = 0o644): StagedFile {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true });
  // Unique, not secret ('wx' refuses a name taken anyway): Math.random spares
  // every command that only reads configuration the load of node:crypto.
  const nonce = Math.random().toString(16).slice(2, 10);
  const temp = join(dir, `.${basename(file)}.${process.pid}.${nonce}.tmp`);
  const fd = openSync(temp, 'wx', mode);
  try {
    const buf = Buffer.from(text, 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  return { file, temp };
}

/** Renames the staged file over its target and fsyncs the directory so the rename is durable. */
export function commitStaged(staged: StagedFile): void {
  renameSync(staged.temp, staged.file);
  fsyncDir(dirname(staged.file));
}

export function discardStaged(staged: StagedFile): void {
  rmSync(staged.temp, { force: true });
}

/** Readers see the old content or the new one, never a mix, even across a crash. */
export function writeFileAtomic(file: string, text: string, mode = 0o644): void {
  const staged = stageFile(file, text, mode);
  try {
    commitStaged(staged);
  } catch (err) {
    discardStaged(staged);
    throw err;
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
