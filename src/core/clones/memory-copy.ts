/**
 * The live path of a memory clone, as journaled steps: `live-save-original`
 * (zynclone-livesave copies memory while the original runs, then holds it
 * suspended), `snapshot` (the disks, at the instant of the memory image),
 * `resume-original`. The xl save -p path (save-original, snapshot,
 * unpause-original) is in create-memory.ts; this module says when the live
 * path cannot be used, so create-memory.ts falls back to it.
 */
import { rmSync } from 'node:fs';
import type { ZyncloneConfig } from '../config/schema.js';
import type { ZynclonePaths } from '../paths.js';
import type { Json } from '../state/types.js';
import type { SnapshotRecord } from '../storage/index.js';
import type { JournaledOperation, UndoAction } from './journal.js';
import {
  type HeldSave,
  LiveSaveFailed,
  type LiveSaveResult,
  type LiveSaver,
  installedHelper,
} from './live-save.js';

/** How a memory clone copied the original's memory, as `vmclone create --json` shows it. */
export interface MemoryCopy {
  readonly method: 'live' | 'save-pause';
  /** Why xl save -p was used (live path off, not installed, or not possible for this VM). */
  readonly fallback: string | null;
  /** The live copy's time while the original ran and in its final round, in ms. */
  readonly copyMs: number | null;
  /** libxc's rounds (the final, suspended one included) and that round's pages. */
  readonly rounds: number | null;
  readonly finalRoundPages: number | null;
}

/** The helper to use, or why the live path is off. */
export function liveHelperChoice(
  cfg: ZyncloneConfig,
  paths: ZynclonePaths,
): { helper: string } | { fallback: string } {
  if (!cfg.memory_clone_live) return { fallback: 'memory_clone_live is false' };
  const path = paths.resolve(cfg.live_save_helper);
  const helper = installedHelper(path);
  return helper === undefined
    ? { fallback: `the live save helper ${path} is not installed` }
    : { helper };
}

export interface LiveCopyContext {
  readonly vm: string;
  /** The original's UUID: the undo resumes only that domain. */
  readonly uuid: string | null;
  readonly saveFile: string;
  readonly helper: string;
  readonly saver: LiveSaver;
  /** Snapshots the disks (the original is suspended meanwhile). */
  readonly snapshot: () => Promise<SnapshotRecord[]>;
  readonly disks: number;
  readonly snapshotUndo: readonly UndoAction[];
  readonly timed: <T>(message: string, fn: () => Promise<T>) => Promise<T>;
}

export type LiveCopyOutcome =
  | {
      readonly records: SnapshotRecord[];
      /** The helper's pause (suspend request to end of resume), else measured here. */
      readonly pauseMs: number;
      readonly copy: MemoryCopy;
    }
  | { readonly fallback: string };

/**
 * Runs the live steps. A helper that fails before it suspended the original
 * (a PV guest without shadow paging, a copy error) leaves it running: its
 * step is undone at once and the outcome says why, so the caller falls back
 * to xl save -p in the same operation. A helper killed by a signal, or any
 * failure once the original is suspended, throws (the create rolls back).
 */
export async function copyMemoryLive(
  op: JournaledOperation,
  c: LiveCopyContext,
): Promise<LiveCopyOutcome> {
  let suspendedAt = 0;
  const stepUndo: UndoAction[] = [
    { action: 'resume-suspended', name: c.vm, uuid: c.uuid, helper: c.helper },
    { action: 'rm-file', path: c.saveFile },
  ];
  let held: HeldSave;
  try {
    held = await op.step(
      'live-save-original',
      { saveFile: c.saveFile, helper: c.helper },
      stepUndo,
      () =>
        c.timed(`copying ${c.vm}'s memory while it runs (live pre-copy)`, async () => {
          const h = await c.saver.save(c.vm, c.saveFile);
          suspendedAt = performance.now();
          return h;
        }),
    );
  } catch (err) {
    // A helper killed by a signal (an operator, the OOM killer) is not a
    // reason to pause the original for a full copy: roll back instead.
    if (!(err instanceof LiveSaveFailed) || err.suspended || err.helperCode === 'HELPER_KILLED') {
      throw err;
    }
    // The original never stopped: nothing but the partial image to undo.
    const step = op.refresh().steps.at(-1);
    rmSync(c.saveFile, { force: true });
    if (step !== undefined) op.store.undoStep(op.id, step.seq);
    return { fallback: `${err.message} [${err.helperCode}]` };
  }
  op.checkpoint('suspended');
  let records: SnapshotRecord[] = [];
  let result: LiveSaveResult;
  try {
    records = await op.step(
      'snapshot',
      { disks: c.disks },
      [...c.snapshotUndo],
      () => c.timed(`snapshotting the disks of ${c.vm} (suspended)`, c.snapshot),
      (r) => r as unknown as Json,
    );
  } finally {
    // The original must never stay suspended because the clone failed.
    result = await op.step(
      'resume-original',
      { name: c.vm },
      null,
      () => held.release(),
      (r) => r as unknown as Json,
    );
  }
  return {
    records,
    pauseMs: result.pauseMs ?? performance.now() - suspendedAt,
    copy: {
      method: 'live',
      fallback: null,
      copyMs: result.copyMs,
      rounds: result.rounds,
      finalRoundPages: result.finalRoundPages,
    },
  };
}

/**
 * libxc's default pre-copy policy (xc_sr_save.c, simple_precopy_policy) stops
 * after 5 live iterations whatever is still dirty; counted with the first
 * full pass and the final round, more rounds than this mean it hit that limit.
 */
const ROUND_LIMIT = 6;

/** How the live copy went, in words, for the progress output. */
export function describeLiveCopy(vm: string, pauseMs: number, c: MemoryCopy): string {
  const rounds =
    c.rounds === null || c.finalRoundPages === null
      ? ''
      : c.rounds < ROUND_LIMIT
        ? `; ${c.rounds} rounds, ${c.finalRoundPages} pages in the final one`
        : `; ${c.rounds} rounds: ${vm} dirtied memory as fast as it was copied, so the round limit ended the copy and the final round copied ${c.finalRoundPages} pages with ${vm} suspended`;
  return `${vm} was paused for ${pauseMs.toFixed(1)} ms (live pre-copy${rounds})`;
}
