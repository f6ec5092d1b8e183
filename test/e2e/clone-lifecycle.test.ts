// vmclone end to end in the simulator, as root on an XFS (reflink) filesystem:
// every state transition, each clone kind, refusals, the lockdown ack.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skipWithout } from '../prerequisites.js';
import { CloneHost, E2E_NEEDS, RealNetMonitor, canRunE2e, run } from './clone-helpers.js';

describe.skipIf(skipWithout(canRunE2e, E2E_NEEDS))('vmclone in the simulator', () => {
  let host: CloneHost;

  beforeAll(async () => {
    host = await CloneHost.create();
    process.stderr.write(
      `clone e2e: lockdown acknowledged by the ${host.netMonitor} net monitor\n`,
    );
  }, 120_000);

  afterAll(async () => {
    await host?.dispose();
  }, 60_000);

  async function vm(...args: string[]) {
    return host.vmclone(args);
  }

  it('makes an online clone: running, new name and UUID, vifs locked on the isolation bridge', async () => {
    const r = await vm('create', 'web01', '--online', '--json');
    expect(r.stderr).not.toMatch(/rolling back/);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.clone).toMatchObject({
      vm: 'web01',
      cloneName: 'web01-clone',
      state: 'running',
      kind: 'online',
    });
    expect(typeof out.originalPauseMs).toBe('number');
    const doms = await host.domains();
    expect(doms.get('web01-clone')).toBeDefined();
    expect(doms.get('web01')!.state).not.toContain('p');
    const uuid = async (name: string) =>
      JSON.parse((await host.xl('list', '-l', name)).stdout)[0].config.c_info.uuid as string;
    expect(await uuid('web01-clone')).toBe(out.clone.cloneUuid);
    expect(await uuid('web01')).not.toBe(out.clone.cloneUuid);

    // Every clone vif has the clone prefix and sits on the isolation bridge.
    for (const v of out.vifs) {
      expect(v.name).toMatch(/^zcv[0-9a-f]+\.\d+$/);
      expect(v.name.length).toBeLessThanOrEqual(15);
      const link = await run(
        'ip',
        ['-n', `${host.netPrefix}-netdd`, '-o', 'link', 'show', v.name],
        host.env,
      );
      expect(link.stdout).toContain('master zc-isolated');
    }
    // The lockdown is published and was acknowledged before the clone ran.
    expect(await host.xsRead('/tool/zynclone/vm/web01/state')).toBe('running');
    expect(await host.xsRead('/tool/zynclone/vm/web01/clone-domid')).toBe(
      String(doms.get('web01-clone')!.domid),
    );
    const gen = Number(await host.xsRead('/tool/zynclone/vm/web01/generation'));
    expect(Number(await host.xsRead('/tool/zynclone/net/ack/web01'))).toBeGreaterThanOrEqual(gen);
    expect(await host.xsRead('/tool/zynclone/vm/web01/clone-vif/0/name')).toBe(out.vifs[0].name);
    expect(await host.xsRead('/tool/zynclone/vm/web01/clone-vif/0/masked')).toBe('1');
    if (host.netMonitor === 'real') {
      // The real net monitor applied this generation: no clone vif is allowed.
      const applied = JSON.parse((await host.xsRead('/tool/zynclone/net/applied/web01')) ?? '{}');
      expect(applied).toMatchObject({ generation: gen, allowedCloneVifs: [] });
    }

    // The original keeps answering on its production network while its clone, with the
    // same IP and MAC, runs on the isolation bridge.
    const db01 = doms.get('db01')!.domid;
    const ping = await run(
      'ip',
      ['netns', 'exec', `${host.netPrefix}-d${db01}`, 'ping', '-c', '2', '-W', '2', '10.78.0.10'],
      host.env,
    );
    expect(ping.code).toBe(0);
  });

  it('refuses a second clone of the same VM, and unknown VMs', async () => {
    const again = await vm('create', 'web01');
    expect(again.code).toBe(5);
    expect(again.stderr).toMatch(/already has a clone/);
    const none = await vm('create', 'nosuchvm');
    expect(none.code).toBe(4);
    expect(none.stderr).toMatch(/does not exist/);
    expect((await vm('status', 'nosuchvm')).code).toBe(4);
    expect((await vm('start', 'nosuchvm')).code).toBe(4);
    expect((await vm('create', 'bad/name')).code).toBe(6);
  });

  it('walks every state transition and refuses the ones the state forbids', async () => {
    const state = async () =>
      JSON.parse((await vm('status', 'web01', '--json')).stdout).clone.state;
    expect((await vm('activate', 'web01')).code).toBe(5);
    expect((await vm('deactivate', 'web01')).code).toBe(5); // running: stop it first
    expect((await vm('stop', 'web01', '--force')).code).toBe(0);
    expect(await state()).toBe('active');
    expect((await host.domains()).has('web01-clone')).toBe(false);
    expect(await host.xsRead('/tool/zynclone/vm/web01/clone-domid')).toBeUndefined();
    expect((await vm('stop', 'web01')).code).toBe(5);
    expect((await vm('deactivate', 'web01')).code).toBe(0);
    expect(await state()).toBe('inactive');
    expect(await host.xsRead('/tool/zynclone/vm/web01/state')).toBe('inactive');
    expect((await vm('activate', 'web01')).code).toBe(0);
    expect(await state()).toBe('active');
    const start = await vm('start', 'web01');
    expect(start.code).toBe(0);
    expect(await state()).toBe('running');
    expect((await host.domains()).has('web01-clone')).toBe(true);
    expect((await vm('start', 'web01')).code).toBe(5);
    const list = JSON.parse((await vm('list', '--json')).stdout);
    expect(list.map((c: { vm: string; state: string }) => [c.vm, c.state])).toEqual([
      ['web01', 'running'],
    ]);
  });

  it('removes the clone from any state, leaving nothing, and is safe to repeat', async () => {
    const r = await vm('remove', 'web01');
    expect(r.code).toBe(0);
    expect(await host.leftovers('web01')).toEqual([]);
    const again = await vm('remove', 'web01');
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/nothing to remove/);
  });

  it('makes a memory clone that keeps the MACs and leaves the original running', async () => {
    const r = await vm('create', 'web01', '--memory', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.clone.kind).toBe('memory');
    expect(out.vifs.map((v: { mac: string }) => v.mac)).toEqual([
      '00:16:3e:5a:00:01',
      '00:16:3e:5a:01:01',
    ]);
    const doms = await host.domains();
    expect(doms.get('web01')!.state).not.toContain('p');
    expect(doms.get('web01-clone')!.state).not.toContain('p');
    expect((await vm('remove', 'web01')).code).toBe(0);
    expect(await host.leftovers('web01')).toEqual([]);
  });

  it('keeps a memory clone made with --no-start in its image until the first start', async () => {
    const r = await vm('create', 'web01', '--memory', '--no-start', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).clone).toMatchObject({ kind: 'memory', state: 'active' });
    const image = join(host.root, 'var/lib/zynclone/save/web01-clone.save');
    expect(existsSync(image)).toBe(true);
    expect((await host.domains()).has('web01-clone')).toBe(false);
    expect((await vm('start', 'web01')).code).toBe(0);
    expect((await host.domains()).has('web01-clone')).toBe(true);
    expect(existsSync(image)).toBe(false);
    expect((await vm('remove', 'web01')).code).toBe(0);
    expect(await host.leftovers('web01')).toEqual([]);
  });

  it('makes an offline clone only of a shut-down VM, and --no-start leaves it active', async () => {
    const refused = await vm('create', 'db01', '--offline');
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/needs db01 shut down/);
    expect((await host.xl('shutdown', '-w', 'db01')).code).toBe(0);
    const r = await vm('create', 'db01', '--offline', '--no-start', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).clone).toMatchObject({ state: 'active', cloneDomid: null });
    expect((await host.domains()).has('db01-clone')).toBe(false);
    expect((await vm('start', 'db01')).code).toBe(0);
    expect((await host.domains()).has('db01-clone')).toBe(true);
    expect((await vm('remove', 'db01')).code).toBe(0);
    expect(await host.leftovers('db01')).toEqual([]);
  });

  it('strips host-bound devices of win01 unless the config keeps them', async () => {
    expect((await vm('config', 'win01', '--set', 'keep_peripherals=usbdevice')).code).toBe(0);
    const r = await vm('create', 'win01', '--online', '--no-start', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).removedPeripherals).toEqual(['pci', 'usb', 'usbctrl', 'usbdev']);
    expect((await vm('remove', 'win01')).code).toBe(0);
  });

  it('warns about SPICE-only consoles but makes the clone', async () => {
    const dir = join(host.root, 'var/lib/xen/images');
    writeFileSync(join(dir, 'spice1.img'), Buffer.alloc(1024 * 1024, 1));
    writeFileSync(
      join(host.root, 'etc/xen/spice1.cfg'),
      `name = "spice1"\ntype = "hvm"\nmemory = 16\nvnc = 0\nspice = 1\nspiceport = 6001\ndisk = [ 'format=raw,vdev=hda,access=rw,target=${dir}/spice1.img' ]\n`,
    );
    expect((await host.xl('create', join(host.root, 'etc/xen/spice1.cfg'))).code).toBe(0);
    const r = await vm('create', 'spice1', '--online');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/SPICE console only.*web console/);
    expect((await vm('remove', 'spice1')).code).toBe(0);
    expect(await host.leftovers('spice1')).toEqual([]);
  });

  it('refuses a memory clone of a VM under continuous replication', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zc-remus-'));
    const fakeXl = join(dir, 'xl');
    writeFileSync(fakeXl, '#!/bin/sh\nsleep 30\n');
    chmodSync(fakeXl, 0o755);
    const remus = spawn(fakeXl, ['remus', 'web01', 'backup-host'], { stdio: 'ignore' });
    try {
      const r = await vm('create', 'web01', '--memory');
      expect(r.code).toBe(5);
      expect(r.stderr).toMatch(/continuous replication/);
      expect(await host.leftovers('web01')).toEqual([]);
    } finally {
      remus.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a bad configuration with the file and key', async () => {
    writeFileSync(join(host.root, 'etc/xen/clone/override/web01.json'), '{"clone_vif_msk": "all"}');
    try {
      const r = await vm('create', 'web01');
      expect(r.code).toBe(6);
      expect(r.stderr).toMatch(
        /override\/web01\.json.*clone_vif_msk.*did you mean "clone_vif_mask"/,
      );
      expect((await vm('config', 'web01', '--set', 'clone_kind=fast')).code).toBe(6);
    } finally {
      rmSync(join(host.root, 'etc/xen/clone/override/web01.json'), { force: true });
    }
  });

  it('keeps the clone paused and rolls back when the lockdown is not acknowledged', async () => {
    expect((await vm('config', 'web01', '--set', 'lockdown_ack_timeout_ms=300')).code).toBe(0);
    host.ack!.pause();
    try {
      const r = await vm('create', 'web01', '--online');
      expect(r.code).toBe(7);
      expect(r.stderr).toMatch(/did not acknowledge lockdown generation/);
      expect(await host.leftovers('web01')).toEqual([]);
    } finally {
      host.ack!.resume();
      await vm('config', 'web01', '--unset', 'lockdown_ack_timeout_ms');
    }
  });

  it('keeps a new clone paused while the net monitor is dead, until a restarted monitor acknowledges', async (ctx) => {
    if (!(host.ack instanceof RealNetMonitor)) ctx.skip();
    const monitor = host.ack as RealNetMonitor;
    await monitor.kill();
    let created: Promise<Awaited<ReturnType<typeof vm>>> | undefined;
    let restarted = false;
    try {
      created = vm('create', 'web01', '--online');
      let clone: { domid: number; state: string } | undefined;
      for (let i = 0; i < 100 && !clone; i++) {
        clone = (await host.domains()).get('web01-clone');
        if (!clone) await new Promise((r) => setTimeout(r, 100));
      }
      expect(clone, 'the clone domain was created').toBeDefined();
      // Without an ack the clone never runs: watch it stay paused for a while.
      for (let i = 0; i < 5; i++) {
        expect((await host.domains()).get('web01-clone')?.state).toContain('p');
        await new Promise((r) => setTimeout(r, 200));
      }
      await monitor.restart();
      restarted = true;
      const r = await created;
      expect(r.code, r.stderr).toBe(0);
      expect((await host.domains()).get('web01-clone')?.state).not.toContain('p');
      const st = JSON.parse((await vm('status', 'web01', '--json')).stdout) as {
        lockdown: { generation: number; ack: number };
      };
      expect(st.lockdown.ack).toBeGreaterThanOrEqual(st.lockdown.generation);
    } finally {
      if (!restarted) await monitor.restart().catch(() => {});
      await created;
      expect((await vm('remove', 'web01')).code).toBe(0);
    }
    expect(await host.leftovers('web01')).toEqual([]);
  });

  it('lets only one of two concurrent creates of a VM run; the other is busy', async () => {
    const [a, b] = await Promise.all([vm('create', 'web01', '-q'), vm('create', 'web01', '-q')]);
    expect([a.code, b.code].sort()).toEqual([0, 3]);
    expect([a.stderr, b.stderr].join('\n')).toMatch(/VM web01 is busy/);
    expect((await vm('remove', 'web01')).code).toBe(0);
    expect(await host.leftovers('web01')).toEqual([]);
  });

  it('reconciles a clone destroyed behind its back: active with a note, and start works', async () => {
    expect((await vm('create', 'web01', '--online', '-q')).code).toBe(0);
    expect((await host.xl('destroy', 'web01-clone')).code).toBe(0);
    const st = await vm('status', 'web01', '--json');
    const out = JSON.parse(st.stdout);
    expect(out.clone.state).toBe('active');
    expect(out.domain).toBeNull();
    expect(out.note).toMatch(/web01-clone was running but its domain is gone/);
    expect((await vm('status', 'web01')).stdout).toMatch(/note .*domain is gone/);
    expect(await host.xsRead('/tool/zynclone/vm/web01/state')).toBe('active');
    const start = await vm('start', 'web01', '-q');
    expect(start.code, start.stderr).toBe(0);
    expect((await host.domains()).has('web01-clone')).toBe(true);
    expect(JSON.parse((await vm('status', 'web01', '--json')).stdout).note).toBeNull();
    expect((await vm('remove', 'web01', '-q')).code).toBe(0);
  });
});
