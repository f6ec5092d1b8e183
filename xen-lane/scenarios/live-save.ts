/**
 * The live pre-copy helper (helpers/livesave) against real Xen, side by side
 * with `xl save -p` on the same guest, at 128 and 512 MiB: the original's
 * pause each way, the total clone time (save + `xl restore` under a new
 * name), and the restored clone continuing the heartbeat from the final
 * pause instead of booting. Then the helper is killed mid-copy: the original
 * must keep running, not suspended and not paused.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  LaneError,
  assertTrue,
  destroyQuietly,
  domainByName,
  lastHeartbeat,
  readConsole,
  run,
  sleep,
  waitConsole,
  waitFor,
  writeGuestConfig,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario, ScenarioContext } from '../runner/types.js';

const LIVESAVE = '/usr/local/bin/zynclone-livesave';

interface LiveResult {
  event: string;
  pauseMs: number | null;
  copyMs: number;
  totalMs: number;
}

/** The helper's last JSON line (its result or its error). */
function lastEvent(stdout: string): LiveResult & { code?: string; message?: string } {
  const lines = stdout.trim().split('\n').filter(Boolean);
  const last = lines.at(-1);
  if (!last) throw new LaneError('LANE_LIVESAVE_OUTPUT', 'zynclone-livesave printed nothing');
  return JSON.parse(last) as LiveResult;
}

async function restoreClone(ctx: ScenarioContext, file: string, clone: string, memoryMb: number) {
  const cfg = await writeGuestConfig(ctx.workDir, { name: clone, memoryMb, type: 'pvh' });
  return xl(['restore', cfg, file], { timeoutMs: 240_000, log: ctx.log });
}

/** The clone resumed (no boot line) and beats on from at least `fromBeat`. */
async function assertResumed(ctx: ScenarioContext, clone: string, fromBeat: number) {
  const first = await waitFor(
    `${clone} to beat`,
    async () => {
      const m = /ZC-GUEST-HEARTBEAT (\d+)/.exec(await readConsole(clone));
      return m ? Number(m[1]) : undefined;
    },
    { timeoutMs: 60_000, signal: ctx.signal },
  );
  const text = await readConsole(clone);
  assertTrue(!text.includes('ZC-GUEST-BOOT'), 'LANE_CLONE_REBOOTED', `${clone} booted afresh`);
  assertTrue(
    first >= fromBeat,
    'LANE_CLONE_OLD_STATE',
    `${clone} first beat ${first} is older than the original's ${fromBeat} before the save`,
  );
  return first;
}

async function assertOriginalRuns(ctx: ScenarioContext, vm: string) {
  const d = await domainByName(vm);
  assertTrue(d, 'LANE_ORIG_GONE', `${vm} is gone`);
  assertTrue(
    !d.state.includes('p') && !d.state.includes('s'),
    'LANE_ORIG_STOPPED',
    `${vm} is ${d.state}`,
  );
  const beat = await lastHeartbeat(vm);
  await waitFor(
    `${vm} to keep beating`,
    async () => ((await lastHeartbeat(vm)) > beat ? true : undefined),
    { timeoutMs: 30_000, signal: ctx.signal },
  );
}

async function compare(ctx: ScenarioContext, images: string, memoryMb: number) {
  const vm = `zc-live-${memoryMb}`;
  const clone = `${vm}-clone`;
  // Its own name: xenconsoled appends to a name's console log across domains.
  const baselineClone = `${vm}-savep`;
  const file = join(images, `${vm}.save`);
  const cfg = await writeGuestConfig(ctx.workDir, { name: vm, memoryMb, type: 'pvh' });
  try {
    await xl(['create', cfg], { timeoutMs: 90_000, log: ctx.log });
    await waitConsole(vm, /ZC-GUEST-HEARTBEAT 2\b/, { timeoutMs: 120_000, signal: ctx.signal });

    // Live: pause only for the last round.
    const beatBeforeLive = await lastHeartbeat(vm);
    const live = await run(LIVESAVE, ['--verbose', vm, file], { timeoutMs: 300_000, log: ctx.log });
    for (const line of live.stderr.split('\n')) {
      if (/iteration|suspend|dirty|round/i.test(line)) ctx.log(`livesave: ${line}`);
    }
    const r = lastEvent(live.stdout);
    ctx.log(`livesave ${memoryMb} MiB: ${live.stdout.trim()}`);
    assertTrue(r.event === 'saved', 'LANE_LIVESAVE', live.stdout);
    assertTrue(typeof r.pauseMs === 'number', 'LANE_LIVESAVE_PAUSE', 'no pause measured');
    // The original's beat when the helper returned: near the final pause.
    const beatAtPause = await lastHeartbeat(vm);
    ctx.log(`image ${(await stat(file)).size} bytes`);
    await assertOriginalRuns(ctx, vm);
    const restoredLive = await restoreClone(ctx, file, clone, memoryMb);
    const cloneBeat = await assertResumed(ctx, clone, beatBeforeLive);
    const livePauseMs = r.pauseMs;
    ctx.note(`live_pause_ms_${memoryMb}`, Math.round(livePauseMs));
    ctx.note(`live_total_ms_${memoryMb}`, live.ms + restoredLive.ms);
    ctx.note(
      `live_beats_${memoryMb}`,
      `copy_start=${beatBeforeLive} pause=${beatAtPause} clone_first=${cloneBeat}`,
    );
    await destroyQuietly(clone, ctx.log);
    await rm(file, { force: true });

    // Baseline: xl save -p pauses the original for the whole write. Its pause
    // is taken as the wall time of save + unpause, an upper bound, as is the
    // helper's (from libxl's suspend request to the end of the resume).
    const started = Date.now();
    const saved = await xl(['save', '-p', vm, file], { timeoutMs: 300_000, log: ctx.log });
    await xl(['unpause', vm], { log: ctx.log });
    const pausedMs = Date.now() - started;
    await assertOriginalRuns(ctx, vm);
    const restoredPaused = await restoreClone(ctx, file, baselineClone, memoryMb);
    await assertResumed(ctx, baselineClone, beatBeforeLive);
    ctx.note(`savep_pause_ms_${memoryMb}`, pausedMs);
    ctx.note(`savep_total_ms_${memoryMb}`, saved.ms + restoredPaused.ms);
    ctx.note(`pause_ratio_${memoryMb}`, Number((pausedMs / livePauseMs).toFixed(1)));
  } finally {
    await destroyQuietly(clone, ctx.log);
    await destroyQuietly(baselineClone, ctx.log);
    await rm(file, { force: true });
    await destroyQuietly(vm, ctx.log);
  }
}

async function saveHelperPids(): Promise<string[]> {
  const pids: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (comm.startsWith('libxl-save-hel')) pids.push(pid);
  }
  return pids;
}

/** SIGKILL the helper while it copies: the original keeps running. */
async function killMidCopy(ctx: ScenarioContext, images: string) {
  const vm = 'zc-live-kill';
  const file = join(images, `${vm}.save`);
  const cfg = await writeGuestConfig(ctx.workDir, { name: vm, memoryMb: 128, type: 'pvh' });
  try {
    await xl(['create', cfg], { timeoutMs: 90_000, log: ctx.log });
    await waitConsole(vm, /ZC-GUEST-HEARTBEAT 2\b/, { timeoutMs: 120_000, signal: ctx.signal });
    const child = spawn(LIVESAVE, [vm, file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // Kill once the copy has started writing memory, well before it ends.
    await waitFor(
      'the live copy to start writing',
      async () => ((await stat(file).catch(() => undefined))?.size ?? 0) > 8 << 20 || undefined,
      { timeoutMs: 60_000, intervalMs: 50, signal: ctx.signal },
    );
    const sizeAtKill = (await stat(file)).size;
    child.kill('SIGKILL');
    await exited;
    ctx.note('killed_at_bytes', sizeAtKill);
    await sleep(3000, ctx.signal);
    const d = await domainByName(vm);
    ctx.log(`after the kill: ${vm} ${d?.state}`);
    if (d?.state.includes('s')) {
      // Killed inside its final pause: the recovery path resumes it.
      await run(LIVESAVE, ['--resume', vm], { log: ctx.log });
      ctx.note('kill_needed_resume', true);
    }
    await assertOriginalRuns(ctx, vm);
    // libxl's save helper, the helper's child, must not outlive it.
    await waitFor(
      'libxl-save-helper to exit',
      async () => ((await saveHelperPids()).length === 0 ? true : undefined),
      { timeoutMs: 30_000, signal: ctx.signal },
    );
  } finally {
    await rm(file, { force: true });
    await destroyQuietly(vm, ctx.log);
  }
}

const scenario: Scenario = {
  name: 'live-save',
  title: 'zynclone-livesave vs xl save -p: original pause, clone resumes; helper killed mid-copy',
  timeoutMs: 900_000,
  async run(ctx) {
    // dom0's /tmp is too small for a 512 MiB image: the images get their own tmpfs.
    const images = join(ctx.workDir, 'images');
    await mkdir(images);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=700m', 'tmpfs', images], { log: ctx.log });
    try {
      await compare(ctx, images, 128);
      await killMidCopy(ctx, images);
      await compare(ctx, images, 512);
    } finally {
      await run('umount', [images], { allowFail: true, log: ctx.log });
    }
  },
};

export default scenario;
