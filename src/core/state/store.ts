/**
 * The state store: clones, the operation journal and the audit log, in one
 * SQLite file shared by every ZynClone process of the control domain.
 *
 * Exclusion between processes comes from SQLite itself: every write that
 * checks-then-acts runs in a BEGIN IMMEDIATE transaction (one writer at a
 * time; others wait up to busy_timeout), and a partial unique index refuses a
 * second running operation per VM even if that discipline were broken.
 *
 * SQLite is Node's own (node:sqlite, stable without warnings on Node 24): no
 * native addon to build, so nothing to break on a fresh machine or to ship
 * per Node ABI into dom0 (see docs/configuration.md, State store).
 */
import { mkdirSync } from 'node:fs';
import type { DatabaseSync } from 'node:sqlite';
import { CLONE_KINDS } from '../config/clone-kinds.js';
import { type VmName, type ZynclonePaths, vmNameProblem, zynclonePaths } from '../paths.js';
import { BusyError, StateError } from './errors.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';
import { type OperationOwner, currentOwner, ownerLiveness, sameOwner } from './owner.js';
import {
  type AuditEntry,
  CLONE_STATES,
  type ClonePatch,
  type CloneRecord,
  type Json,
  type NewAuditEntry,
  type NewClone,
  OPERATION_KINDS,
  type OperationKind,
  type OperationOutcome,
  type OperationRecord,
  type PendingOperation,
  REQUESTER_PATTERN,
  type Requester,
  type StepRecord,
  VOLUME_SIDES,
  type VolumeHolderRecord,
  type VolumeSide,
} from './types.js';

export const DEFAULT_BUSY_TIMEOUT_MS = 5000;
/** Largest JSON document (intent, undo, result, params, detail) we store. */
export const MAX_JSON_BYTES = 64 * 1024;

export interface StateStoreOptions {
  /** Database file; default <root>/var/lib/zynclone/state.db from `paths`. */
  file?: string;
  paths?: ZynclonePaths;
  /** How long a writer waits for another process's transaction. */
  busyTimeoutMs?: number;
  /** The identity operations begun through this store are owned by; default this process. */
  owner?: OperationOwner;
  /** Clock, in ms since the epoch. */
  now?: () => number;
}

export interface BeginOptions {
  requestedBy?: Requester;
  params?: Json;
}

type Row = Record<string, unknown>;

function invalid(message: string): StateError {
  return new StateError('STATE_INVALID', message);
}

function checkVm(vm: string): void {
  const problem = vmNameProblem(vm);
  if (problem !== undefined) throw invalid(`invalid VM name ${JSON.stringify(vm)}: ${problem}`);
}

function checkRequester(who: string): void {
  if (!REQUESTER_PATTERN.test(who)) {
    throw invalid(
      `invalid requester ${JSON.stringify(who.slice(0, 80))}: expected user:<login>, guest:<domid> or system:<name>`,
    );
  }
}

function toJson(value: Json | undefined, what: string): string {
  const text = JSON.stringify(value ?? null);
  if (Buffer.byteLength(text, 'utf8') > MAX_JSON_BYTES) {
    throw invalid(`${what} is larger than ${MAX_JSON_BYTES} bytes of JSON`);
  }
  return text;
}

function fromJson(text: unknown): Json {
  return JSON.parse(String(text)) as Json;
}

function num(v: unknown): number {
  return Number(v);
}

function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}

function strOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : String(v);
}

// Names read back were checked when written (checkVm): they are VmNames.
function cloneFromRow(r: Row): CloneRecord {
  return {
    vm: String(r.vm) as VmName,
    cloneName: String(r.clone_name),
    cloneUuid: strOrNull(r.clone_uuid),
    cloneDomid: numOrNull(r.clone_domid),
    state: r.state as CloneRecord['state'],
    kind: r.kind as CloneRecord['kind'],
    sourceUuid: String(r.source_uuid),
    snapshots: fromJson(r.snapshots) as Json[],
    requestedBy: String(r.requested_by),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

/**
 * Switches the database to WAL. The switch needs an exclusive lock, and SQLite
 * answers a concurrent switch (two processes opening a new database) with
 * SQLITE_BUSY without calling the busy handler, so it is retried here.
 */
function enableWal(db: DatabaseSync, timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      db.exec('PRAGMA journal_mode = WAL');
      return;
    } catch (err) {
      if (!isBusy(err) || Date.now() > deadline) throw err;
      Atomics.wait(pause, 0, 0, 5);
    }
  }
}

function holderFromRow(r: Row): VolumeHolderRecord {
  return {
    vm: String(r.vm) as VmName,
    vdev: String(r.vdev),
    holder: r.holder as VolumeSide,
    updatedAt: num(r.updated_at),
  };
}

function stepFromRow(r: Row): StepRecord {
  return {
    opId: num(r.op_id),
    seq: num(r.seq),
    name: String(r.name),
    status: r.status as StepRecord['status'],
    intent: fromJson(r.intent),
    undo: fromJson(r.undo),
    result: fromJson(r.result),
    error: strOrNull(r.error),
    journaledAt: num(r.journaled_at),
    finishedAt: numOrNull(r.finished_at),
  };
}

function ownerFromRow(r: Row): OperationOwner {
  return {
    pid: num(r.owner_pid),
    hostname: String(r.owner_host),
    startTime: strOrNull(r.owner_start_time),
    bootId: strOrNull(r.owner_boot_id),
  };
}

function auditFromRow(r: Row): AuditEntry {
  return {
    id: num(r.id),
    at: num(r.at),
    who: String(r.who),
    action: String(r.action),
    vm: strOrNull(r.vm),
    opId: numOrNull(r.op_id),
    outcome: String(r.outcome),
    detail: fromJson(r.detail),
  };
}

/** SQLITE_BUSY, also in its extended forms: node:sqlite reports the result code as `errcode`. */
function isBusy(err: unknown): boolean {
  const errcode = (err as { errcode?: unknown }).errcode;
  return typeof errcode === 'number' && (errcode & 0xff) === 5;
}

export class StateStore {
  readonly file: string;
  #owner: OperationOwner | undefined;
  readonly #db: DatabaseSync;
  readonly #now: () => number;

  constructor(options: StateStoreOptions = {}) {
    const paths = options.paths ?? (options.file === undefined ? zynclonePaths() : undefined);
    this.file = options.file ?? paths!.stateDb;
    this.#owner = options.owner;
    this.#now = options.now ?? Date.now;
    try {
      if (paths !== undefined) mkdirSync(paths.stateDir, { recursive: true, mode: 0o750 });
      // Node's SQLite module is loaded here, not with this module: `vmclone --help`
      // and `vmclone config` load this module but open no store.
      const { DatabaseSync } = process.getBuiltinModule('node:sqlite');
      this.#db = new DatabaseSync(this.file, {
        timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
      });
    } catch (err) {
      throw new StateError(
        'STATE_OPEN',
        `cannot open state database ${this.file}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    try {
      enableWal(this.#db, options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS);
      // The journal exists to survive crashes; do not trade its last commits for speed.
      this.#db.exec('PRAGMA synchronous = FULL');
      this.#db.exec('PRAGMA foreign_keys = ON');
      this.#migrate();
    } catch (err) {
      this.#db.close();
      if (err instanceof StateError) throw err;
      throw new StateError(
        'STATE_OPEN',
        `cannot open state database ${this.file}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  /** Who owns the operations begun through this store; this process unless told otherwise. */
  get owner(): OperationOwner {
    // Looked up when first needed (/proc, the boot id, the host name): reads never need it.
    this.#owner ??= currentOwner();
    return this.#owner;
  }

  get schemaVersion(): number {
    return Number((this.#db.prepare('PRAGMA user_version').get() as Row).user_version);
  }

  #migrate(): void {
    // The common case needs no write lock, so opening never waits on a busy writer.
    if (this.schemaVersion === SCHEMA_VERSION) return;
    // A migration may rebuild a referenced table; the pragma is a no-op inside
    // a transaction, so it is switched here and the keys are checked before commit.
    this.#db.exec('PRAGMA foreign_keys = OFF');
    try {
      this.#migrateLocked();
    } finally {
      this.#db.exec('PRAGMA foreign_keys = ON');
    }
  }

  #migrateLocked(): void {
    this.#write(() => {
      const version = this.schemaVersion;
      if (version > SCHEMA_VERSION) {
        throw new StateError(
          'STATE_SCHEMA_TOO_NEW',
          `state database ${this.file} has schema version ${version}; this ZynClone knows up to ${SCHEMA_VERSION}`,
        );
      }
      for (let v = version; v < SCHEMA_VERSION; v++) {
        this.#db.exec(MIGRATIONS[v]!);
        this.#db.exec(`PRAGMA user_version = ${v + 1}`);
      }
      const broken = this.#db.prepare('PRAGMA foreign_key_check').all();
      if (broken.length > 0) {
        throw new StateError(
          'STATE_OPEN',
          `migrating ${this.file} broke ${broken.length} foreign key(s); nothing was changed`,
        );
      }
    });
  }

  /** Runs `fn` in a BEGIN IMMEDIATE transaction: the write lock is taken before any read. */
  #write<T>(fn: () => T): T {
    try {
      this.#db.exec('BEGIN IMMEDIATE');
      let result: T;
      try {
        result = fn();
      } catch (err) {
        // Some errors (SQLITE_FULL, SQLITE_IOERR) have rolled back already.
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
      this.#db.exec('COMMIT');
      return result;
    } catch (err) {
      if (isBusy(err)) {
        throw new StateError(
          'STATE_LOCKED',
          `state database ${this.file} stayed locked by another process`,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
  }

  // ---- clones ----------------------------------------------------------

  getClone(vm: string): CloneRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM clones WHERE vm = ?').get(vm) as Row | undefined;
    return row === undefined ? undefined : cloneFromRow(row);
  }

  getCloneByName(cloneName: string): CloneRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM clones WHERE clone_name = ?').get(cloneName) as
      | Row
      | undefined;
    return row === undefined ? undefined : cloneFromRow(row);
  }

  /** The clone whose domain has this name or this UUID (how a running domain is known as a clone). */
  getCloneByDomain(name: string, uuid: string): CloneRecord | undefined {
    const row = this.#db
      .prepare('SELECT * FROM clones WHERE clone_name = ? OR clone_uuid = ? ORDER BY vm LIMIT 1')
      .get(name, uuid) as Row | undefined;
    return row === undefined ? undefined : cloneFromRow(row);
  }

  listClones(): CloneRecord[] {
    return (this.#db.prepare('SELECT * FROM clones ORDER BY vm').all() as Row[]).map(cloneFromRow);
  }

  /** Records the clone of `clone.vm`, replacing any earlier record of that VM. */
  putClone(clone: NewClone): CloneRecord {
    checkVm(clone.vm);
    checkVm(clone.cloneName);
    if (clone.cloneName === clone.vm) throw invalid("a clone cannot have its original's name");
    if (!CLONE_STATES.includes(clone.state)) {
      throw invalid(`invalid clone state ${JSON.stringify(clone.state)}`);
    }
    if (!CLONE_KINDS.includes(clone.kind)) {
      throw invalid(`invalid clone kind ${JSON.stringify(clone.kind)}`);
    }
    checkRequester(clone.requestedBy);
    const snapshots = toJson(clone.snapshots ?? [], 'snapshots');
    return this.#write(() => {
      const taken = this.getCloneByName(clone.cloneName);
      if (taken !== undefined && taken.vm !== clone.vm) {
        throw new StateError(
          'CLONE_NAME_TAKEN',
          `clone name ${clone.cloneName} is already used by the clone of ${taken.vm}`,
        );
      }
      const now = this.#now();
      this.#db
        .prepare(
          `INSERT INTO clones (vm, clone_name, clone_uuid, clone_domid, state, kind, source_uuid,
             snapshots, requested_by, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (vm) DO UPDATE SET clone_name = excluded.clone_name,
             clone_uuid = excluded.clone_uuid, clone_domid = excluded.clone_domid,
             state = excluded.state, kind = excluded.kind, source_uuid = excluded.source_uuid,
             snapshots = excluded.snapshots, requested_by = excluded.requested_by,
             created_at = excluded.created_at, updated_at = excluded.updated_at`,
        )
        .run(
          clone.vm,
          clone.cloneName,
          clone.cloneUuid ?? null,
          clone.cloneDomid ?? null,
          clone.state,
          clone.kind,
          clone.sourceUuid,
          snapshots,
          clone.requestedBy,
          now,
          now,
        );
      return this.getClone(clone.vm)!;
    });
  }

  updateClone(vm: string, patch: ClonePatch): CloneRecord {
    if (patch.state !== undefined && !CLONE_STATES.includes(patch.state)) {
      throw invalid(`invalid clone state ${JSON.stringify(patch.state)}`);
    }
    const snapshots =
      patch.snapshots === undefined ? undefined : toJson(patch.snapshots, 'snapshots');
    return this.#write(() => {
      const current = this.getClone(vm);
      if (current === undefined) throw new StateError('CLONE_NOT_FOUND', `VM ${vm} has no clone`);
      this.#db
        .prepare(
          `UPDATE clones SET state = ?, clone_domid = ?, clone_uuid = ?, snapshots = ?, updated_at = ?
           WHERE vm = ?`,
        )
        .run(
          patch.state ?? current.state,
          patch.cloneDomid === undefined ? current.cloneDomid : patch.cloneDomid,
          patch.cloneUuid === undefined ? current.cloneUuid : patch.cloneUuid,
          snapshots ?? JSON.stringify(current.snapshots),
          this.#now(),
          vm,
        );
      return this.getClone(vm)!;
    });
  }

  /** Forgets the clone of `vm`; false if there was none. */
  deleteClone(vm: string): boolean {
    return this.#write(
      () => Number(this.#db.prepare('DELETE FROM clones WHERE vm = ?').run(vm).changes) > 0,
    );
  }

  // ---- shared volume holders -------------------------------------------

  /** Recorded holders of `vm`'s shared volumes; a volume without a record is the original's. */
  volumeHolders(vm: string): VolumeHolderRecord[] {
    return (
      this.#db.prepare('SELECT * FROM volume_holders WHERE vm = ? ORDER BY vdev').all(vm) as Row[]
    ).map(holderFromRow);
  }

  volumeHolder(vm: string, vdev: string): VolumeSide {
    const row = this.#db
      .prepare('SELECT holder FROM volume_holders WHERE vm = ? AND vdev = ?')
      .get(vm, vdev) as Row | undefined;
    return row === undefined ? 'original' : (row.holder as VolumeSide);
  }

  setVolumeHolder(vm: string, vdev: string, holder: VolumeSide): VolumeHolderRecord {
    checkVm(vm);
    if (!/^[a-z][a-z0-9]{1,15}$/.test(vdev)) throw invalid(`invalid vdev ${JSON.stringify(vdev)}`);
    if (!VOLUME_SIDES.includes(holder)) throw invalid(`invalid holder ${JSON.stringify(holder)}`);
    return this.#write(() => {
      this.#db
        .prepare(
          `INSERT INTO volume_holders (vm, vdev, holder, updated_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (vm, vdev) DO UPDATE SET holder = excluded.holder, updated_at = excluded.updated_at`,
        )
        .run(vm, vdev, holder, this.#now());
      return holderFromRow(
        this.#db
          .prepare('SELECT * FROM volume_holders WHERE vm = ? AND vdev = ?')
          .get(vm, vdev) as Row,
      );
    });
  }

  /** Forgets `vm`'s holder records: every shared volume is the original's again. */
  clearVolumeHolders(vm: string): number {
    return this.#write(() =>
      Number(this.#db.prepare('DELETE FROM volume_holders WHERE vm = ?').run(vm).changes),
    );
  }

  // ---- operations and their journal -----------------------------------

  #operation(opId: number): OperationRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM operations WHERE id = ?').get(opId) as
      | Row
      | undefined;
    if (row === undefined) return undefined;
    const steps = (
      this.#db
        .prepare('SELECT * FROM operation_steps WHERE op_id = ? ORDER BY seq')
        .all(opId) as Row[]
    ).map(stepFromRow);
    return {
      id: num(row.id),
      vm: String(row.vm) as VmName,
      kind: row.kind as OperationKind,
      status: row.status as OperationRecord['status'],
      requestedBy: String(row.requested_by),
      params: fromJson(row.params),
      owner: ownerFromRow(row),
      startedAt: num(row.started_at),
      finishedAt: numOrNull(row.finished_at),
      error: strOrNull(row.error),
      steps,
    };
  }

  getOperation(opId: number): OperationRecord | undefined {
    return this.#operation(opId);
  }

  /** The running operation on `vm`, if any (whether or not its owner is alive). */
  runningOperation(vm: string): OperationRecord | undefined {
    const row = this.#db
      .prepare("SELECT id FROM operations WHERE vm = ? AND status = 'running'")
      .get(vm) as Row | undefined;
    return row === undefined ? undefined : this.#operation(num(row.id));
  }

  /** Operations, newest first. */
  listOperations(filter: { vm?: string; limit?: number } = {}): OperationRecord[] {
    const limit = Math.max(1, Math.min(filter.limit ?? 100, 10_000));
    const rows = (
      filter.vm === undefined
        ? this.#db.prepare('SELECT id FROM operations ORDER BY id DESC LIMIT ?').all(limit)
        : this.#db
            .prepare('SELECT id FROM operations WHERE vm = ? ORDER BY id DESC LIMIT ?')
            .all(filter.vm, limit)
    ) as Row[];
    return rows.map((r) => this.#operation(num(r.id))!);
  }

  /**
   * Starts an operation on `vm`, owned by this store's owner. Throws BusyError
   * (VM_BUSY) if one is already running there, even if its owner died: a
   * stale operation must be recovered first (see staleOperations, adoptOperation).
   */
  beginOperation(vm: string, kind: OperationKind, options: BeginOptions = {}): OperationRecord {
    checkVm(vm);
    if (!OPERATION_KINDS.includes(kind)) {
      throw invalid(`invalid operation kind ${JSON.stringify(kind)}`);
    }
    const requestedBy = options.requestedBy ?? 'system:zynclone';
    checkRequester(requestedBy);
    const params = toJson(options.params, 'params');
    return this.#write(() => {
      const running = this.runningOperation(vm);
      if (running !== undefined) {
        const { liveness, reason } = ownerLiveness(running.owner);
        throw new BusyError(vm, running, liveness === 'dead', reason);
      }
      const o = this.owner;
      const info = this.#db
        .prepare(
          `INSERT INTO operations (vm, kind, status, requested_by, params, owner_pid, owner_host,
             owner_start_time, owner_boot_id, started_at)
           VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(vm, kind, requestedBy, params, o.pid, o.hostname, o.startTime, o.bootId, this.#now());
      return this.#operation(Number(info.lastInsertRowid))!;
    });
  }

  /** The running operation `opId`, checked to be ours; call inside #write. */
  #ownRunning(opId: number): OperationRecord {
    const op = this.#operation(opId);
    if (op === undefined) throw new StateError('OPERATION_NOT_FOUND', `no operation ${opId}`);
    if (op.status !== 'running') {
      throw new StateError(
        'OPERATION_NOT_RUNNING',
        `operation ${opId} already ended (${op.status})`,
      );
    }
    if (!sameOwner(op.owner, this.owner)) {
      throw new StateError(
        'OPERATION_NOT_OWNED',
        `operation ${opId} is owned by pid ${op.owner.pid} on ${op.owner.hostname}, not by this process`,
      );
    }
    return op;
  }

  /**
   * Journals a step BEFORE it acts: its intent, and how to undo it. After a
   * crash the step is found `journaled`, so recovery knows it may have happened.
   */
  journalStep(opId: number, name: string, intent: Json, undo: Json = null): StepRecord {
    if (!/^[a-z][a-z0-9_.:-]{0,63}$/.test(name)) {
      throw invalid(`invalid step name ${JSON.stringify(name.slice(0, 80))}`);
    }
    const intentText = toJson(intent, 'step intent');
    const undoText = toJson(undo, 'step undo');
    return this.#write(() => {
      this.#ownRunning(opId);
      const row = this.#db
        .prepare('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM operation_steps WHERE op_id = ?')
        .get(opId) as Row;
      const seq = num(row.seq);
      this.#db
        .prepare(
          `INSERT INTO operation_steps (op_id, seq, name, status, intent, undo, journaled_at)
           VALUES (?, ?, ?, 'journaled', ?, ?, ?)`,
        )
        .run(opId, seq, name, intentText, undoText, this.#now());
      return this.#step(opId, seq)!;
    });
  }

  #step(opId: number, seq: number): StepRecord | undefined {
    const row = this.#db
      .prepare('SELECT * FROM operation_steps WHERE op_id = ? AND seq = ?')
      .get(opId, seq) as Row | undefined;
    return row === undefined ? undefined : stepFromRow(row);
  }

  #setStep(
    opId: number,
    seq: number,
    status: 'done' | 'undone' | 'failed',
    fields: { result?: Json; error?: string; undo?: Json },
  ): StepRecord {
    const result = fields.result === undefined ? undefined : toJson(fields.result, 'step result');
    const undo = fields.undo === undefined ? undefined : toJson(fields.undo, 'step undo');
    return this.#write(() => {
      this.#ownRunning(opId);
      const step = this.#step(opId, seq);
      if (step === undefined) {
        throw new StateError('STEP_NOT_FOUND', `operation ${opId} has no step ${seq}`);
      }
      this.#db
        .prepare(
          `UPDATE operation_steps SET status = ?, result = COALESCE(?, result), undo = COALESCE(?, undo),
             error = ?, finished_at = ? WHERE op_id = ? AND seq = ?`,
        )
        .run(status, result ?? null, undo ?? null, fields.error ?? null, this.#now(), opId, seq);
      return this.#step(opId, seq)!;
    });
  }

  /** The step acted. `undo` may be refined now that its result is known (e.g. the new LV's name). */
  completeStep(opId: number, seq: number, result: Json = null, undo?: Json): StepRecord {
    return this.#setStep(opId, seq, 'done', { result, undo });
  }

  /** The step's effect was undone during rollback. */
  undoStep(opId: number, seq: number): StepRecord {
    return this.#setStep(opId, seq, 'undone', {});
  }

  /** The step failed; `error` says how. */
  failStep(opId: number, seq: number, error: string): StepRecord {
    return this.#setStep(opId, seq, 'failed', { error: error.slice(0, 4096) });
  }

  /**
   * Ends the operation (releasing the VM) and appends its audit entry in the
   * same transaction. 'done' requires every step to have an outcome.
   */
  finishOperation(opId: number, outcome: OperationOutcome, error?: string): OperationRecord {
    if (!['done', 'rolled-back', 'failed'].includes(outcome)) {
      throw invalid(`invalid outcome ${JSON.stringify(outcome)}`);
    }
    return this.#write(() => {
      const op = this.#ownRunning(opId);
      const open = op.steps.filter((s) => s.status === 'journaled');
      if (outcome === 'done' && open.length > 0) {
        throw new StateError(
          'OPERATION_STEPS_OPEN',
          `operation ${opId} cannot be done: step ${open.map((s) => `${s.seq} (${s.name})`).join(', ')} has no outcome`,
        );
      }
      const now = this.#now();
      const errText = error === undefined ? null : error.slice(0, 4096);
      this.#db
        .prepare('UPDATE operations SET status = ?, finished_at = ?, error = ? WHERE id = ?')
        .run(outcome, now, errText, opId);
      this.#insertAudit({
        who: op.requestedBy,
        action: op.kind,
        vm: op.vm,
        opId,
        outcome,
        detail: { steps: op.steps.length, ...(errText === null ? {} : { error: errText }) },
      });
      return this.#operation(opId)!;
    });
  }

  /** Every running operation with its journal, and whether its owner still runs. */
  pendingOperations(): PendingOperation[] {
    const rows = this.#db
      .prepare("SELECT id FROM operations WHERE status = 'running' ORDER BY id")
      .all() as Row[];
    return rows.map((r) => {
      const op = this.#operation(num(r.id))!;
      const { liveness, reason } = ownerLiveness(op.owner);
      return { ...op, liveness, livenessReason: reason };
    });
  }

  /** Running operations whose owner process is gone: to be finished or rolled back. */
  staleOperations(): PendingOperation[] {
    return this.pendingOperations().filter((op) => op.liveness === 'dead');
  }

  /**
   * Takes over a stale operation so this process can finish or roll it back.
   * Exactly one of several recovering processes wins; the others get BusyError.
   */
  adoptOperation(opId: number): OperationRecord {
    return this.#write(() => {
      const op = this.#operation(opId);
      if (op === undefined) throw new StateError('OPERATION_NOT_FOUND', `no operation ${opId}`);
      if (op.status !== 'running') {
        throw new StateError(
          'OPERATION_NOT_RUNNING',
          `operation ${opId} already ended (${op.status})`,
        );
      }
      if (sameOwner(op.owner, this.owner)) return op;
      const { liveness } = ownerLiveness(op.owner);
      if (liveness !== 'dead') throw new BusyError(op.vm, op, false);
      const o = this.owner;
      this.#db
        .prepare(
          `UPDATE operations SET owner_pid = ?, owner_host = ?, owner_start_time = ?, owner_boot_id = ?
           WHERE id = ?`,
        )
        .run(o.pid, o.hostname, o.startTime, o.bootId, opId);
      this.#insertAudit({
        who: 'system:recovery',
        action: 'adopt',
        vm: op.vm,
        opId,
        outcome: 'adopted',
        detail: { previousOwnerPid: op.owner.pid, ownerPid: o.pid },
      });
      return this.#operation(opId)!;
    });
  }

  /**
   * Hands a running operation this process owns over to recovery: it stays
   * running (the VM stays busy), but its owner reads as dead, so the next
   * recovery (clone_monitor, any vmclone command, a daemon's next request)
   * adopts and finishes it. For a rollback this process could not finish,
   * e.g. because xl failed; `why` is kept as the operation's error meanwhile.
   */
  releaseOperation(opId: number, why: string): OperationRecord {
    return this.#write(() => {
      const op = this.#ownRunning(opId);
      this.#db
        .prepare(
          'UPDATE operations SET owner_pid = 0, owner_start_time = NULL, error = ? WHERE id = ?',
        )
        .run(why.slice(0, 4096), opId);
      this.#insertAudit({
        who: op.requestedBy,
        action: 'release',
        vm: op.vm,
        opId,
        outcome: 'left to recovery',
        detail: { ownerPid: op.owner.pid, error: why.slice(0, 1000) },
      });
      return this.#operation(opId)!;
    });
  }

  // ---- audit -------------------------------------------------------------

  #insertAudit(entry: NewAuditEntry): number {
    const info = this.#db
      .prepare(
        'INSERT INTO audit (at, who, action, vm, op_id, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        this.#now(),
        entry.who,
        entry.action,
        entry.vm ?? null,
        entry.opId ?? null,
        entry.outcome,
        toJson(entry.detail, 'audit detail'),
      );
    return Number(info.lastInsertRowid);
  }

  /** Appends an audit entry (e.g. a refused guest request, a config change). */
  recordAudit(entry: NewAuditEntry): AuditEntry {
    checkRequester(entry.who);
    if (!/^[a-z][a-z0-9_.:-]{0,63}$/.test(entry.action)) {
      throw invalid(`invalid audit action ${JSON.stringify(entry.action.slice(0, 80))}`);
    }
    if (entry.outcome.length === 0 || entry.outcome.length > 256) {
      throw invalid('audit outcome must be 1-256 characters');
    }
    return this.#write(() => {
      const id = this.#insertAudit(entry);
      return auditFromRow(this.#db.prepare('SELECT * FROM audit WHERE id = ?').get(id) as Row);
    });
  }

  /** Audit entries, newest first. */
  auditLog(filter: { vm?: string; limit?: number } = {}): AuditEntry[] {
    const limit = Math.max(1, Math.min(filter.limit ?? 100, 10_000));
    const rows = (
      filter.vm === undefined
        ? this.#db.prepare('SELECT * FROM audit ORDER BY id DESC LIMIT ?').all(limit)
        : this.#db
            .prepare('SELECT * FROM audit WHERE vm = ? ORDER BY id DESC LIMIT ?')
            .all(filter.vm, limit)
    ) as Row[];
    return rows.map(auditFromRow);
  }
}

/** Opens (creating and migrating as needed) the state database. */
export function openStateStore(options: StateStoreOptions = {}): StateStore {
  return new StateStore(options);
}

/** `user:<login>` requester id. */
export function userRequester(login: string): Requester {
  const who = `user:${login}`;
  checkRequester(who);
  return who;
}

/** `guest:<domid>` requester id, for a request read from that domain's XenStore area. */
export function guestRequester(domid: number): Requester {
  if (!Number.isInteger(domid) || domid < 1 || domid > 32767) {
    throw invalid(`invalid guest domid ${domid}`);
  }
  return `guest:${domid}`;
}
