/**
 * `create`: refusals and the plan (create-plan.ts), the clone's files, then
 * the kind's own steps (create-offline/online/memory.ts), then its record.
 * The journal's step names per kind are in steps.ts.
 */
import { mkdirSync } from 'node:fs';
import { cloneNameFor, effectiveConfig } from '../config/config.js';
import { writeFileAtomic } from '../config/index.js';
import type { VmName } from '../paths.js';
import type { CloneRecord, Json } from '../state/types.js';
import { type LifecycleContext, now } from './context.js';
import { createMemory } from './create-memory.js';
import { createOffline } from './create-offline.js';
import { createOnline } from './create-online.js';
import { type CreateOptions, type PlannedCreate, planCreate } from './create-plan.js';
import type { MadeClone } from './create-snapshots.js';
import type { JournaledOperation } from './journal.js';
import { lockedCloneConfig } from './lockdown.js';
import type { MemoryCopy } from './memory-copy.js';
import { cloneMetaFile, clonesDir, writeCloneMeta } from './meta.js';
import type { ClonePlan } from './plan.js';

export interface CreateResult {
  readonly clone: CloneRecord;
  readonly plan: ClonePlan;
  /**
   * How long the original was paused (online and memory clones), in ms: from
   * the pause command's return to the unpause command's return.
   */
  readonly originalPauseMs?: number;
  /** The part of the pause spent between the two xl commands (snapshotting), in ms. */
  readonly originalPauseInnerMs?: number;
  /** Memory clones: live pre-copy or xl save -p, and why. */
  readonly memoryCopy?: MemoryCopy;
  /** From the operation's start until the clone was ready, in ms. */
  readonly totalMs: number;
  readonly warnings: readonly string[];
}

const BY_KIND = { offline: createOffline, online: createOnline, memory: createMemory } as const;

export async function createClone(
  ctx: LifecycleContext,
  vm: VmName,
  opts: CreateOptions,
): Promise<CreateResult> {
  const eff = effectiveConfig(vm, ctx.paths);
  const cfg = eff.values;
  const kind = opts.kind ?? cfg.clone_kind;
  const start = opts.start ?? cfg.start_on_create;
  const cloneName = cloneNameFor(vm, cfg.clone_name_pattern);
  const params = { kind, start, cloneName } as Json;
  return ctx.operate(vm, 'create', params, async (op) => {
    const t0 = now();
    const c = await planCreate(ctx, vm, eff, {
      kind,
      start,
      cloneName,
      configFile: opts.configFile,
    });
    await writeFiles(ctx, op, c);
    const made = await BY_KIND[c.kind](ctx, op, c);
    const clone = await record(ctx, op, c, made);
    return {
      clone,
      plan: c.plan,
      ...(made.originalPauseMs === undefined ? {} : { originalPauseMs: made.originalPauseMs }),
      ...(made.originalPauseInnerMs === undefined
        ? {}
        : { originalPauseInnerMs: made.originalPauseInnerMs }),
      ...(made.memoryCopy === undefined ? {} : { memoryCopy: made.memoryCopy }),
      totalMs: now() - t0,
      warnings: c.plan.warnings,
    };
  });
}

/** Journals the plan, then writes the clone's xl config (already locked down) and metadata. */
async function writeFiles(
  ctx: LifecycleContext,
  op: JournaledOperation,
  c: PlannedCreate,
): Promise<void> {
  await op.step(
    'plan',
    {
      kind: c.kind,
      cloneName: c.meta.cloneName,
      cloneUuid: c.meta.cloneUuid,
      originalConfig: c.originalFile,
      originalState: c.originalState,
      snapshots: c.snapshots as unknown as Json,
      removedPeripherals: [...c.plan.removedPeripherals],
    },
    null,
    async () => {},
  );
  const { configFile } = c;
  const metaFile = cloneMetaFile(ctx.paths, c.meta.cloneName);
  await op.step(
    'write-config',
    { configFile, metaFile },
    [
      { action: 'rm-file', path: configFile },
      { action: 'rm-file', path: metaFile },
    ],
    async () => {
      mkdirSync(clonesDir(ctx.paths), { recursive: true });
      writeFileAtomic(configFile, lockedCloneConfig(c.plan.configText, configFile, c.lockdown));
      writeCloneMeta(ctx.paths, c.meta);
    },
  );
}

function record(
  ctx: LifecycleContext,
  op: JournaledOperation,
  c: PlannedCreate,
  made: MadeClone,
): Promise<CloneRecord> {
  const { meta } = c;
  return op.step(
    'record',
    { state: c.state, domid: made.domid ?? null },
    { action: 'delete-clone-record', vm: meta.vm },
    async () =>
      ctx.store.putClone({
        vm: meta.vm,
        cloneName: meta.cloneName,
        cloneUuid: meta.cloneUuid,
        cloneDomid: made.domid ?? null,
        state: c.state,
        kind: meta.kind,
        sourceUuid: c.originalUuid ?? '',
        snapshots: made.records as unknown as Json[],
        requestedBy: ctx.o.requestedBy,
      }),
  );
}
