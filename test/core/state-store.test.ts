import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { zynclonePaths } from '../../src/core/paths.js';
import {
  BusyError,
  type OperationOwner,
  SCHEMA_VERSION,
  StateError,
  type StateStore,
  currentOwner,
  guestRequester,
  openStateStore,
  ownerLiveness,
  parseProcStat,
} from '../../src/core/state/index.js';

let root: string;
const stores: StateStore[] = [];

function open(owner?: OperationOwner): StateStore {
  const s = openStateStore({ paths: zynclonePaths(root), ...(owner ? { owner } : {}) });
  stores.push(s);
  return s;
}

function stateError(fn: () => unknown): StateError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StateError);
    return err as StateError;
  }
  throw new Error('expected a StateError');
}

/** The identity of a process that has already exited (its pid is free or reused). */
function deadOwner(): OperationOwner {
  const r = spawnSync(process.execPath, [
    '-e',
    'process.stdout.write(require("fs").readFileSync("/proc/self/stat","utf8"))',
  ]);
  const stat = parseProcStat(r.stdout.toString())!;
  return { ...currentOwner(), pid: r.pid!, startTime: stat.startTime };
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'zc-state-'));
});
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  rmSync(root, { recursive: true, force: true });
});

describe('state store: schema', () => {
  it('creates the database under the root, in WAL mode, at the current schema version', () => {
    const s = open();
    expect(s.file).toBe(join(root, 'var/lib/zynclone/state.db'));
    expect(s.schemaVersion).toBe(SCHEMA_VERSION);
    const db = new DatabaseSync(s.file, { readOnly: true });
    try {
      expect(db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
      const tables = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .all()
        .map((row) => row.name);
      expect(tables).toEqual(
        expect.arrayContaining(['audit', 'clones', 'operation_steps', 'operations']),
      );
    } finally {
      db.close();
    }
  });

  it('reopens an existing database without migrating it again', () => {
    const s = open();
    s.recordAudit({ who: 'user:root', action: 'config.set', outcome: 'ok' });
    s.close();
    expect(open().auditLog()).toHaveLength(1);
  });

  it('refuses a database written by a newer version', () => {
    const s = open();
    s.close();
    const db = new DatabaseSync(s.file);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(stateError(() => open()).code).toBe('STATE_SCHEMA_TOO_NEW');
  });
});

describe('state store: clones', () => {
  const clone = {
    vm: 'web1',
    cloneName: 'web1-clone',
    state: 'running' as const,
    kind: 'memory' as const,
    sourceUuid: '11111111-2222-3333-4444-555555555555',
    snapshots: [{ disk: 'xvda', backend: 'lvm-thin', snapshot: 'vg0/web1-snap-1' }],
    requestedBy: 'user:alice',
    cloneDomid: 7,
  };

  it('records a clone with its lineage and updates its state', () => {
    const s = open();
    const rec = s.putClone(clone);
    expect(rec).toMatchObject({ ...clone, cloneUuid: null });
    expect(rec.createdAt).toBeGreaterThan(0);
    const stopped = s.updateClone('web1', { state: 'active', cloneDomid: null });
    expect(stopped).toMatchObject({
      state: 'active',
      cloneDomid: null,
      snapshots: clone.snapshots,
    });
    expect(s.getCloneByName('web1-clone')?.vm).toBe('web1');
    const uuid = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
    s.updateClone('web1', { cloneUuid: uuid });
    expect(s.getCloneByDomain('web1-clone', 'ffffffff-ffff-4fff-8fff-ffffffffffff')?.vm).toBe(
      'web1',
    );
    expect(s.getCloneByDomain('renamed', uuid)?.vm).toBe('web1');
    expect(s.getCloneByDomain('web1', clone.sourceUuid)).toBeUndefined();
    expect(s.listClones().map((c) => c.vm)).toEqual(['web1']);
    expect(s.deleteClone('web1')).toBe(true);
    expect(s.getClone('web1')).toBeUndefined();
    expect(stateError(() => s.updateClone('web1', { state: 'running' })).code).toBe(
      'CLONE_NOT_FOUND',
    );
  });

  it("refuses a clone name already used by another VM's clone, and bad values", () => {
    const s = open();
    s.putClone(clone);
    expect(stateError(() => s.putClone({ ...clone, vm: 'web2' })).code).toBe('CLONE_NAME_TAKEN');
    expect(stateError(() => s.putClone({ ...clone, vm: 'a/b' })).code).toBe('STATE_INVALID');
    expect(stateError(() => s.putClone({ ...clone, cloneName: 'web1' })).code).toBe(
      'STATE_INVALID',
    );
    expect(stateError(() => s.putClone({ ...clone, state: 'paused' as never })).code).toBe(
      'STATE_INVALID',
    );
    expect(stateError(() => s.putClone({ ...clone, requestedBy: 'alice' })).code).toBe(
      'STATE_INVALID',
    );
    expect(s.putClone({ ...clone, requestedBy: guestRequester(12) }).requestedBy).toBe('guest:12');
  });
});

describe('state store: operations', () => {
  it('journals steps before and after they act, and audits the outcome', () => {
    const s = open();
    const op = s.beginOperation('web1', 'create', {
      requestedBy: 'user:alice',
      params: { kind: 'online' },
    });
    expect(op).toMatchObject({
      vm: 'web1',
      kind: 'create',
      status: 'running',
      owner: { pid: process.pid },
    });
    const st = s.journalStep(op.id, 'snapshot-disks', { disks: ['xvda'] }, { remove: ['snap-1'] });
    expect(s.getOperation(op.id)!.steps).toEqual([
      expect.objectContaining({
        seq: 1,
        name: 'snapshot-disks',
        status: 'journaled',
        undo: { remove: ['snap-1'] },
      }),
    ]);
    s.completeStep(op.id, st.seq, { snapshot: 'vg0/snap-1' });
    const st2 = s.journalStep(op.id, 'create-domain', { name: 'web1-clone' });
    s.completeStep(op.id, st2.seq, { domid: 9 }, { destroy: 9 });
    const done = s.finishOperation(op.id, 'done');
    expect(done.status).toBe('done');
    expect(done.steps.map((x) => [x.seq, x.status, x.result])).toEqual([
      [1, 'done', { snapshot: 'vg0/snap-1' }],
      [2, 'done', { domid: 9 }],
    ]);
    expect(done.steps[1]!.undo).toEqual({ destroy: 9 });
    expect(s.auditLog({ vm: 'web1' })).toEqual([
      expect.objectContaining({
        who: 'user:alice',
        action: 'create',
        outcome: 'done',
        opId: op.id,
      }),
    ]);
    expect(stateError(() => s.journalStep(op.id, 'late', null)).code).toBe('OPERATION_NOT_RUNNING');
  });

  it('allows one operation per VM; a second gets VM_BUSY naming the first and its owner', () => {
    const s = open();
    const op = s.beginOperation('web1', 'start');
    const err = stateError(() => s.beginOperation('web1', 'stop'));
    expect(err).toBeInstanceOf(BusyError);
    expect(err.code).toBe('VM_BUSY');
    expect((err as BusyError).stale).toBe(false);
    expect(err.message).toContain(`operation ${op.id} (start)`);
    expect(err.message).toContain(`pid ${process.pid}`);
    // Other VMs are not affected, and the VM is free again once the operation ends.
    s.beginOperation('db1', 'start');
    s.finishOperation(op.id, 'failed', 'xl create failed');
    expect(s.beginOperation('web1', 'stop').status).toBe('running');
  });

  it('will not mark an operation done while a step has no outcome', () => {
    const s = open();
    const op = s.beginOperation('web1', 'remove');
    const st = s.journalStep(op.id, 'destroy-domain', { domid: 4 });
    expect(stateError(() => s.finishOperation(op.id, 'done')).code).toBe('OPERATION_STEPS_OPEN');
    s.undoStep(op.id, st.seq);
    expect(s.finishOperation(op.id, 'rolled-back').steps[0]!.status).toBe('undone');
  });

  it('refuses journal writes from a process that does not own the operation', () => {
    const s = open();
    const op = s.beginOperation('web1', 'start');
    const other = open({ ...currentOwner(), pid: process.pid + 100_000 });
    expect(stateError(() => other.journalStep(op.id, 'x', null)).code).toBe('OPERATION_NOT_OWNED');
    expect(stateError(() => other.finishOperation(op.id, 'done')).code).toBe('OPERATION_NOT_OWNED');
    // Its owner is alive, so it cannot be taken over either.
    expect(stateError(() => other.adoptOperation(op.id)).code).toBe('VM_BUSY');
    expect(stateError(() => s.completeStep(op.id, 9)).code).toBe('STEP_NOT_FOUND');
    expect(stateError(() => s.journalStep(999, 'x', null)).code).toBe('OPERATION_NOT_FOUND');
  });

  it('reports an operation whose owner died (pid gone or reused) as stale, and lets one process adopt it', () => {
    const dead = deadOwner();
    expect(ownerLiveness(dead).liveness).toBe('dead');
    expect(ownerLiveness({ ...currentOwner(), startTime: '1' }).reason).toMatch(/another process/);
    expect(ownerLiveness(currentOwner()).liveness).toBe('alive');
    const crashed = open(dead);
    const op = crashed.beginOperation('web1', 'create', { requestedBy: 'user:bob' });
    const recovering = open();
    const busy = stateError(() => recovering.beginOperation('web1', 'remove')) as BusyError;
    expect(busy.stale).toBe(true);
    expect(busy.message).toMatch(/owner is gone .*recovered/);
    expect(recovering.staleOperations().map((o) => o.id)).toEqual([op.id]);
    expect(recovering.pendingOperations()[0]).toMatchObject({ liveness: 'dead' });

    const adopted = recovering.adoptOperation(op.id);
    expect(adopted.owner.pid).toBe(process.pid);
    expect(recovering.staleOperations()).toEqual([]);
    expect(recovering.pendingOperations()[0]).toMatchObject({ id: op.id, liveness: 'alive' });
    recovering.finishOperation(op.id, 'rolled-back', 'recovered after crash');
    expect(recovering.auditLog({ vm: 'web1' }).map((a) => [a.action, a.outcome])).toEqual([
      ['create', 'rolled-back'],
      ['adopt', 'adopted'],
    ]);
  });

  it('reports STATE_LOCKED when another connection holds the write lock past busy_timeout', () => {
    const s = open();
    const blocker = new DatabaseSync(s.file);
    try {
      blocker.exec('BEGIN IMMEDIATE');
      const impatient = openStateStore({ file: s.file, busyTimeoutMs: 20 });
      stores.push(impatient);
      expect(stateError(() => impatient.beginOperation('web1', 'start')).code).toBe('STATE_LOCKED');
      blocker.exec('ROLLBACK');
      expect(impatient.beginOperation('web1', 'start').status).toBe('running');
    } finally {
      blocker.close();
    }
  });

  it('bounds what it stores', () => {
    const s = open();
    expect(stateError(() => s.beginOperation('web1', 'reboot' as never)).code).toBe(
      'STATE_INVALID',
    );
    const op = s.beginOperation('web1', 'start');
    expect(stateError(() => s.journalStep(op.id, 'big', 'x'.repeat(70_000))).code).toBe(
      'STATE_INVALID',
    );
    expect(stateError(() => s.journalStep(op.id, 'Bad Name', null)).code).toBe('STATE_INVALID');
  });
});
