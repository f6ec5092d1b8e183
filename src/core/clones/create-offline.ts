/**
 * An offline clone: the original is shut down, its disks are snapshotted,
 * the clone cold-boots. An online clone, once its disks are snapshotted
 * inside the original's pause, comes up the same way (`publishAndBoot`).
 */
import { bootClone } from './boot.js';
import type { LifecycleContext } from './context.js';
import type { PlannedCreate } from './create-plan.js';
import { type MadeClone, recordsJson, snapshotDisks, snapshotUndo } from './create-snapshots.js';
import type { JournaledOperation } from './journal.js';
import { publishVm } from './publish.js';

export async function createOffline(
  ctx: LifecycleContext,
  op: JournaledOperation,
  c: PlannedCreate,
): Promise<MadeClone> {
  const records = await op.step(
    'snapshot',
    { disks: c.snapshots.length },
    snapshotUndo(c),
    () =>
      ctx.timed(`snapshotting ${c.snapshots.length} disk(s) of ${c.vm}`, () =>
        snapshotDisks(ctx, c, 'stopped'),
      ),
    recordsJson,
  );
  return { records, domid: await publishAndBoot(ctx, op, c) };
}

/** Publishes the clone's lockdown and, when it is to run, cold-boots it. Returns its domid. */
export async function publishAndBoot(
  ctx: LifecycleContext,
  op: JournaledOperation,
  c: PlannedCreate,
): Promise<number | undefined> {
  await op.step(
    'publish',
    { generation: 'next', state: c.state },
    { action: 'unpublish', vm: c.vm },
    async () => publishVm(await ctx.xs(), c.lockdown.publication),
  );
  if (!c.start) return undefined;
  return bootClone(
    ctx,
    op,
    c.meta,
    c.lockdown,
    () => ctx.xl.create(c.configFile, { paused: true }),
    'create-domain',
  );
}
