/** The disks' snapshots of a create, for every kind: taken in plan order, undone together. */
import type { Json } from '../state/types.js';
import { type SnapshotRecord, execute as executeSnapshot } from '../storage/index.js';
import type { LifecycleContext } from './context.js';
import type { PlannedCreate } from './create-plan.js';
import type { UndoAction } from './journal.js';
import type { MemoryCopy } from './memory-copy.js';

/** What a create made, for its `record` step and its result. */
export interface MadeClone {
  readonly records: SnapshotRecord[];
  /** The clone's domid when it was started. */
  readonly domid: number | undefined;
  /** How long the original was paused (online and memory clones), in ms. */
  readonly originalPauseMs?: number;
  /** The part of the pause spent between the two xl commands, in ms. */
  readonly originalPauseInnerMs?: number;
  /** Memory clones: live pre-copy or xl save -p, and why. */
  readonly memoryCopy?: MemoryCopy;
}

/** Snapshots every planned disk; `originalState` is the original's while it happens. */
export async function snapshotDisks(
  ctx: LifecycleContext,
  c: PlannedCreate,
  originalState: 'stopped' | 'paused',
): Promise<SnapshotRecord[]> {
  const done: SnapshotRecord[] = [];
  for (const p of c.snapshots) {
    done.push(
      await executeSnapshot(p, {
        originalState,
        onProgress: (pr) =>
          ctx.o.progress?.({
            kind: 'progress',
            message: `copying ${pr.vdev}`,
            done: pr.bytesDone,
            total: pr.bytesTotal,
          }),
      }),
    );
  }
  return done;
}

export function snapshotUndo(c: PlannedCreate): UndoAction[] {
  return c.snapshots.map((p) => ({ action: 'remove-snapshot', plan: p as unknown as Json }));
}

export const recordsJson = (r: SnapshotRecord[]): Json => r as unknown as Json;
