// `vmclone switch-volume` in the simulator: a shared volume moved between a
// running original and its running clone, ZC_BENCH_SWITCHES times (default
// 20) each way, with the detach and attach parts apart. Baseline, in the same
// run: a bare xl block-detach + block-attach of another disk through the
// same driver (no journal, no single-writer check, no XenStore waits), so the
// ratio is ZynClone's cost over xl's. The simulator's xl is a Node program:
// each xl command costs a process start that the real C xl does not. No root
// needed (plain directory, no network).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloneLifecycle } from '../src/core/clones/lifecycle.js';
import { setOverride } from '../src/core/config/index.js';
import { validateVmName, zynclonePaths } from '../src/core/paths.js';
import { openStateStore } from '../src/core/state/index.js';
import { VolumeSwitcher } from '../src/core/volumes/index.js';
import { XlDriver } from '../src/xen/index.js';
import { XsClient } from '../src/xenstore/index.js';
import { ackEveryGeneration, sh, simEnv } from './sim-host.js';
import type { BenchResult } from './types.js';

const here = dirname(fileURLToPath(import.meta.url));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export async function run(): Promise<BenchResult[]> {
  const n = Number(process.env.ZC_BENCH_SWITCHES ?? '20');
  const root = mkdtempSync(join(tmpdir(), 'zc-bench-volumes-'));
  const zynclone = resolve(here, '../src/bin/zynclone.js');
  const cleanups: Array<() => Promise<void>> = [];
  let simUp = false;
  try {
    mkdirSync(join(root, 'etc/xen'), { recursive: true });
    await sh(process.execPath, [zynclone, 'sim', 'up', '--no-network', '--root', root]);
    simUp = true;
    const env = simEnv(root);
    const xl = new XlDriver({ env });
    const socket = join(root, 'run/xenstored/socket');
    const xs = await XsClient.connect({ path: socket, transport: 'socket', reconnect: false });
    cleanups.push(() => xs.close());
    // No network in this run: a stand-in acks the lockdown.
    cleanups.push(await ackEveryGeneration(socket));

    const vm = validateVmName('benchvol');
    for (const f of ['root.img', 'shared.img', 'other.img']) {
      writeFileSync(join(root, f), Buffer.alloc(4 << 20));
    }
    const cfg = join(root, 'etc/xen', `${vm}.cfg`);
    writeFileSync(
      cfg,
      `name = "${vm}"\ntype = "pv"\nkernel = "/boot/vmlinuz"\nmemory = 16\n` +
        `disk = [ 'format=raw,vdev=xvda,access=rw,target=${root}/root.img',\n` +
        `         'format=raw,vdev=xvdb,access=rw,target=${root}/shared.img' ]\n`,
    );
    const paths = zynclonePaths(root);
    setOverride(vm, 'shared_volumes', ['xvdb'], paths);
    setOverride(vm, 'storage_backend', 'copy', paths);
    const store = openStateStore({ paths });
    cleanups.push(async () => store.close());
    const common = { paths, store, xl, xs: async () => xs, requestedBy: 'system:bench' };
    const lc = new CloneLifecycle(common);
    const volumes = new VolumeSwitcher(common);
    // An offline clone, then both run.
    await lc.create(vm, { kind: 'offline', start: false });
    await xl.create(cfg);
    await lc.start(vm);

    const total: number[] = [];
    const detach: number[] = [];
    const attach: number[] = [];
    for (let i = 0; i < n; i++) {
      for (const to of ['clone', 'original'] as const) {
        const r = await volumes.switchVolume(vm, 'xvdb', to);
        total.push(r.totalMs);
        detach.push(r.detachMs ?? Number.NaN);
        attach.push(r.attachMs ?? Number.NaN);
      }
    }
    const bare: number[] = [];
    const bareDetach: number[] = [];
    const bareAttach: number[] = [];
    await xl.blockAttach(vm, `format=raw,vdev=xvdc,access=rw,target=${root}/other.img`);
    for (let i = 0; i < 2 * n; i++) {
      const t0 = performance.now();
      await xl.blockDetach(vm, 'xvdc');
      const t1 = performance.now();
      await xl.blockAttach(vm, `format=raw,vdev=xvdc,access=rw,target=${root}/other.img`);
      const t2 = performance.now();
      bareDetach.push(t1 - t0);
      bareAttach.push(t2 - t1);
      bare.push(t2 - t0);
    }
    await lc.remove(vm);
    const note = `median of ${2 * n}, simulator, both domains running`;
    return [
      { name: 'switch-volume, whole', value: median(total), unit: 'ms', note },
      { name: 'switch-volume, detach part', value: median(detach), unit: 'ms', note },
      { name: 'switch-volume, attach part', value: median(attach), unit: 'ms', note },
      { name: 'bare xl block-detach', value: median(bareDetach), unit: 'ms', note },
      { name: 'bare xl block-attach', value: median(bareAttach), unit: 'ms', note },
      {
        name: 'switch / bare detach+attach',
        value: median(total) / median(bare),
        unit: 'x',
        note: 'journal, checks and waits over the two xl commands',
      },
    ];
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    if (simUp)
      await sh(process.execPath, [zynclone, 'sim', 'down', '--root', root]).catch(() => '');
    rmSync(root, { recursive: true, force: true });
  }
}
