/**
 * Recovery of operations whose owner process died, and reconciliation of
 * the state store with the live domains. Both run at the start of every
 * vmclone command and in clone_monitor (within one poll of the owner's
 * death, so an original paused by a killed create runs again unasked).
 */
import type { OperationKind, OperationRecord } from '../state/types.js';
import { type LifecycleContext, ROLL_BACK, errText } from './context.js';
import { publishVm } from './publish.js';
import { removeClone } from './remove.js';
import { setLockdownState, stopClone } from './transitions.js';

export interface RecoveryReport {
  readonly opId: number;
  readonly vm: string;
  readonly kind: OperationKind;
  readonly outcome: 'rolled-back' | 'finished' | 'failed';
  readonly error?: string;
}

/**
 * Adopts every operation whose owner died and finishes it (stop, activate,
 * deactivate, remove: their steps are safe to repeat) or rolls it back
 * (create, start); then reconciles. `retry`: operations this process adopted
 * before and failed to recover, tried again.
 */
export async function recover(
  ctx: LifecycleContext,
  retry: readonly number[],
): Promise<RecoveryReport[]> {
  const { store } = ctx;
  const reports: RecoveryReport[] = [];
  const again = retry.flatMap((id) => {
    const op = store.getOperation(id);
    return op?.status === 'running' ? [op] : [];
  });
  for (const stale of [...store.staleOperations(), ...again]) {
    if (stale.kind === 'switch-volume') continue; // VolumeSwitcher.recover's
    let op: OperationRecord;
    try {
      op = store.adoptOperation(stale.id);
    } catch (err) {
      if ((err as { code?: string }).code === 'VM_BUSY') continue; // another process recovers it
      throw err;
    }
    ctx.emit(
      'info',
      `recovering operation ${op.id} (${op.kind} of ${op.vm}) left by a dead process`,
    );
    const report = { opId: op.id, vm: op.vm, kind: op.kind };
    try {
      if (ROLL_BACK.includes(op.kind)) {
        await ctx.rollBack(op, `rolled back after its process (pid ${stale.owner.pid}) died`);
        reports.push({ ...report, outcome: 'rolled-back' });
      } else {
        await redo(ctx, op);
        reports.push({ ...report, outcome: 'finished' });
      }
    } catch (err) {
      reports.push({ ...report, outcome: 'failed', error: errText(err) });
    }
  }
  try {
    await reconcile(ctx);
  } catch (err) {
    // Never in the way of a command: the next one (or clone_monitor) tries again.
    ctx.emit('warn', `cannot compare the clones with the live domains: ${errText(err)}`);
  }
  return reports;
}

async function redo(ctx: LifecycleContext, op: OperationRecord): Promise<void> {
  // Steps the dead owner journaled but never completed are repeated below
  // (each is safe to repeat); mark them as interrupted so the journal says so.
  for (const s of op.steps) {
    if (s.status === 'journaled') {
      ctx.store.failStep(op.id, s.seq, 'interrupted: its process died; repeated by recovery');
    }
  }
  const { vm } = op;
  switch (op.kind) {
    case 'remove':
      await removeClone(ctx, vm, op);
      return;
    case 'stop':
      await stopClone(ctx, vm, { force: true }, op);
      return;
    case 'activate':
    case 'deactivate':
      await setLockdownState(ctx, vm, op.kind, op);
      return;
    default:
      await ctx.rollBack(op, 'unexpected operation kind');
  }
}

/**
 * A clone recorded running whose domain is gone (`xl destroy` behind
 * ZynClone's back, or its guest powered off) is active now: its lockdowns
 * stay, and it can be started again. Returns the notes it left.
 */
export async function reconcile(ctx: LifecycleContext): Promise<string[]> {
  const { store } = ctx;
  const running = store.listClones().filter((c) => c.state === 'running');
  if (running.length === 0) return [];
  // Listed after the records were read: a clone recorded running by then has its domain.
  const names = new Set((await ctx.xl.list()).map((d) => d.name));
  const notes: string[] = [];
  for (const c of running) {
    if (names.has(c.cloneName) || store.runningOperation(c.vm) !== undefined) continue;
    const now = store.getClone(c.vm);
    if (now?.state !== 'running' || now.updatedAt !== c.updatedAt) continue;
    const note = `clone ${c.cloneName} was running but its domain is gone (destroyed or shut down outside ZynClone); it is active now: vmclone start ${c.vm} boots it again`;
    store.updateClone(c.vm, { state: 'active', cloneDomid: null });
    store.recordAudit({
      who: ctx.o.requestedBy,
      action: 'reconcile',
      vm: c.vm,
      outcome: 'active',
      detail: { note },
    });
    ctx.emit('warn', note);
    notes.push(note);
    try {
      const meta = ctx.readMeta(c.cloneName);
      await publishVm(await ctx.xs(), (await ctx.lockdownOf(meta, 'active')).publication);
    } catch (err) {
      // clone_monitor publishes it from the store; say why this could not.
      ctx.emit('warn', `could not publish the clone of ${c.vm} as active: ${errText(err)}`);
    }
  }
  return notes;
}
