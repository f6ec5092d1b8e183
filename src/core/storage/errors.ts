import { ZynCloneError } from '../../errors/index.js';

export type StorageErrorCode =
  /** The disk spec handed in is malformed (bad vdev, clone name, relative path...). */
  | 'STORAGE_INVALID_DISK'
  /** The original's disk file or volume does not exist or cannot be read. */
  | 'STORAGE_SOURCE_MISSING'
  /** The snapshot's destination already exists; we never overwrite. */
  | 'STORAGE_DEST_EXISTS'
  /** The destination directory cannot be written (read-only, permissions). */
  | 'STORAGE_DEST_UNWRITABLE'
  /** A reflink was asked for where the filesystem cannot share extents. */
  | 'STORAGE_REFLINK_UNSUPPORTED'
  /** A full copy was needed but the original is running and will not be paused for it. */
  | 'STORAGE_COPY_NEEDS_PAUSE'
  /** A qcow2 overlay was asked for while the backing file may still be written. */
  | 'STORAGE_OVERLAY_UNSAFE'
  /** A qcow2 image's backing file is relative and would not resolve from the destination. */
  | 'STORAGE_BACKING_RELATIVE'
  /** An LVM command is missing or failed, or its report could not be parsed. */
  | 'STORAGE_LVM_FAILED'
  /** A needed external tool (qemu-img, lvm) is not installed. */
  | 'STORAGE_TOOL_MISSING'
  /** A qemu-img command failed. */
  | 'STORAGE_QEMU_IMG_FAILED'
  /** No backend can snapshot this disk under these conditions; the message says why. */
  | 'STORAGE_NO_BACKEND'
  /** A snapshot record read back (from the journal) is not a valid record. */
  | 'STORAGE_BAD_RECORD'
  /** Reading or writing a disk failed while snapshotting or removing. */
  | 'STORAGE_IO';

/** Every error the storage layer throws; match on `code`, not on the class or the text. */
export class StorageError extends ZynCloneError<StorageErrorCode> {}

export function errnoOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** Errnos with which the kernel (or libuv) says "this filesystem cannot reflink here". */
export const REFLINK_REFUSALS: ReadonlySet<string> = new Set([
  'ENOTSUP',
  'EOPNOTSUPP',
  'EXDEV',
  'EINVAL',
  'ENOTTY',
  'ENOSYS',
]);
