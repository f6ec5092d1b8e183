/**
 * Undo actions, as the journal stores them, and the rollback that plays an
 * operation's journal backwards. Each action is safe to repeat and never
 * touches what ZynClone did not make: a domain is destroyed or unpaused only
 * if it has the recorded UUID.
 */
import { rmSync } from 'node:fs';
import type { VmUuid, XlDriver, XlListEntry } from '../../xen/index.js';
import type { StateStore } from '../state/store.js';
import type { CloneRecord, OperationRecord } from '../state/types.js';
import { parseSnapshotPlan, remove as removeSnapshot } from '../storage/index.js';
import type { UndoAction } from './journal.js';
import { type LiveSaver, helperLiveSaver } from './live-save.js';
import { type PublishClient, type VmPublication, publishVm, unpublishVm } from './publish.js';

export interface UndoContext {
  readonly xl: Pick<XlDriver, 'listVerbose' | 'unpause' | 'destroy'>;
  readonly store: StateStore;
  readonly xs: () => Promise<PublishClient>;
  /** Waits before each further attempt at an undo action that failed; default UNDO_RETRY_DELAYS_MS. */
  readonly undoRetryDelaysMs?: readonly number[] | undefined;
  /** The live saver of a helper path; default: run that helper. */
  readonly liveSaver?: ((helper: string) => LiveSaver) | undefined;
}

/** A failed undo action is tried twice more (xl under heavy load may fail once and then work). */
export const UNDO_RETRY_DELAYS_MS: readonly number[] = [500, 2000];

/**
 * The live domain named `name`, with the UUID the hypervisor holds, or
 * undefined when there is none. From `xl list -v`, never `xl list -l`: that
 * one leaves out, without an error, a domain whose configuration libxl cannot
 * retrieve, such as one whose `xl create` was killed half-way.
 */
export async function liveDomain(
  xl: Pick<XlDriver, 'listVerbose'>,
  name: string,
): Promise<(XlListEntry & { uuid: VmUuid }) | undefined> {
  return (await xl.listVerbose()).find((d) => d.name === name);
}

/** The UUID of domain `name`, or undefined when there is no such domain. */
export async function domainUuid(
  xl: Pick<XlDriver, 'listVerbose'>,
  name: string,
): Promise<string | undefined> {
  return (await liveDomain(xl, name))?.uuid;
}

export async function runUndo(ctx: UndoContext, u: UndoAction): Promise<void> {
  switch (u.action) {
    case 'rm-file':
      rmSync(u.path, { force: true });
      return;
    case 'unpause': {
      const d = await liveDomain(ctx.xl, u.name);
      if (d === undefined || !d.flags.paused) return;
      if (u.uuid !== null && d.uuid !== u.uuid) return;
      await ctx.xl.unpause(d.domid);
      return;
    }
    case 'resume-suspended': {
      const d = await liveDomain(ctx.xl, u.name);
      if (d === undefined || !d.flags.shutdown) return;
      if (u.uuid !== null && d.uuid !== u.uuid) return;
      await (ctx.liveSaver ?? helperLiveSaver)(u.helper).resume(u.name);
      return;
    }
    case 'remove-snapshot':
      await removeSnapshot(parseSnapshotPlan(u.plan));
      return;
    case 'destroy-domain': {
      // Found by its UUID, whatever its name: never a domain we did not make,
      // and also one whose creation was cut short.
      const d = (await ctx.xl.listVerbose()).find((x) => x.uuid === u.uuid);
      if (d === undefined) return;
      try {
        await ctx.xl.destroy(d.domid);
      } catch (err) {
        if ((err as { code?: string }).code !== 'XL_NO_SUCH_DOMAIN') throw err;
      }
      return;
    }
    case 'unpublish':
      await unpublishVm(await ctx.xs(), u.vm);
      return;
    case 'republish':
      await publishVm(await ctx.xs(), u.publication as unknown as VmPublication);
      return;
    case 'delete-clone-record':
      ctx.store.deleteClone(u.vm);
      return;
    case 'restore-clone-record': {
      const r = u.record as unknown as CloneRecord;
      ctx.store.putClone({
        vm: r.vm,
        cloneName: r.cloneName,
        cloneUuid: r.cloneUuid,
        cloneDomid: r.cloneDomid,
        state: r.state,
        kind: r.kind,
        sourceUuid: r.sourceUuid,
        snapshots: r.snapshots,
        requestedBy: r.requestedBy,
      });
      return;
    }
  }
}

/**
 * Undoes every step of `op` that may have acted, newest first, and ends it
 * rolled back. An undo action that fails is tried again (see
 * UNDO_RETRY_DELAYS_MS); if it still fails, the rollback stops there (the
 * older steps' undos may depend on it, e.g. a snapshot is removed only once
 * the domain using it is gone) and throws, leaving the operation running with
 * the steps still to undo, for recovery to finish.
 */
export async function rollBack(
  ctx: UndoContext,
  op: OperationRecord,
  reason: string,
): Promise<void> {
  const fresh = ctx.store.getOperation(op.id) ?? op;
  for (const step of [...fresh.steps].reverse()) {
    if (step.status === 'undone' || step.undo === null) continue;
    const actions = (Array.isArray(step.undo) ? step.undo : [step.undo]) as unknown as UndoAction[];
    for (const a of [...actions].reverse()) await retrying(ctx, () => runUndo(ctx, a));
    ctx.store.undoStep(op.id, step.seq);
  }
  ctx.store.finishOperation(op.id, 'rolled-back', reason.slice(0, 4000));
}

async function retrying(ctx: UndoContext, fn: () => Promise<void>): Promise<void> {
  for (const delay of ctx.undoRetryDelaysMs ?? UNDO_RETRY_DELAYS_MS) {
    try {
      return await fn();
    } catch {
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  await fn();
}
