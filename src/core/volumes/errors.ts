import { ZynCloneError } from '../../errors/index.js';

/** Errors of shared volumes; every one carries a stable `code` (mapped to exit statuses by the CLI). */
export type VolumeErrorCode =
  /** The device is not one of the VM's shared volumes (config `shared_volumes`). */
  | 'VOLUME_NOT_SHARED'
  /** The switch is not allowed (read-only mode, already there without force, no clone...). */
  | 'VOLUME_REFUSED'
  /** The attach would give the volume a second writer (or a reader next to a writer). */
  | 'VOLUME_TWO_WRITERS'
  /** The holder's guest did not let go of the volume (it is mounted or open inside). */
  | 'VOLUME_GUEST_REFUSED'
  /** A step of the switch failed; it was rolled back. */
  | 'VOLUME_SWITCH_FAILED';

export class VolumeError extends ZynCloneError<VolumeErrorCode> {}
