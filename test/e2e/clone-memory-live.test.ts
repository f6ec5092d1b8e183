// Memory clones through the live save helper, end to end in the simulator
// (its zynclone-livesave speaks the real helper's protocol): a PVH guest is
// copied live and paused only for the final round; a PV guest, a missing
// helper or memory_clone_live=false fall back to xl save -p and say why; a
// vmclone killed at any step of the live path, or a helper killed mid-copy,
// leaves the original running and nothing behind.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREATE_STEPS } from '../../src/core/clones/steps.js';
import { zynclonePaths } from '../../src/core/paths.js';
import { openStateStore } from '../../src/core/state/index.js';
import { skipWithout } from '../prerequisites.js';
import { CloneHost, E2E_NEEDS, canRunE2e } from './clone-helpers.js';

const VM = 'app01';
const LIVE_STEPS = CREATE_STEPS['memory-live'];

interface CreateJson {
  clone: { state: string; kind: string };
  originalPauseMs: number | null;
  memoryCopy: {
    method: string;
    fallback: string | null;
    copyMs: number | null;
    rounds: number | null;
  } | null;
}

describe.skipIf(skipWithout(canRunE2e, E2E_NEEDS))('memory clones: live pre-copy', () => {
  let host: CloneHost;
  let helper: string;

  beforeAll(async () => {
    host = await CloneHost.create({ plain: true });
    helper = join(host.root, 'usr/lib/zynclone/zynclone-livesave');
    const disk = join(host.root, 'var/lib/xen/images/app01.img');
    writeFileSync(disk, Buffer.alloc(4 << 20, 1));
    const cfg = join(host.root, 'etc/xen', `${VM}.cfg`);
    writeFileSync(
      cfg,
      `name = "${VM}"\ntype = "pvh"\nkernel = "/boot/vmlinuz"\nmemory = 256\n` +
        `vif = [ 'mac=00:16:3e:5a:00:42,bridge=xenbr0' ]\n` +
        `disk = [ 'format=raw,vdev=xvda,access=rw,target=${disk}' ]\n`,
    );
    expect((await host.xl('create', cfg)).code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await host?.dispose();
  }, 60_000);

  /** The step names of the VM's last operation, undone ones left out. */
  function lastSteps(vm: string): string[] {
    const store = openStateStore({ paths: zynclonePaths(host.root) });
    try {
      const [op] = store.listOperations({ vm, limit: 1 });
      return (op?.steps ?? []).filter((s) => s.status !== 'undone').map((s) => s.name);
    } finally {
      store.close();
    }
  }

  async function createJson(vm: string): Promise<{ out: CreateJson; stderr: string }> {
    const r = await host.vmclone(['create', vm, '--memory', '--json']);
    expect(r.code, r.stderr).toBe(0);
    return { out: JSON.parse(r.stdout) as CreateJson, stderr: r.stderr };
  }

  async function removeClean(vm: string): Promise<void> {
    expect((await host.vmclone(['remove', vm, '-q'])).code).toBe(0);
    expect(await host.leftovers(vm)).toEqual([]);
  }

  it('copies a PVH guest live, snapshots its disks while it is suspended and resumes it', async () => {
    const { out, stderr } = await createJson(VM);
    expect(out.clone).toMatchObject({ state: 'running', kind: 'memory' });
    expect(out.memoryCopy).toMatchObject({ method: 'live', fallback: null, rounds: 2 });
    expect(stderr).toMatch(
      /app01 was paused for [\d.]+ ms \(live pre-copy; 2 rounds, 2048 pages in the final one\)/,
    );
    expect(out.memoryCopy?.copyMs).toBeGreaterThan(0);
    expect(out.originalPauseMs).toBeGreaterThan(0);
    expect(lastSteps(VM)).toEqual([...LIVE_STEPS]);
    const order = ['live pre-copy) ...', `disks of ${VM} (suspended)`, 'acknowledge lockdown'];
    const at = order.map((s) => stderr.indexOf(s));
    expect(
      at.every((i, n) => i >= 0 && (n === 0 || i > at[n - 1]!)),
      stderr,
    ).toBe(true);
    const doms = await host.domains();
    expect(doms.get(VM)?.state).toMatch(/^[-rb]+$/);
    expect(doms.get(`${VM}-clone`)?.state).toMatch(/^[-rb]+$/);
    await removeClean(VM);
  });

  it('falls back to xl save -p for a PV guest (no shadow paging) and says so', async () => {
    const human = await host.vmclone(['create', 'web01', '--memory']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/paused .* \(xl save -p: .*no shadow paging.*\[NO_LOG_DIRTY\]\)/);
    expect(human.stderr).toMatch(/no live memory copy: .*; using xl save -p/);
    expect(lastSteps('web01')).toEqual([...CREATE_STEPS.memory]);
    await removeClean('web01');
    const { out } = await createJson('web01');
    expect(out.memoryCopy).toMatchObject({ method: 'save-pause', copyMs: null });
    expect(out.memoryCopy?.fallback).toContain('NO_LOG_DIRTY');
    await removeClean('web01');
  });

  it('falls back when the helper is not installed, or memory_clone_live is false', async () => {
    renameSync(helper, `${helper}.away`);
    try {
      const { out } = await createJson(VM);
      expect(out.memoryCopy?.method).toBe('save-pause');
      expect(out.memoryCopy?.fallback).toBe(`the live save helper ${helper} is not installed`);
      await removeClean(VM);
    } finally {
      renameSync(`${helper}.away`, helper);
    }
    expect((await host.vmclone(['config', VM, '--set', 'memory_clone_live=false'])).code).toBe(0);
    try {
      const { out } = await createJson(VM);
      expect(out.memoryCopy).toMatchObject({
        method: 'save-pause',
        fallback: 'memory_clone_live is false',
      });
      await removeClean(VM);
    } finally {
      await host.vmclone(['config', VM, '--unset', 'memory_clone_live']);
    }
  });

  const crashes = [
    ...LIVE_STEPS.map((s) => ['ZYNCLONE_CRASH_AT', s] as const),
    ...(['live-save-original', 'suspended', 'snapshot', 'resume-original'] as const).map(
      (s) => ['ZYNCLONE_CRASH_AFTER', s] as const,
    ),
  ];
  it.each(crashes)(
    'a live memory create killed (%s=%s) is rolled back; the original runs',
    async (variable, step) => {
      const crashed = await host.vmclone(['create', VM, '--memory', '-q'], { [variable]: step });
      expect(crashed.signal, crashed.stderr).toBe('SIGKILL');
      const next = await host.vmclone(['list']);
      expect(next.code).toBe(0);
      expect(next.stderr).toMatch(/create of app01\): rolled-back/);
      expect(await host.leftovers(VM)).toEqual([]);
      expect((await host.domains()).get(VM)?.state).toMatch(/^[-rb]+$/);
    },
    30_000,
  );

  it('a helper killed mid-copy fails the create, which rolls back; the original runs', async () => {
    const child = spawn(process.execPath, [host.vmcloneEntry, 'create', VM, '--memory'], {
      env: host.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    const image = join(host.root, 'var/lib/zynclone/save', `${VM}-clone.save`);
    let killed = false;
    const deadline = Date.now() + 20_000;
    while (!killed && Date.now() < deadline) {
      const pid = helperPid();
      if (pid !== undefined && existsSync(image)) {
        process.kill(pid, 'SIGKILL');
        killed = true;
      } else await new Promise((r) => setTimeout(r, 2));
    }
    expect(killed).toBe(true);
    expect(await exited).not.toBe(0);
    expect(stderr).toMatch(/was killed \(SIGKILL\)/);
    expect(stderr).toMatch(/rolling back/);
    expect(stderr).not.toMatch(/using xl save -p/);
    expect(await host.leftovers(VM)).toEqual([]);
    expect((await host.domains()).get(VM)?.state).toMatch(/^[-rb]+$/);
  });

  /** The simulator's zynclone-livesave holding a save of this host's app01. */
  function helperPid(): number | undefined {
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      if (cmd.includes(helper) && cmd.includes('--hold')) return Number(p);
    }
    return undefined;
  }
});
