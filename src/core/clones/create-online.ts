/**
 * An online, disk-only clone: the original is paused only while its disks
 * are snapshotted copy-on-write, then comes up as an offline clone does.
 */
import { type LifecycleContext, now } from './context.js';
import { publishAndBoot } from './create-offline.js';
import type { PlannedCreate } from './create-plan.js';
import { type MadeClone, recordsJson, snapshotDisks, snapshotUndo } from './create-snapshots.js';
import type { JournaledOperation, UndoAction } from './journal.js';

export async function createOnline(
  ctx: LifecycleContext,
  op: JournaledOperation,
  c: PlannedCreate,
): Promise<MadeClone> {
  const { vm } = c;
  let originalPauseMs: number | undefined;
  let originalPauseInnerMs: number | undefined;
  // One journal write before the pause and none inside it keeps the pause short.
  const wePause = c.originalState === 'running';
  const undo: UndoAction[] = wePause
    ? [{ action: 'unpause', name: vm, uuid: c.originalUuid ?? null }, ...snapshotUndo(c)]
    : snapshotUndo(c);
  const records = await op.step(
    'pause-snapshot',
    { pause: wePause, disks: c.snapshots.length },
    undo,
    () =>
      ctx.timed(`pausing ${vm} and snapshotting ${c.snapshots.length} disk(s)`, async () => {
        if (wePause) {
          await ctx.xl.pause(vm);
          op.checkpoint('paused');
        }
        const tp = now();
        try {
          return await snapshotDisks(ctx, c, 'paused');
        } finally {
          if (wePause) {
            originalPauseInnerMs = now() - tp;
            await ctx.xl.unpause(vm);
            originalPauseMs = now() - tp;
          }
        }
      }),
    recordsJson,
  );
  if (originalPauseMs !== undefined) {
    ctx.emit('info', `${vm} was paused for ${originalPauseMs.toFixed(1)} ms`);
  }
  return {
    records,
    domid: await publishAndBoot(ctx, op, c),
    ...(originalPauseMs === undefined ? {} : { originalPauseMs }),
    ...(originalPauseInnerMs === undefined ? {} : { originalPauseInnerMs }),
  };
}
