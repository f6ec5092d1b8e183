// clone_monitor against the simulator: its real xenstored, its xl, its
// network domain, and a real state store under the simulator's root.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setOverride, unsetOverride } from '../../../src/core/config/index.js';
import { validateVmName } from '../../../src/core/paths.js';
import { CloneMonitor, KICK_NODE } from '../../../src/daemons/clone-monitor/monitor.js';
import { ensureTree } from '../../../src/daemons/clone-monitor/tree.js';
import { createLogger } from '../../../src/daemons/common/log.js';
import { XsClient, formatPerm } from '../../../src/xenstore/index.js';
import { CLONE_VIFS, SimHost, exec, isRoot, waitFor } from './host.js';

const hasXenstoreTools = (await exec('xenstore-ls', ['--help'])).code !== 127;
const VM = '/tool/zynclone/vm/web';

describe('clone monitor on the simulator', () => {
  let host: SimHost;
  let xs: XsClient;
  let monitor: CloneMonitor | undefined;
  const logs: string[] = [];

  const startMonitor = async () => {
    monitor = new CloneMonitor({
      xs,
      store: host.store,
      paths: host.paths,
      xl: host.xl,
      log: createLogger('clone-monitor', { write: (l) => logs.push(l), level: 'debug' }),
      ids: { netdd: 0, console: 0 },
      pollMs: 50,
    });
    await monitor.start();
    await monitor.idle();
    return monitor;
  };

  beforeAll(async () => {
    host = await SimHost.create('zc-clonemon-');
    await host.makeCloneOfWeb();
    xs = await host.xs();
  });

  afterEach(async () => {
    await monitor?.stop();
    monitor = undefined;
  });

  afterAll(async () => {
    await xs?.close().catch(() => {});
    await host?.dispose();
  });

  it('publishes each VM of the state store as the contract says', async () => {
    await startMonitor();
    const webDomid = await host.domid('web');
    const cloneDomid = await host.domid('web-clone');
    const read = (p: string) => xs.tryRead(`${VM}/${p}`);
    expect(await read('state')).toBe('running');
    expect(await read('clone-name')).toBe('web-clone');
    expect(await read('clone-domid')).toBe(String(cloneDomid));
    expect(await read('original-domid')).toBe(String(webDomid));
    expect(await read('clone-vif-mask')).toBe('all');
    expect(await read('original-vif-mask')).toBe('none');
    expect(await read('clone-vif/0/name')).toBe(CLONE_VIFS[0]);
    expect(await read('clone-vif/1/masked')).toBe('1');
    expect(await read('original-vif/1/name')).toBe(`vif${webDomid}.1`);
    expect(await read('original-vif/1/masked')).toBe('0');
    expect(await read('console/type')).toBe('none');
    expect(Number(await read('generation'))).toBeGreaterThan(0);
    expect((await xs.getPerms('/tool/zynclone')).map(formatPerm)).toEqual(['n0']);
    expect((await xs.getPerms('/tool/zynclone/net')).map(formatPerm)).toEqual(['n0']);
  });

  it('keeps /tool/zynclone from guests but lets the network domain read vm/ and write net/', async () => {
    await startMonitor();
    await monitor!.stop();
    monitor = undefined;
    const webDomid = (await host.domid('web'))!;
    const guest = await XsClient.connect({
      path: host.guestSocket(webDomid),
      transport: 'socket',
      reconnect: false,
    });
    try {
      await ensureTree(xs, { netdd: 0, console: 0 });
      await expect(guest.read(`${VM}/state`)).rejects.toMatchObject({ errno: 'EACCES' });
      await expect(guest.directory('/tool/zynclone')).rejects.toMatchObject({ errno: 'EACCES' });
      if (hasXenstoreTools) {
        const ls = await exec('xenstore-ls', ['/tool/zynclone'], { XENSTORED_PATH: host.socket });
        expect(ls.code).toBe(0);
        expect(ls.stdout).toMatch(/clone-name = "web-clone"/);
      }
      // Pretend web were the network domain: it reads vm/, acknowledges in net/, no more.
      await ensureTree(xs, { netdd: webDomid, console: 0 });
      expect((await xs.getPerms('/tool/zynclone')).map(formatPerm)).toEqual(['n0', `r${webDomid}`]);
      expect(await guest.read(`${VM}/state`)).toBe('running');
      await expect(guest.write(`${VM}/state`, 'inactive')).rejects.toMatchObject({
        errno: 'EACCES',
      });
      await guest.write('/tool/zynclone/net/ack/web', '1');
      await guest.write('/tool/zynclone/daemons/net-monitor/heartbeat', '1');
      await expect(
        guest.write('/tool/zynclone/daemons/clone-monitor/heartbeat', '1'),
      ).rejects.toMatchObject({ errno: 'EACCES' });
    } finally {
      await guest.close().catch(() => {});
      await ensureTree(xs, { netdd: 0, console: 0 });
      await xs.rm('/tool/zynclone/net/ack/web').catch(() => {});
    }
  });

  it('rebuilds vm/ from the state store after tampering, and after a restart', async () => {
    await startMonitor();
    const before = await xs.read(`${VM}/generation`);
    await xs.rm(`${VM}/clone-vif`);
    await xs.write(`${VM}/clone-vif-mask`, 'none');
    await xs.write('/tool/zynclone/vm/ghost/state', 'running');
    await xs.write('/tool/zynclone/vm/ghost/generation', '1');
    await waitFor('vm/ web repaired and ghost removed', async () => {
      const ok =
        (await xs.tryRead(`${VM}/clone-vif/0/masked`)) === '1' &&
        (await xs.tryRead(`${VM}/clone-vif-mask`)) === 'all' &&
        (await xs.tryRead('/tool/zynclone/vm/ghost/state')) === undefined;
      return ok || undefined;
    });
    expect(Number(await xs.read(`${VM}/generation`))).toBeGreaterThan(Number(before));

    // While the monitor is down, someone deletes the whole subtree.
    await monitor!.stop();
    monitor = undefined;
    await xs.rm(VM);
    await startMonitor();
    expect(await xs.tryRead(`${VM}/clone-name`)).toBe('web-clone');
    expect(await xs.tryRead(`${VM}/clone-vif/1/name`)).toBe(CLONE_VIFS[1]);
  });

  it('republishes nothing while XenStore already agrees', async () => {
    await startMonitor();
    const gen = await xs.read(`${VM}/generation`);
    await xs.write(KICK_NODE, String(Date.now()));
    await new Promise((r) => setTimeout(r, 300));
    await monitor!.idle();
    expect(await xs.read(`${VM}/generation`)).toBe(gen);
  });

  it('moves a running clone vif between the isolation bridge and its own as its mask changes', async () => {
    await startMonitor();
    // As root the simulator's network domain is real, and the bridge members are checked too.
    expect(host.network).toBe(isRoot);
    expect(await host.bridges('web-clone')).toEqual({ 0: 'zc-isolated', 1: 'zc-isolated' });
    try {
      setOverride(validateVmName('web'), 'clone_vif_mask', '1', host.paths);
      await waitFor(
        'vif 0 on xenbr0',
        async () => (await host.bridges('web-clone'))[0] === 'xenbr0' || undefined,
      );
      expect((await host.bridges('web-clone'))[1]).toBe('zc-isolated');
      expect(await xs.read(`${VM}/clone-vif/0/masked`)).toBe('0');
      expect(await xs.read(`${VM}/clone-vif-mask`)).toBe('1');
      if (host.network) {
        expect(await host.bridgeMembers('xenbr0')).toContain(CLONE_VIFS[0]);
        expect(await host.bridgeMembers('zc-isolated')).toEqual([CLONE_VIFS[1]]);
      }
      expect(logs.join('')).toContain('clone vif moved back to its production bridge');
    } finally {
      unsetOverride(validateVmName('web'), 'clone_vif_mask', host.paths);
    }
    await waitFor(
      'vif 0 back on zc-isolated',
      async () => (await host.bridges('web-clone'))[0] === 'zc-isolated' || undefined,
    );
    expect(await xs.read(`${VM}/clone-vif/0/masked`)).toBe('1');
    if (host.network) {
      expect(await host.bridgeMembers('zc-isolated')).toEqual([...CLONE_VIFS].sort());
    }
    expect(await xs.tryRead(`${VM}/frontend/problems`)).toBeUndefined();
  });

  it('never publishes backwards: a pass computed before an operation ended does not overwrite it', async () => {
    // xl list -l of the original (asked while the pass computes what to
    // publish) waits until the test lets it go.
    let release: () => void = () => {};
    let entered: () => void = () => {};
    let blocked = false;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const waiting = new Promise<void>((r) => {
      entered = r;
    });
    const xl = Object.create(host.xl) as typeof host.xl;
    xl.listLong = async (...args) => {
      if (blocked) {
        entered();
        await gate;
      }
      return host.xl.listLong(...args);
    };
    monitor = new CloneMonitor({
      xs,
      store: host.store,
      paths: host.paths,
      xl,
      log: createLogger('clone-monitor', { write: (l) => logs.push(l) }),
      ids: { netdd: 0, console: 0 },
      pollMs: 50,
    });
    await monitor.start();
    await monitor.idle();
    expect(await xs.read(`${VM}/state`)).toBe('running');
    const passDone = new Promise<void>((r) => {
      const off = monitor!.onPass(() => {
        off();
        r();
      });
    });
    blocked = true;
    monitor.requestFullPass();
    await waiting; // the pass read the store and now waits in xl list -l
    // Meanwhile an operation (as vmclone stop does) publishes and records `active`.
    const before = host.store.getClone('web')!;
    const op = host.store.beginOperation('web', 'stop', { requestedBy: 'user:test' });
    const { publishVm } = await import('../../../src/core/clones/publish.js');
    const published = await publishVm(xs, {
      vm: 'web',
      state: 'active',
      cloneName: 'web-clone',
      cloneVifMask: 'all',
      originalVifMask: 'none',
      cloneVifs: [],
      originalVifs: [],
      console: { type: 'none', enabled: false },
    });
    host.store.updateClone('web', { state: 'active' });
    host.store.finishOperation(op.id, 'done');
    const from = logs.length;
    try {
      blocked = false;
      release();
      await passDone;
      await monitor.idle();
      expect(await xs.read(`${VM}/state`)).toBe('active');
      expect(Number(await xs.read(`${VM}/generation`))).toBeGreaterThanOrEqual(published);
      // What the monitor published after the operation (its log says each one).
      const after = logs
        .slice(from)
        .map((l) => JSON.parse(l) as { msg: string; state?: string })
        .filter((l) => l.msg === 'published');
      expect(after.map((l) => l.state)).not.toContain('running');
    } finally {
      host.store.updateClone('web', { state: before.state, cloneDomid: before.cloneDomid });
    }
  });

  it('follows the original stopping and starting, and the clone leaving the store', async () => {
    await startMonitor();
    const r = await exec(host.root + '/bin/xl', ['destroy', 'web']);
    expect(r.code).toBe(0);
    await waitFor('original-domid gone', async () =>
      (await xs.tryRead(`${VM}/original-domid`)) === undefined ? true : undefined,
    );
    // A shut-down original's vifs have no backend name: nothing to drop until it starts.
    expect(await xs.tryRead(`${VM}/original-vif/0/name`)).toBeUndefined();
    const c = await exec(host.root + '/bin/xl', ['create', `${host.root}/etc/xen/web.cfg`]);
    expect(c.code).toBe(0);
    const domid = await host.domid('web');
    await waitFor('new original-domid', async () =>
      (await xs.tryRead(`${VM}/original-domid`)) === String(domid) ? true : undefined,
    );
    expect(await xs.read(`${VM}/original-vif/0/name`)).toBe(`vif${domid}.0`);

    const record = host.store.getClone('web')!;
    host.store.deleteClone('web');
    try {
      await waitFor('vm/web removed', async () =>
        (await xs.tryRead(`${VM}/state`)) === undefined ? true : undefined,
      );
    } finally {
      host.store.putClone({ ...record, snapshots: [] });
    }
    await waitFor('vm/web back', async () =>
      (await xs.tryRead(`${VM}/state`)) === 'running' ? true : undefined,
    );
  });

  it('makes a clone whose domain was destroyed behind its back active, and publishes that', async () => {
    await startMonitor();
    expect(host.store.getClone('web')?.state).toBe('running');
    expect((await exec(`${host.root}/bin/xl`, ['destroy', 'web-clone'])).code).toBe(0);
    await waitFor('vm/web active', async () =>
      (await xs.tryRead(`${VM}/state`)) === 'active' ? true : undefined,
    );
    expect(host.store.getClone('web')).toMatchObject({ state: 'active', cloneDomid: null });
    expect(host.store.auditLog({ vm: 'web', limit: 1 })[0]).toMatchObject({ action: 'reconcile' });
    expect(await xs.tryRead(`${VM}/clone-domid`)).toBeUndefined();
  });
});
