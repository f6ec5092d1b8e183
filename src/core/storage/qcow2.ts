import { isZynCloneError } from '../../errors/index.js';
import { type CommandRunner, firstLines, runCommand } from './command.js';
import { StorageError } from './errors.js';
import type { DiskFormat } from './types.js';

/** The few fields of `qemu-img info --output json` the storage layer reads. */
export interface ImageInfo {
  readonly format: string;
  readonly virtualSize: number;
  readonly backingFilename?: string;
  readonly backingFormat?: string;
}

/** argv to create `overlay` as a qcow2 whose reads fall through to `backing`. */
export function overlayCreateArgv(
  backing: string,
  backingFormat: DiskFormat,
  overlay: string,
): string[] {
  // An absolute -b keeps the overlay valid wherever it is opened from; -F is
  // mandatory in recent qemu-img (format probing of backing files is unsafe).
  return ['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', backingFormat, '-b', backing, overlay];
}

export function imageInfoArgv(path: string): string[] {
  // -U: the original may be open in a running qemu (qdisk backend); do not take its lock.
  return ['qemu-img', 'info', '-U', '--output', 'json', path];
}

export function parseImageInfo(json: string, path: string): ImageInfo {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new StorageError('STORAGE_QEMU_IMG_FAILED', `qemu-img info ${path}: output is not JSON`, {
      cause: err,
    });
  }
  if (typeof raw !== 'object' || raw === null) {
    throw new StorageError('STORAGE_QEMU_IMG_FAILED', `qemu-img info ${path}: not a JSON object`);
  }
  const o = raw as Record<string, unknown>;
  if (typeof o.format !== 'string' || typeof o['virtual-size'] !== 'number') {
    throw new StorageError(
      'STORAGE_QEMU_IMG_FAILED',
      `qemu-img info ${path}: missing "format" or "virtual-size"`,
    );
  }
  const info: {
    format: string;
    virtualSize: number;
    backingFilename?: string;
    backingFormat?: string;
  } = { format: o.format, virtualSize: o['virtual-size'] };
  if (typeof o['backing-filename'] === 'string') info.backingFilename = o['backing-filename'];
  if (typeof o['backing-filename-format'] === 'string') {
    info.backingFormat = o['backing-filename-format'];
  }
  return info;
}

async function qemuImg(argv: readonly string[], run: CommandRunner) {
  try {
    return await run(argv);
  } catch (err) {
    if (isZynCloneError(err, 'RUN_NOT_FOUND')) {
      throw new StorageError(
        'STORAGE_TOOL_MISSING',
        'qemu-img is not installed (Debian package qemu-utils); it is needed for qcow2 overlays',
        { cause: err },
      );
    }
    throw err;
  }
}

export async function imageInfo(path: string, run: CommandRunner = runCommand): Promise<ImageInfo> {
  const res = await qemuImg(imageInfoArgv(path), run);
  if (res.code !== 0) {
    throw new StorageError(
      'STORAGE_QEMU_IMG_FAILED',
      `qemu-img info ${path} failed: ${firstLines(res.stderr)}`,
    );
  }
  return parseImageInfo(res.stdout, path);
}

export async function createOverlay(
  backing: string,
  backingFormat: DiskFormat,
  overlay: string,
  run: CommandRunner = runCommand,
): Promise<void> {
  const res = await qemuImg(overlayCreateArgv(backing, backingFormat, overlay), run);
  if (res.code !== 0) {
    const text = firstLines(res.stderr);
    // qemu-img create truncates an existing file; planning refuses that case, this is the backstop.
    throw new StorageError(
      'STORAGE_QEMU_IMG_FAILED',
      `qemu-img create of overlay ${overlay} on ${backing} failed: ${text}`,
    );
  }
}
