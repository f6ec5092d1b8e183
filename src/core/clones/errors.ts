/**
 * Errors of the clone lifecycle. Every one carries a stable `code`; the CLI
 * maps codes to exit statuses through the one table in src/errors/codes.ts.
 */
import { ZynCloneError } from '../../errors/index.js';

export type CloneErrorCode =
  /** The VM has no clone (for start, stop, ..., status). */
  | 'CLONE_NOT_FOUND'
  /** The VM already has a clone, or a domain with the clone's name exists. */
  | 'CLONE_EXISTS'
  /** No domain or config file for the VM. */
  | 'VM_NOT_FOUND'
  /** The transition is not allowed from the clone's current state. */
  | 'CLONE_STATE'
  /** ZynClone refuses this clone (continuous replication, wrong original state, ...). */
  | 'CLONE_REFUSED'
  /** The original's xl config cannot be used to build a clone. */
  | 'CLONE_CONFIG'
  /** The net monitor did not acknowledge the lockdown in time; the clone stays paused. */
  | 'LOCKDOWN_TIMEOUT'
  /** The isolation bridge cannot be made or is not isolated. */
  | 'ISOLATION_BRIDGE'
  /** A step failed; the operation was rolled back. */
  | 'CLONE_FAILED';

export class CloneError extends ZynCloneError<CloneErrorCode> {}
