// vmclone doctor's checks on a simulated host with the real daemons running
// in-process: the clone monitor, and the net monitor with its nftables table
// in the simulator's network domain namespace.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setOverride, unsetOverride } from '../../../src/core/config/index.js';
import { type Finding, runDoctor } from '../../../src/core/health/index.js';
import { validateVmName, zynclonePaths } from '../../../src/core/paths.js';
import { openStateStore } from '../../../src/core/state/index.js';
import { CloneMonitor } from '../../../src/daemons/clone-monitor/monitor.js';
import { type Heartbeat, startHeartbeat } from '../../../src/daemons/common/heartbeat.js';
import { createLogger } from '../../../src/daemons/common/log.js';
import { NetMonitor, ensureTable } from '../../../src/daemons/net-monitor/monitor.js';
import { type NftExecutor, createNftExecutor } from '../../../src/daemons/net-monitor/nft-exec.js';
import { XenstoreServer } from '../../../src/sim/xenstored/server.js';
import { XlDriver } from '../../../src/xen/index.js';
import type { XsClient } from '../../../src/xenstore/index.js';
import { SimHost, exec, isRoot, waitFor } from '../../daemons/clone-monitor/host.js';
import { skipWithout } from '../../prerequisites.js';

const hasNft = (await exec('nft', ['--version'])).code === 0;
const failing = (fs: Finding[]) => fs.filter((f) => !f.ok);
const find = (fs: Finding[], check: string) => fs.find((f) => f.check === check);

describe('doctor without a Xen host', () => {
  it('reports a missing xl, a missing monitor, and a bad config, each with a fix', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zc-doctor-'));
    const server = await XenstoreServer.start({ socketPath: join(dir, 'xs.sock') });
    const paths = zynclonePaths(join(dir, 'root'));
    const store = openStateStore({ paths });
    try {
      mkdirSync(paths.overrideDir, { recursive: true });
      writeFileSync(paths.overrideFile(validateVmName('web')), '{"clone_vif_msk":"all"}');
      const fs = await runDoctor({
        paths,
        store,
        xl: new XlDriver({ xlPath: join(dir, 'no-xl') }),
        xenstorePath: server.socketPath,
        run: async () => ({ code: null, stdout: '', stderr: 'not here' }),
      });
      expect(find(fs, 'xl')).toMatchObject({ ok: false, severity: 'error' });
      expect(find(fs, 'xl')?.fix).toMatch(/xl on PATH/);
      expect(find(fs, 'xenstore')).toMatchObject({ ok: false });
      expect(find(fs, 'xenstore')?.fix).toMatch(/zynclone-clone-monitor/);
      const hb = find(fs, 'heartbeat:net-monitor');
      expect(hb).toMatchObject({ ok: false, severity: 'error' });
      expect(hb?.fix).toMatch(/systemctl start zynclone-net-monitor/);
      expect(find(fs, 'heartbeat:console-monitor')).toMatchObject({ ok: true });
      // The orchestrator is optional; its finding says where its log is.
      expect(find(fs, 'heartbeat:orchestrator')).toMatchObject({ ok: true });
      expect(find(fs, 'heartbeat:orchestrator')?.message).toMatch(
        /journalctl -u zynclone-orchestrator/,
      );
      const cfg = find(fs, 'config:web');
      expect(cfg).toMatchObject({ ok: false, severity: 'error' });
      expect(cfg?.message).toMatch(/clone_vif_msk.*did you mean "clone_vif_mask"/);
      expect(cfg?.fix).toMatch(/vmclone config web\S* --unset/);
      for (const f of failing(fs)) expect(f.fix).toBeTruthy();
    } finally {
      store.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(skipWithout(isRoot && hasNft, 'root and nft'))(
  'doctor on a simulated host with its monitors',
  () => {
    let host: SimHost;
    let xs: XsClient;
    let nft: NftExecutor;
    let net: NetMonitor;
    let clone: CloneMonitor;
    const beats: Heartbeat[] = [];
    const table = 'zynclone';
    const doctor = (extra: { now?: () => number } = {}) =>
      runDoctor({
        paths: host.paths,
        store: host.store,
        xl: host.xl,
        xs,
        netns: host.netdd,
        ...extra,
      });

    const log = createLogger('test', { write: () => {} });
    const startCloneMonitor = async () => {
      const m = new CloneMonitor({
        xs,
        store: host.store,
        paths: host.paths,
        xl: host.xl,
        log,
        ids: { netdd: 0, console: 0 },
      });
      await m.start();
      return m;
    };
    const acked = () =>
      waitFor('the net monitor ack', async () => {
        const gen = await xs.tryRead('/tool/zynclone/vm/web/generation');
        const ack = await xs.tryRead('/tool/zynclone/net/ack/web');
        return gen !== undefined && ack === gen ? true : undefined;
      });

    beforeAll(async () => {
      host = await SimHost.create('zc-doctor-sim-');
      await host.makeCloneOfWeb();
      xs = await host.xs();
      nft = createNftExecutor({ netns: host.netdd, backend: 'cli' });
      const spec = { table, cloneVifPrefix: 'zcv' };
      await ensureTable(nft, spec);
      clone = await startCloneMonitor();
      net = new NetMonitor({ xs, nft, spec, log });
      await net.start();
      beats.push(startHeartbeat(xs, 'clone-monitor', '0.1.0', 1000, log));
      beats.push(startHeartbeat(xs, 'net-monitor', '0.1.0', 1000, log));
      await clone.idle();
      await acked();
      await Promise.all(beats.map((b) => b.beat()));
    });

    afterAll(async () => {
      for (const b of beats) b.stop();
      await clone?.stop();
      await net?.stop();
      await nft?.close();
      await xs?.close().catch(() => {});
      await host?.dispose();
    });

    it('finds a healthy host healthy', async () => {
      const fs = await doctor();
      expect(failing(fs)).toEqual([]);
      expect(find(fs, 'heartbeat:net-monitor')?.message).toMatch(/alive \(version 0\.1\.0/);
      expect(find(fs, `nft-table:${table}`)?.message).toMatch(/matches XenStore/);
      expect(find(fs, 'isolation-bridge:zc-isolated')?.message).toMatch(/no uplink/);
      expect(find(fs, 'lockdown-ack:web')?.ok).toBe(true);
    });

    it('calls a heartbeat three beats old stale, showing the version', async () => {
      const fs = await doctor({ now: () => Date.now() + 60_000 });
      const hb = find(fs, 'heartbeat:clone-monitor');
      expect(hb).toMatchObject({ ok: false, severity: 'error' });
      expect(hb?.message).toMatch(/version 0\.1\.0\) is stale/);
      expect(hb?.fix).toMatch(/systemctl restart zynclone-clone-monitor/);
    });

    it('reports an uplink on the isolation bridge', async () => {
      const ip = (...a: string[]) => exec('ip', ['-n', host.netdd, ...a]);
      expect((await ip('link', 'add', 'zcup0', 'type', 'veth', 'peer', 'name', 'zcup1')).code).toBe(
        0,
      );
      try {
        expect((await ip('link', 'set', 'zcup0', 'master', 'zc-isolated')).code).toBe(0);
        const f = find(await doctor(), 'isolation-bridge:zc-isolated');
        expect(f).toMatchObject({ ok: false, severity: 'error' });
        expect(f?.message).toMatch(/zcup0/);
        expect(f?.fix).toMatch(/ip link set zcup0 nomaster/);
      } finally {
        await ip('link', 'del', 'zcup0');
      }
    });

    it('compares the published and applied lockdown with what the current configuration demands, per vif', async () => {
      // clone_monitor is down when the mask changes: nothing republishes.
      await clone.stop();
      setOverride(validateVmName('web'), 'clone_vif_mask', 'none', host.paths);
      try {
        const f = find(await doctor(), 'lockdown:web');
        expect(f).toMatchObject({ ok: false, severity: 'error' });
        expect(f?.message).toMatch(
          /clone vif 0: the configuration demands zcv1234abcd\.0 masked=0, published is zcv1234abcd\.0 masked=1/,
        );
        expect(f?.message).toMatch(
          /the applied allowed clone vifs lacks zcv1234abcd\.0, zcv1234abcd\.1/,
        );
        expect(f?.fix).toMatch(/zynclone-clone-monitor/);
        // Back up: it publishes the current masks, the net monitor applies them.
        clone = await startCloneMonitor();
        await clone.idle();
        await acked();
        expect(find(await doctor(), 'lockdown:web')).toMatchObject({ ok: true });
      } finally {
        unsetOverride(validateVmName('web'), 'clone_vif_mask', host.paths);
      }
      // The monitor notices the configuration change at its next poll.
      await waitFor('the lockdown as configured again', async () =>
        find(await doctor(), 'lockdown:web')?.ok ? true : undefined,
      );
    });

    it('reports an original paused by an operation whose process died; clone_monitor unpauses it', async () => {
      await clone.stop();
      // What a vmclone create killed inside the pause leaves: a running
      // operation owned by a dead process, its pause step journaled, web paused.
      const dead = openStateStore({
        paths: host.paths,
        owner: { pid: 2 ** 22 + 1, hostname: hostname(), startTime: '1', bootId: null },
      });
      try {
        const op = dead.beginOperation('web', 'create', { requestedBy: 'user:test' });
        dead.journalStep(op.id, 'pause-snapshot', {}, [
          { action: 'unpause', name: 'web', uuid: null },
        ]);
      } finally {
        dead.close();
      }
      expect((await exec(`${host.root}/bin/xl`, ['pause', 'web'])).code).toBe(0);
      const f = find(await doctor(), 'paused-original:web');
      expect(f).toMatchObject({ ok: false, severity: 'error' });
      expect(f?.message).toMatch(
        /web is paused by unfinished operation \d+ \(create\); its process \(pid \d+\) died/,
      );
      expect(f?.fix).toMatch(/zynclone-clone-monitor/);

      clone = await startCloneMonitor();
      await waitFor('web unpaused by clone_monitor', async () => {
        const [d] = await host.xl.list().then((l) => l.filter((x) => x.name === 'web'));
        return d !== undefined && !d.flags.paused ? true : undefined;
      });
      await waitFor('the operation rolled back', () =>
        host.store.runningOperation('web') === undefined ? true : undefined,
      );
      expect(find(await doctor(), 'paused-originals')).toMatchObject({ ok: true });
    });

    it('reports nftables sets that differ from XenStore, and a missing table', async () => {
      const nftIn = (...a: string[]) => exec('ip', ['netns', 'exec', host.netdd, 'nft', ...a]);
      await nftIn('add', 'element', 'bridge', table, 'clone_allowed', '{ "zcvbogus.0" }');
      const f = find(await doctor(), `nft-table:${table}`);
      expect(f).toMatchObject({ ok: false, severity: 'error' });
      expect(f?.message).toMatch(/clone_allowed also holds zcvbogus\.0/);
      expect(f?.fix).toMatch(/restart zynclone-net-monitor/);

      await net.stop();
      expect((await nftIn('delete', 'table', 'bridge', table)).code).toBe(0);
      const gone = find(await doctor(), `nft-table:${table}`);
      expect(gone).toMatchObject({ ok: false, severity: 'error' });
      expect(gone?.message).toMatch(/missing/);
      expect(gone?.fix).toMatch(/zynclone-net-monitor/);
    });
  },
);
