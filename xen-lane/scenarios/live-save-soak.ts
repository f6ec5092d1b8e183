/**
 * Does a memory clone ever stop its original, or start a clone that dies?
 * Once, in a run of `live-save` on a loaded host, the fast dirtier (a PVH
 * guest rewriting 48 MiB without pause) was found shut down for reboot after
 * its live clone: Xen had logged a triple fault. This soak boots the dirtier
 * and clones it again and again, under busy loops in dom0, with four ways
 * of copying its memory in turn:
 * - live: `vmclone create --memory` through the live save helper (log-dirty
 *   rounds while it runs, then suspend and suspend_cancel resume);
 * - save-c: `xl save -c` (the same suspend and suspend_cancel resume, no
 *   live rounds), its image restored as the clone;
 * - live-x2: the live save helper alone (the same live save and resume),
 *   its image restored twice, one clone after the other;
 * - save-p: `vmclone create --memory` with memory_clone_live=false
 *   (`xl save -p`, then `xl unpause`).
 * After each, both run side by side for a while: does each beat on, and did
 * Xen log a triple fault or a domain crash (`xl dmesg -c` around each
 * clone, by domid)? A second dirtier runs beside them all along and is
 * never cloned: what the emulated CPU does to a guest nothing is done to.
 * A stopped domain is kept (on_reboot preserve) and explained (console,
 * Xen's log, its VMCB, the helper's log), then the original or the idle
 * guest is booted again and the soak goes on. Notes per method the clones,
 * the stopped originals and clones, and Xen's faults; the same for the
 * idle guest. Run only when named (ZC_XEN_ONLY=live-save-soak): it clones for
 * about 20 minutes.
 */
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import {
  assertTrue,
  destroyQuietly,
  domainByName,
  listDomains,
  readConsole,
  run,
  sleep,
  writeGuestConfig,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario, ScenarioContext } from '../runner/types.js';
import { vmclone } from '../runner/zynclone-tools.js';
import { bootGuest, explainStopped, helperPath, withLiveSaveRoot } from './live-save.js';

/**
 * live-x2 is live's control for the clone: the helper saves the original
 * live (and resumes it, as for live), and the image is restored twice, one
 * clone after the other. A fault that comes with the image repeats.
 */
type Method = 'live' | 'save-c' | 'live-x2' | 'save-p';
/** Two live saves for each control: the faults seen came after live saves. */
const ORDER: readonly Method[] = ['live-x2', 'save-c', 'live', 'live-x2', 'save-p', 'live'];
/** No new clone starts after this much of the scenario's time. */
const CLONING_MS = 20 * 60_000;
const VM = 'zc-soak';
/** The same guest, booted beside the original and never cloned: the emulator's own rate. */
const IDLE = 'zc-soak-idle';
const MEMORY_MB = 128;
const DIRTY_MIB = 48;
/** How long both domains run side by side after each clone (the faults seen came 1.5-3 s after). */
const WATCH_MS = 10_000;

interface Tally {
  clones: number;
  /** The original found stopped (shut down, paused, gone or silent) after a clone: its state. */
  originalStops: string[];
  /** The clone that did not run on after its create: its state. */
  cloneStops: string[];
  /** Xen's "Triple fault" and "domain_crash" lines during the clone, with whose domain. */
  xenFaults: string[];
}

/** How `vm` is: 'running' once it prints a heartbeat after console offset `after`, else why not. */
async function runsOn(vm: string, after: number, timeoutMs: number): Promise<string> {
  const d = await domainByName(vm);
  if (!d) return 'gone';
  if (d.state.includes('s') || d.state.includes('p')) return d.state;
  for (let waited = 0; waited < timeoutMs; waited += 500) {
    const text = (await readConsole(vm)).slice(after);
    // xl restarts a vmclone clone that rebooted (on_reboot's default): it boots afresh.
    if (text.includes('ZC-GUEST-BOOT')) return `${d.state}, booted afresh`;
    if (/ZC-GUEST-HEARTBEAT \d+/.test(text)) return 'running';
    await sleep(500);
  }
  const again = await domainByName(vm);
  return again ? `${again.state} (silent ${timeoutMs / 1000} s)` : 'gone';
}

/** Xen's log since the last call (`xl dmesg -c` reads and clears it). */
async function xenLogSinceLast(): Promise<string> {
  return (await xl(['dmesg', '-c'], { allowFail: true })).stdout;
}

/** Xen's triple faults and domain crashes in `log`, each with whose domain it was. */
function faultsIn(log: string, whose: Map<number | undefined, string>): string[] {
  return log
    .split('\n')
    .filter((l) => /Triple fault|domain_crash|crashed/.test(l))
    .map((l) => {
      const domid = Number(/\bd(\d+)v\d+|Dom(\d+)|[Dd]omain (\d+)/.exec(l)?.slice(1).find(Boolean));
      return `${whose.get(domid) ?? `d${domid}`}: ${l.trim()}`;
    });
}

/** The clone's name: vmclone's pattern, or the one this soak restores xl's images under. */
const cloneName = (method: Method) =>
  method === 'live' || method === 'save-p' ? `${VM}-clone` : `${VM}-c`;

/** Starts a clone from the image; one that reboots is kept as it is (its VMCB for explainStopped). */
async function restoreImage(ctx: ScenarioContext, root: string, image: string) {
  const cfg = await writeGuestConfig(join(root, 'etc/xen'), {
    name: `${VM}-c`,
    memoryMb: MEMORY_MB,
    type: 'pvh',
    onReboot: 'preserve',
  });
  await xl(['restore', cfg, image], { timeoutMs: 600_000, log: ctx.log });
}

/**
 * Copies the original's memory by `method` and starts the clone from it;
 * returns how it copied, and the image when it is kept for a second clone.
 */
async function cloneOnce(
  ctx: ScenarioContext,
  root: string,
  method: Method,
): Promise<{ how: string; image?: string }> {
  const image = join(ctx.workDir, 'soak.save');
  if (method === 'save-c' || method === 'live-x2') {
    if (method === 'save-c') {
      await xl(['save', '-c', VM, image], { timeoutMs: 900_000, log: ctx.log });
    } else {
      await run(helperPath(root), [VM, image], { timeoutMs: 900_000, log: ctx.log });
    }
    await restoreImage(ctx, root, image);
    if (method === 'live-x2') return { how: 'the live save helper', image };
    await rm(image, { force: true });
    return { how: 'xl save -c' };
  }
  const live = method === 'live' ? 'true' : 'false';
  await vmclone(root, ['config', VM, '--set', `memory_clone_live=${live}`], { log: () => {} });
  const created = await vmclone(root, ['create', VM, '--memory', '--json'], { log: ctx.log });
  const copy = (JSON.parse(created.stdout) as { memoryCopy: { method: string } | null }).memoryCopy;
  return { how: copy?.method ?? 'none' };
}

async function removeClone(ctx: ScenarioContext, root: string, method: Method) {
  if (cloneName(method) === `${VM}-clone`) await vmclone(root, ['remove', VM], { log: ctx.log });
  // xl restarts a vmclone clone that rebooted (on_reboot's default) under the same name.
  await destroyQuietly(cloneName(method), ctx.log);
  await destroyPreserved(ctx);
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

const bootSoakGuest = (ctx: ScenarioContext, root: string, name = VM) =>
  bootGuest(ctx, root, name, { memoryMb: MEMORY_MB, dirtyMiB: DIRTY_MIB, onReboot: 'preserve' });

/** The never-cloned guest: Xen's faults of its domain, and its stops. */
interface Idle {
  domid: number | undefined;
  faults: string[];
  stops: string[];
}

/** Sorts `faults` (from faultsIn) into the idle guest's and the method's. */
function countFaults(faults: string[], tally: Tally, idle: Idle) {
  for (const f of faults) (f.startsWith('idle') ? idle.faults : tally.xenFaults).push(f);
}

/**
 * Destroys the domains xl kept and renamed (on_reboot "preserve" renames a
 * domain whose xl daemon still watches it, with a timestamp suffix).
 */
async function destroyPreserved(ctx: ScenarioContext) {
  for (const d of await listDomains()) {
    if (d.name.startsWith(VM) && /\d{8}T\d{4}/.test(d.name)) await destroyQuietly(d.name, ctx.log);
  }
}

/** Boots the idle guest again if it stopped (after saying why). */
async function checkIdle(ctx: ScenarioContext, root: string, idle: Idle) {
  const d = await domainByName(IDLE);
  if (d && !d.state.includes('s') && !d.state.includes('p')) return;
  idle.stops.push(d?.state ?? 'gone');
  await explainStopped(ctx, root, IDLE);
  await destroyQuietly(IDLE, ctx.log);
  await destroyPreserved(ctx);
  await bootSoakGuest(ctx, root, IDLE);
  idle.domid = (await domainByName(IDLE))?.domid;
}

/** One clone by `method`, both domains watched for WATCH_MS; the clone removed. */
async function soakOnce(
  ctx: ScenarioContext,
  root: string,
  method: Method,
  tally: Tally,
  idle: Idle,
) {
  const clone = cloneName(method);
  const original = await domainByName(VM);
  const cloneOffset = (await readConsole(clone)).length;
  await xenLogSinceLast();
  const { how, image } = await cloneOnce(ctx, root, method);
  const cloneDomid = (await domainByName(clone))?.domid;
  await sleep(WATCH_MS);
  const cloneState = await runsOn(clone, cloneOffset, 60_000);
  const originalState = await runsOn(VM, (await readConsole(VM)).length, 30_000);
  const xenLog = await xenLogSinceLast();
  tally.clones++;
  const faults = faultsIn(
    xenLog,
    new Map([
      [original?.domid, 'original'],
      [cloneDomid, 'clone'],
      [idle.domid, 'idle'],
    ]),
  );
  countFaults(faults, tally, idle);
  ctx.log(
    `soak ${method} clone ${tally.clones} (copied by ${how}): original ${originalState}, clone ${cloneState}${faults.length ? `; Xen: ${faults.join(' | ')}` : ''}`,
  );
  if (faults.length) ctx.log(`Xen's log during this clone, its end:\n${xenLog.slice(-5000)}`);
  if (cloneState !== 'running') {
    tally.cloneStops.push(cloneState);
    await explainStopped(ctx, root, clone);
  }
  await removeClone(ctx, root, method);
  if (image) {
    const firstStopped = faults.some((f) => f.startsWith('clone')) || cloneState !== 'running';
    await sameImageAgain(ctx, root, image, tally, idle, firstStopped);
    await rm(image, { force: true });
  }
  if (originalState !== 'running') {
    tally.originalStops.push(originalState);
    await explainStopped(ctx, root, VM);
    await destroyQuietly(VM, ctx.log);
    await destroyPreserved(ctx);
    await bootSoakGuest(ctx, root);
  }
}

/** live-x2's second clone from the same image, watched alone; its stops counted as clone stops. */
async function sameImageAgain(
  ctx: ScenarioContext,
  root: string,
  image: string,
  tally: Tally,
  idle: Idle,
  firstStopped: boolean,
) {
  const clone = `${VM}-c`;
  const offset = (await readConsole(clone)).length;
  await xenLogSinceLast();
  await restoreImage(ctx, root, image);
  const domid = (await domainByName(clone))?.domid;
  await sleep(WATCH_MS);
  const state = await runsOn(clone, offset, 60_000);
  const faults = faultsIn(
    await xenLogSinceLast(),
    new Map([
      [domid, 'clone (same image)'],
      [idle.domid, 'idle'],
    ]),
  );
  countFaults(faults, tally, idle);
  ctx.log(
    `soak live-x2 clone ${tally.clones}, the same image again (the first clone ${firstStopped ? 'stopped' : 'ran'}): clone ${state}${faults.length ? `; Xen: ${faults.join(' | ')}` : ''}`,
  );
  if (state !== 'running') {
    tally.cloneStops.push(`${state} (same image)`);
    await explainStopped(ctx, root, clone);
  }
  await destroyQuietly(clone, ctx.log);
  await destroyPreserved(ctx);
}

async function soak(ctx: ScenarioContext, root: string) {
  const started = Date.now();
  const fresh = (): Tally => ({ clones: 0, originalStops: [], cloneStops: [], xenFaults: [] });
  const tally: Record<Method, Tally> = {
    live: fresh(),
    'save-c': fresh(),
    'live-x2': fresh(),
    'save-p': fresh(),
  };
  const idle: Idle = { domid: undefined, faults: [], stops: [] };
  let stopLoad = () => {};
  let idleSince = Date.now();
  try {
    await bootSoakGuest(ctx, root);
    await bootSoakGuest(ctx, root, IDLE);
    idle.domid = (await domainByName(IDLE))?.domid;
    idleSince = Date.now();
    stopLoad = loadDom0(ctx);
    for (let i = 0; Date.now() - started < CLONING_MS; i++) {
      const method = ORDER[i % ORDER.length]!;
      ctx.log(`soak clone ${i + 1} (${method}) at ${new Date().toISOString()}`);
      await soakOnce(ctx, root, method, tally[method], idle);
      await checkIdle(ctx, root, idle);
    }
  } finally {
    stopLoad();
    ctx.note('idle_minutes', Math.round((Date.now() - idleSince) / 60_000));
    ctx.note('idle_xen_faults', idle.faults.join(' | ') || 0);
    ctx.note('idle_stops', idle.stops.join(' ') || 0);
    for (const [method, t] of Object.entries(tally)) {
      ctx.note(`${method}_clones`, t.clones);
      ctx.note(`${method}_original_stops`, t.originalStops.join(' ') || 0);
      ctx.note(`${method}_clone_stops`, t.cloneStops.join(' ') || 0);
      ctx.note(`${method}_xen_faults`, t.xenFaults.join(' | ') || 0);
    }
    for (const m of ORDER) await destroyQuietly(cloneName(m), ctx.log);
    await destroyQuietly(VM, ctx.log);
    await destroyQuietly(IDLE, ctx.log);
    await destroyPreserved(ctx);
  }
  const bad = Object.entries(tally)
    .filter(([, t]) => t.originalStops.length + t.cloneStops.length + t.xenFaults.length > 0)
    .map(
      ([m, t]) =>
        `${m}: ${t.originalStops.length} originals, ${t.cloneStops.length} clones of ${t.clones}, ${t.xenFaults.length} Xen faults`,
    );
  if (idle.faults.length + idle.stops.length > 0) {
    bad.push(`never cloned: ${idle.stops.length} stops, ${idle.faults.length} Xen faults`);
  }
  assertTrue(bad.length === 0, 'LANE_SOAK_STOPS', `stops: ${bad.join('; ')}`);
}

const scenario: Scenario = {
  name: 'live-save-soak',
  title: 'the fast dirtier cloned again and again: live, xl save -c, xl save -p; stops per method',
  timeoutMs: 1_800_000,
  onlyWhenNamed: true,
  run: (ctx) => withLiveSaveRoot(ctx, (root) => soak(ctx, root)),
};

export default scenario;
