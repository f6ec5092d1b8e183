import { ZynCloneError } from '../../errors/index.js';
import type { OperationRecord } from './types.js';

export type StateErrorCode =
  /** The database cannot be opened or is not ours. */
  | 'STATE_OPEN'
  /** The database was written by a newer ZynClone (its schema version is unknown here). */
  | 'STATE_SCHEMA_TOO_NEW'
  /** Another process held the database lock for longer than busy_timeout. */
  | 'STATE_LOCKED'
  /** A value handed to the store is malformed (bad VM name, bad kind, oversized JSON...). */
  | 'STATE_INVALID'
  | 'OPERATION_NOT_FOUND'
  /** The operation already finished. */
  | 'OPERATION_NOT_RUNNING'
  /** The operation belongs to another process (or was adopted by one). */
  | 'OPERATION_NOT_OWNED'
  /** finishOperation('done') while a journaled step has no recorded outcome. */
  | 'OPERATION_STEPS_OPEN'
  | 'STEP_NOT_FOUND'
  | 'CLONE_NOT_FOUND'
  /** The clone name is already taken by another VM's clone. */
  | 'CLONE_NAME_TAKEN'
  | 'VM_BUSY';

export class StateError extends ZynCloneError<StateErrorCode> {}

/**
 * Another operation on the same VM is running. `stale` means its owner process
 * is gone: the lifecycle must finish or roll it back (adoptOperation) first.
 */
export class BusyError extends StateError {
  declare readonly code: 'VM_BUSY';
  constructor(
    readonly vm: string,
    readonly operation: OperationRecord,
    readonly stale: boolean,
    staleReason?: string,
  ) {
    const o = operation.owner;
    super(
      'VM_BUSY',
      `VM ${vm} is busy: operation ${operation.id} (${operation.kind}) running since ` +
        `${new Date(operation.startedAt).toISOString()}, owned by pid ${o.pid} on ${o.hostname}` +
        (stale
          ? `; that owner is gone (${staleReason ?? 'dead'}), so the operation must be recovered ` +
            '(finished or rolled back) first'
          : ''),
    );
  }
}
