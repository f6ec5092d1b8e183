/**
 * A memory clone: `xl save -p` leaves the original paused, its disks are
 * snapshotted, the original is unpaused (always, also when the snapshot
 * failed), and the clone is restored from the image under its new name and
 * UUID, paused until its lockdown is acknowledged.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import type { SnapshotRecord } from '../storage/index.js';
import { bootClone } from './boot.js';
import { type LifecycleContext, now } from './context.js';
import type { PlannedCreate } from './create-plan.js';
import { type MadeClone, recordsJson, snapshotDisks, snapshotUndo } from './create-snapshots.js';
import type { JournaledOperation, UndoAction } from './journal.js';
import { publishVm } from './publish.js';

export async function createMemory(
  ctx: LifecycleContext,
  op: JournaledOperation,
  c: PlannedCreate,
): Promise<MadeClone> {
  const { vm, saveFile } = c;
  const unpauseOriginal: UndoAction = { action: 'unpause', name: vm, uuid: c.originalUuid ?? null };
  mkdirSync(dirname(saveFile), { recursive: true });
  let pausedAt = 0;
  let originalPauseMs = 0;
  await op.step(
    'save-original',
    { saveFile },
    [unpauseOriginal, { action: 'rm-file', path: saveFile }],
    () =>
      ctx.timed(`saving ${vm}'s memory (xl save -p)`, async () => {
        pausedAt = now();
        await ctx.xl.save(vm, saveFile, { paused: true });
      }),
  );
  let records: SnapshotRecord[];
  try {
    records = await op.step(
      'snapshot',
      { disks: c.snapshots.length },
      snapshotUndo(c),
      () =>
        ctx.timed(`snapshotting ${c.snapshots.length} disk(s) of ${vm}`, () =>
          snapshotDisks(ctx, c, 'paused'),
        ),
      recordsJson,
    );
  } finally {
    // The original must never stay paused because the clone failed.
    await op.step('unpause-original', { name: vm }, null, async () => {
      await ctx.undoAction(unpauseOriginal);
      originalPauseMs = now() - pausedAt;
    });
  }
  ctx.emit('info', `${vm} was paused for ${originalPauseMs.toFixed(1)} ms`);
  await op.step('publish', { generation: 'next' }, { action: 'unpublish', vm }, async () =>
    publishVm(await ctx.xs(), c.lockdown.publication),
  );
  if (!c.start) return { records, domid: undefined, originalPauseMs };
  const domid = await bootClone(
    ctx,
    op,
    c.meta,
    c.lockdown,
    () => ctx.xl.restore(saveFile, { paused: true, cfgPath: c.configFile }),
    'restore-domain',
  );
  await op.step('remove-save-image', { saveFile }, null, async () =>
    rmSync(saveFile, { force: true }),
  );
  return { records, domid, originalPauseMs };
}
