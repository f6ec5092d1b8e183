// An upgrade as the package runs it (postinst: `vmclone upgrade`, then a
// rolling restart, net monitor first), with a clone that keeps trying to talk
// the whole time: not one frame crosses, and the new monitor takes over what
// the old one left. Real namespaces, bridge, nftables and XenStore.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zynclonePaths } from '../../../src/core/paths.js';
import {
  LAYOUT_VERSION_PATH,
  XENSTORE_LAYOUT_VERSION,
  upgrade,
} from '../../../src/core/upgrade/index.js';
import { bundleDaemon } from '../../bundle.js';
import { type Capture, Lab, labUnavailable, sleep } from './lab.js';
import { NET_ROOT, XsFixture } from './xs-helpers.js';

const unavailable = labUnavailable(['ip', 'nft', 'python3', 'tcpdump', 'ping']);
if (unavailable) console.warn(`net monitor upgrade test skipped: ${unavailable}`);

const MAC_ORIG = '02:00:00:00:15:00';
const MAC_CLIENT = '02:00:00:00:17:00';
const IP_ORIG = '10.98.0.10';
const IP_CLIENT = '10.98.0.20';

describe.skipIf(unavailable !== undefined)('net monitor restarted mid-upgrade', () => {
  let lab: Lab;
  let fx: XsFixture;
  let bundle: string;
  const logs: string[] = [];

  beforeAll(async () => {
    lab = await Lab.create('nu');
    fx = await XsFixture.start();
    await lab.addProductionNet('10.98.0', { orig: MAC_ORIG, client: MAC_CLIENT });
    bundle = join(fx.dir, 'net-monitor.mjs');
    await bundleDaemon('runNetMonitor', 'net-monitor', bundle);
  });

  afterAll(async () => {
    await lab?.destroy();
    await fx?.close();
  });

  function startMonitor(): ChildProcess {
    return lab.startNetMonitor(bundle, fx.socketPath, logs);
  }

  async function monitorPid(): Promise<string | undefined> {
    return fx.xs.tryRead('/tool/zynclone/daemons/net-monitor/pid');
  }

  /** A ping that runs until stopped; resolves to how many echo requests it sent. */
  function pinger(ns: string, ip: string): { stop(): Promise<number> } {
    const c = spawn('ip', ['netns', 'exec', ns, 'ping', '-n', '-i', '0.05', '-W', '1', ip], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    lab.track(c);
    let out = '';
    c.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    return {
      stop: async () => {
        const done = new Promise((r) => c.once('exit', r));
        c.kill('SIGINT');
        await done;
        return Number(/(\d+) packets transmitted/.exec(out)?.[1] ?? 0);
      },
    };
  }

  it('lets no frame from or to a masked clone cross, and the new monitor acks what the old one left', async () => {
    let old = startMonitor();
    const gen = await fx.publish('web', {
      state: 'running',
      cloneVifs: { 0: { name: 'zcv9.0', masked: '1' } },
      originalVifs: { 0: { name: 'vif5.0', masked: '0' } },
    });
    await fx.waitAck('web', gen);
    expect(await monitorPid()).toBe(String(old.pid));

    // The clone: same IP and MAC as the original, and it talks without asking ARP.
    await lab.addGuest('clone');
    await lab.addNic('clone', 'eth0', {
      vif: 'zcv9.0',
      bridge: 'br0',
      mac: MAC_ORIG,
      ip: `${IP_ORIG}/24`,
    });
    await lab.exec(lab.ns('clone'), 'ip', [
      ...['neigh', 'replace', IP_CLIENT, 'lladdr', MAC_CLIENT, 'dev', 'eth0', 'nud', 'permanent'],
    ]);
    const fromClone: Capture = await lab.capture(lab.ns('client'), 'eth0', [
      ...['src', 'host', IP_ORIG, 'and', 'icmp[icmptype]', '==', 'icmp-echo'],
    ]);
    const toClone: Capture = await lab.capture(lab.ns('clone'), 'eth0', [], true);
    const clonePings = pinger(lab.ns('clone'), IP_CLIENT);
    const clientPings = pinger(lab.ns('client'), IP_ORIG);
    await sleep(300);

    // postinst: vmclone upgrade first (the old monitor still runs) ...
    const paths = zynclonePaths(join(fx.dir, 'root'));
    const report = await upgrade({ paths, xs: fx.xs }, { dryRun: false });
    expect(report.parts.find((p) => p.part === 'xenstore')).toMatchObject({ migrate: true });
    expect(await fx.xs.read(LAYOUT_VERSION_PATH)).toBe(String(XENSTORE_LAYOUT_VERSION));

    // ... then the net monitor restarts (systemd stop with KillMode=process, start) ...
    const stopped = new Promise<number | null>((r) => old.once('exit', (code) => r(code)));
    old.kill('SIGTERM');
    expect(await stopped).toBe(0);
    await sleep(500); // no monitor at all while the clone keeps sending
    const ruleset = Number(await fx.xs.read(`${NET_ROOT}/ruleset-generation`));
    old = startMonitor();
    // ... and the new one reads the tree the old one left and re-applies it.
    const deadline = Date.now() + 10_000;
    while ((await monitorPid()) !== String(old.pid) && Date.now() < deadline) await sleep(50);
    expect(await monitorPid()).toBe(String(old.pid));
    expect(await fx.waitAck('web', gen)).toMatchObject({ allowedCloneVifs: [] });
    while (Number(await fx.xs.read(`${NET_ROOT}/ruleset-generation`)) <= ruleset) {
      if (Date.now() > deadline) throw new Error('the new monitor committed no ruleset');
      await sleep(50);
    }
    await sleep(300);

    const sent = await clonePings.stop();
    await clientPings.stop();
    expect(sent).toBeGreaterThan(10);
    expect(await fromClone.stop()).toEqual([]);
    expect(await toClone.stop()).toEqual([]);
    // The original was reachable the whole time and still is.
    expect(await lab.ping(lab.ns('client'), IP_ORIG)).toBe(true);
    old.kill('SIGTERM');
  });
});
