import { ZynCloneError } from '../../errors/index.js';

export type UpgradeErrorCode =
  /** Something on the host was written by a newer ZynClone; nothing was changed. */
  | 'UPGRADE_TOO_NEW'
  /** Legacy guest files that cannot be imported as they are; nothing was changed. */
  | 'UPGRADE_LEGACY_INVALID'
  /** A part cannot be read or migrated. */
  | 'UPGRADE_FAILED';

export class UpgradeError extends ZynCloneError<UpgradeErrorCode> {}
