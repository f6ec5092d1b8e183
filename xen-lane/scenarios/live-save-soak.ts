/**
 * Does a memory clone ever stop its original? Once, in a run of `live-save`
 * on a loaded host, the fast dirtier (a PVH guest rewriting 48 MiB without
 * pause) was found shut down for reboot after its live clone: Xen had logged
 * a triple fault. This soak boots the dirtier and clones it again and again,
 * under busy loops in dom0, with three ways of copying its memory in turn:
 * - live: `vmclone create --memory` through the live save helper (log-dirty
 *   rounds while it runs, then suspend and suspend_cancel resume);
 * - save-c: `xl save -c` (the same suspend and suspend_cancel resume, no
 *   live rounds), its image restored paused as the clone and destroyed;
 * - save-p: `vmclone create --memory` with memory_clone_live=false
 *   (`xl save -p`, then `xl unpause`).
 * After each: does the original run and beat on? If not, why (console, xl
 * dmesg, the helper's log); it is then booted again and the soak goes on.
 * Notes the clones and stops per method. Run only when named
 * (ZC_XEN_ONLY=live-save-soak): it clones for about 20 minutes.
 */
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import {
  assertTrue,
  destroyQuietly,
  domainByName,
  lastHeartbeat,
  sleep,
  writeGuestConfig,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario, ScenarioContext } from '../runner/types.js';
import { vmclone } from '../runner/zynclone-tools.js';
import { bootGuest, explainStopped, withLiveSaveRoot } from './live-save.js';

type Method = 'live' | 'save-c' | 'save-p';
/** Twice as many live clones as each control: the live path is the question. */
const ORDER: readonly Method[] = ['live', 'save-c', 'live', 'save-p'];
/** No new clone starts after this much of the scenario's time. */
const CLONING_MS = 20 * 60_000;
const VM = 'zc-soak';
const MEMORY_MB = 128;
const DIRTY_MIB = 48;

interface Tally {
  clones: number;
  /** The original found shut down, paused, gone or silent after a clone, by state. */
  stops: string[];
}

/** How the original is after a clone: 'running' once it beats on, else its state. */
async function originalAfter(vm: string): Promise<string> {
  const d = await domainByName(vm);
  if (!d) return 'gone';
  if (d.state.includes('s') || d.state.includes('p')) return d.state;
  const beat = await lastHeartbeat(vm);
  for (let waited = 0; waited < 30_000; waited += 500) {
    if ((await lastHeartbeat(vm)) > beat) return 'running';
    await sleep(500);
  }
  const again = await domainByName(vm);
  return again ? `${again.state} (silent 30 s)` : 'gone';
}

async function cloneOnce(ctx: ScenarioContext, root: string, method: Method): Promise<string> {
  if (method === 'save-c') {
    const image = join(ctx.workDir, 'soak.save');
    await xl(['save', '-c', VM, image], { timeoutMs: 900_000, log: ctx.log });
    // As vmclone does after a save: the image restored, paused, as a clone.
    const cfg = await writeGuestConfig(join(root, 'etc/xen'), {
      name: `${VM}-c`,
      memoryMb: MEMORY_MB,
      type: 'pvh',
    });
    await xl(['restore', '-p', cfg, image], { timeoutMs: 600_000, log: ctx.log });
    await destroyQuietly(`${VM}-c`, ctx.log);
    await rm(image, { force: true });
    return 'xl save -c';
  }
  const created = await vmclone(root, ['create', VM, '--memory', '--json'], { log: ctx.log });
  const copy = (JSON.parse(created.stdout) as { memoryCopy: { method: string } | null }).memoryCopy;
  await vmclone(root, ['remove', VM], { log: ctx.log });
  return copy?.method ?? 'none';
}

/** Busy loops in dom0, one per vCPU: the host was loaded when the original stopped. */
function loadDom0(ctx: ScenarioContext): () => void {
  const loops = Array.from({ length: availableParallelism() }, () =>
    spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }),
  );
  ctx.note('dom0_busy_loops', loops.length);
  return () => {
    for (const l of loops) l.kill('SIGKILL');
  };
}

async function soak(ctx: ScenarioContext, root: string) {
  const started = Date.now();
  const tally: Record<Method, Tally> = {
    live: { clones: 0, stops: [] },
    'save-c': { clones: 0, stops: [] },
    'save-p': { clones: 0, stops: [] },
  };
  let stopLoad = () => {};
  try {
    await bootGuest(ctx, root, VM, { memoryMb: MEMORY_MB, dirtyMiB: DIRTY_MIB });
    stopLoad = loadDom0(ctx);
    for (let i = 0; Date.now() - started < CLONING_MS; i++) {
      const method = ORDER[i % ORDER.length]!;
      const live = method === 'save-p' ? 'false' : 'true';
      await vmclone(root, ['config', VM, '--set', `memory_clone_live=${live}`], { log: ctx.log });
      ctx.log(`soak clone ${i + 1} (${method}) at ${new Date().toISOString()}`);
      const how = await cloneOnce(ctx, root, method);
      const state = await originalAfter(VM);
      tally[method].clones++;
      ctx.log(`soak clone ${i + 1} (${method}, copied by ${how}): original ${state}`);
      if (state === 'running') continue;
      tally[method].stops.push(state);
      await explainStopped(ctx, root, VM);
      await destroyQuietly(VM, ctx.log);
      await bootGuest(ctx, root, VM, { memoryMb: MEMORY_MB, dirtyMiB: DIRTY_MIB });
    }
  } finally {
    stopLoad();
    for (const [method, t] of Object.entries(tally)) {
      ctx.note(`${method}_clones`, t.clones);
      ctx.note(`${method}_stops`, t.stops.length ? t.stops.join(' ') : 0);
    }
    await destroyQuietly(`${VM}-clone`, ctx.log);
    await destroyQuietly(`${VM}-c`, ctx.log);
    await destroyQuietly(VM, ctx.log);
  }
  const stops = Object.entries(tally).filter(([, t]) => t.stops.length > 0);
  assertTrue(
    stops.length === 0,
    'LANE_ORIG_STOPPED',
    `originals stopped after clones: ${stops.map(([m, t]) => `${m} ${t.stops.length}/${t.clones}`).join(', ')}`,
  );
}

const scenario: Scenario = {
  name: 'live-save-soak',
  title: 'the fast dirtier cloned again and again: live, xl save -c, xl save -p; stops per method',
  timeoutMs: 1_800_000,
  onlyWhenNamed: true,
  run: (ctx) => withLiveSaveRoot(ctx, (root) => soak(ctx, root)),
};

export default scenario;
