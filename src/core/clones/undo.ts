/**
 * Undo actions, as the journal stores them, and the rollback that plays an
 * operation's journal backwards. Each action is safe to repeat and never
 * touches what ZynClone did not make: a domain is destroyed or unpaused only
 * if it has the recorded UUID.
 */
import { rmSync } from 'node:fs';
import type { XlDriver } from '../../xen/index.js';
import type { StateStore } from '../state/store.js';
import type { CloneRecord, OperationRecord } from '../state/types.js';
import { parseSnapshotPlan, remove as removeSnapshot } from '../storage/index.js';
import type { UndoAction } from './journal.js';
import { type LiveSaver, helperLiveSaver } from './live-save.js';
import { type PublishClient, type VmPublication, publishVm, unpublishVm } from './publish.js';

export interface UndoContext {
  readonly xl: Pick<XlDriver, 'list' | 'listLong' | 'unpause' | 'destroy'>;
  readonly store: StateStore;
  readonly xs: () => Promise<PublishClient>;
  /** The live saver of a helper path; default: run that helper. */
  readonly liveSaver?: ((helper: string) => LiveSaver) | undefined;
}

/** The UUID of domain `name`, or undefined when there is no such domain. */
export async function domainUuid(
  xl: Pick<XlDriver, 'listLong'>,
  name: string,
): Promise<string | undefined> {
  try {
    const [d] = await xl.listLong(name);
    return d?.uuid;
  } catch (err) {
    if ((err as { code?: string }).code === 'XL_NO_SUCH_DOMAIN') return undefined;
    throw err;
  }
}

export async function runUndo(ctx: UndoContext, u: UndoAction): Promise<void> {
  switch (u.action) {
    case 'rm-file':
      rmSync(u.path, { force: true });
      return;
    case 'unpause': {
      const d = (await ctx.xl.list()).find((x) => x.name === u.name);
      if (d === undefined || !d.flags.paused) return;
      if (u.uuid !== null && (await domainUuid(ctx.xl, u.name)) !== u.uuid) return;
      await ctx.xl.unpause(u.name);
      return;
    }
    case 'resume-suspended': {
      const d = (await ctx.xl.list()).find((x) => x.name === u.name);
      if (d === undefined || !d.flags.shutdown) return;
      if (u.uuid !== null && (await domainUuid(ctx.xl, u.name)) !== u.uuid) return;
      await (ctx.liveSaver ?? helperLiveSaver)(u.helper).resume(u.name);
      return;
    }
    case 'remove-snapshot':
      await removeSnapshot(parseSnapshotPlan(u.plan));
      return;
    case 'destroy-domain': {
      const uuid = await domainUuid(ctx.xl, u.name);
      // Never destroy a domain we did not make (same name, other UUID).
      if (uuid === undefined || uuid !== u.uuid) return;
      await ctx.xl.destroy(u.name);
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

/** Undoes every step of `op` that may have acted, newest first, and ends it rolled back. */
export async function rollBack(
  ctx: UndoContext,
  op: OperationRecord,
  reason: string,
): Promise<void> {
  const fresh = ctx.store.getOperation(op.id) ?? op;
  for (const step of [...fresh.steps].reverse()) {
    if (step.status === 'undone' || step.undo === null) continue;
    const actions = (Array.isArray(step.undo) ? step.undo : [step.undo]) as unknown as UndoAction[];
    for (const a of [...actions].reverse()) await runUndo(ctx, a);
    ctx.store.undoStep(op.id, step.seq);
  }
  ctx.store.finishOperation(op.id, 'rolled-back', reason.slice(0, 4000));
}
