/**
 * A memory clone. Live (memory-copy.ts): zynclone-livesave copies memory
 * while the original runs and holds it suspended for the final round, the
 * disks are snapshotted, the original resumes. Otherwise (the live path off,
 * not installed or not possible for the VM) `xl save -p` leaves the original
 * paused, its disks are snapshotted, the original is unpaused (always, also
 * when the snapshot failed). Either way the clone is restored from the image
 * under its new name and UUID, paused until its lockdown is acknowledged.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import type { SnapshotRecord } from '../storage/index.js';
import { bootClone } from './boot.js';
import { type LifecycleContext, now } from './context.js';
import type { PlannedCreate } from './create-plan.js';
import { type MadeClone, recordsJson, snapshotDisks, snapshotUndo } from './create-snapshots.js';
import type { JournaledOperation, UndoAction } from './journal.js';
import { helperLiveSaver } from './live-save.js';
import {
  type MemoryCopy,
  copyMemoryLive,
  describeLiveCopy,
  liveHelperChoice,
} from './memory-copy.js';
import { publishVm } from './publish.js';

export async function createMemory(
  ctx: LifecycleContext,
  op: JournaledOperation,
  c: PlannedCreate,
): Promise<MadeClone> {
  const { vm, saveFile } = c;
  mkdirSync(dirname(saveFile), { recursive: true });
  const { records, originalPauseMs, memoryCopy } = await copyMemory(ctx, op, c);
  await op.step('publish', { generation: 'next' }, { action: 'unpublish', vm }, async () =>
    publishVm(await ctx.xs(), c.lockdown.publication),
  );
  if (!c.start) return { records, domid: undefined, originalPauseMs, memoryCopy };
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
  return { records, domid, originalPauseMs, memoryCopy };
}

interface CopiedMemory {
  readonly records: SnapshotRecord[];
  readonly originalPauseMs: number;
  readonly memoryCopy: MemoryCopy;
}

/** The original's memory in the save image and its disks snapshotted, live when possible. */
async function copyMemory(
  ctx: LifecycleContext,
  op: JournaledOperation,
  c: PlannedCreate,
): Promise<CopiedMemory> {
  const { vm } = c;
  const choice = liveHelperChoice(c.config, ctx.paths);
  const live =
    'helper' in choice
      ? await copyMemoryLive(op, {
          vm,
          uuid: c.originalUuid ?? null,
          saveFile: c.saveFile,
          helper: choice.helper,
          saver: (ctx.o.liveSaver ?? helperLiveSaver)(choice.helper),
          snapshot: () => snapshotDisks(ctx, c, 'paused'),
          disks: c.snapshots.length,
          snapshotUndo: snapshotUndo(c),
          timed: (message, fn) => ctx.timed(message, fn),
        })
      : choice;
  if ('records' in live) {
    ctx.emit('info', describeLiveCopy(vm, live.pauseMs, live.copy));
    return { records: live.records, originalPauseMs: live.pauseMs, memoryCopy: live.copy };
  }
  ctx.emit('info', `no live memory copy: ${live.fallback}; using xl save -p`);
  const { records, originalPauseMs } = await saveAndPause(ctx, op, c);
  ctx.emit('info', `${vm} was paused for ${originalPauseMs.toFixed(1)} ms (xl save -p)`);
  return {
    records,
    originalPauseMs,
    memoryCopy: {
      method: 'save-pause',
      fallback: live.fallback,
      copyMs: null,
      rounds: null,
      finalRoundPages: null,
    },
  };
}

/** `xl save -p`, the disks' snapshots in that pause, then the original unpaused. */
async function saveAndPause(
  ctx: LifecycleContext,
  op: JournaledOperation,
  c: PlannedCreate,
): Promise<{ records: SnapshotRecord[]; originalPauseMs: number }> {
  const { vm, saveFile } = c;
  const unpauseOriginal: UndoAction = { action: 'unpause', name: vm, uuid: c.originalUuid ?? null };
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
  return { records, originalPauseMs };
}
