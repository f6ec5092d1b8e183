import type { CloneKind } from '../config/schema.js';
import type { VmName } from '../paths.js';
import type { Liveness, OperationOwner } from './owner.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export const CLONE_STATES = ['running', 'active', 'inactive'] as const;
export type CloneState = (typeof CLONE_STATES)[number];

export const OPERATION_KINDS = [
  'create',
  'start',
  'stop',
  'activate',
  'deactivate',
  'remove',
  'switch-volume',
] as const;
export type OperationKind = (typeof OPERATION_KINDS)[number];

export const OPERATION_STATUSES = ['running', 'done', 'rolled-back', 'failed'] as const;
export type OperationStatus = (typeof OPERATION_STATUSES)[number];
export type OperationOutcome = Exclude<OperationStatus, 'running'>;

/** journaled: intent recorded, outcome unknown (the action may or may not have happened). */
export const STEP_STATUSES = ['journaled', 'done', 'undone', 'failed'] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];

/**
 * Who asked: `user:<login>`, `guest:<domid>` (a request from the original VM
 * through XenStore) or `system:<component>` (e.g. crash recovery).
 */
export type Requester = string;
export const REQUESTER_PATTERN =
  /^(user:[\x21-\x7e]{1,64}|guest:[0-9]{1,5}|system:[a-z0-9_-]{1,32})$/;

export interface CloneRecord {
  /** A VmName: the store checks every name it writes. */
  readonly vm: VmName;
  readonly cloneName: string;
  readonly cloneUuid: string | null;
  readonly cloneDomid: number | null;
  readonly state: CloneState;
  readonly kind: CloneKind;
  /** Lineage: the UUID of the original VM when the clone was made. */
  readonly sourceUuid: string;
  /** Lineage: the snapshots the clone's volumes come from (storage backend's records). */
  readonly snapshots: Json[];
  readonly requestedBy: Requester;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface NewClone {
  vm: string;
  cloneName: string;
  cloneUuid?: string | null;
  cloneDomid?: number | null;
  state: CloneState;
  kind: CloneKind;
  sourceUuid: string;
  snapshots?: Json[];
  requestedBy: Requester;
}

export interface ClonePatch {
  state?: CloneState;
  cloneDomid?: number | null;
  cloneUuid?: string | null;
  snapshots?: Json[];
}

/** Which side of a VM and its clone holds a shared volume (the only one that may attach it). */
export const VOLUME_SIDES = ['original', 'clone'] as const;
export type VolumeSide = (typeof VOLUME_SIDES)[number];

export interface VolumeHolderRecord {
  readonly vm: VmName;
  readonly vdev: string;
  readonly holder: VolumeSide;
  readonly updatedAt: number;
}

export interface StepRecord {
  readonly opId: number;
  /** 1, 2, ... in journal order. */
  readonly seq: number;
  readonly name: string;
  readonly status: StepStatus;
  /** What the step is about to do, written before it acts. */
  readonly intent: Json;
  /** What undoes it (null: nothing to undo). */
  readonly undo: Json;
  readonly result: Json;
  readonly error: string | null;
  readonly journaledAt: number;
  readonly finishedAt: number | null;
}

export interface OperationRecord {
  readonly id: number;
  readonly vm: VmName;
  readonly kind: OperationKind;
  readonly status: OperationStatus;
  readonly requestedBy: Requester;
  readonly params: Json;
  readonly owner: OperationOwner;
  readonly startedAt: number;
  readonly finishedAt: number | null;
  readonly error: string | null;
  readonly steps: readonly StepRecord[];
}

/** A running operation and whether its owner still runs (crash recovery). */
export interface PendingOperation extends OperationRecord {
  readonly liveness: Liveness;
  readonly livenessReason: string;
}

export interface AuditEntry {
  readonly id: number;
  readonly at: number;
  readonly who: Requester;
  readonly action: string;
  readonly vm: string | null;
  readonly opId: number | null;
  readonly outcome: string;
  readonly detail: Json;
}

export interface NewAuditEntry {
  who: Requester;
  action: string;
  vm?: string | null;
  opId?: number | null;
  outcome: string;
  detail?: Json;
}
