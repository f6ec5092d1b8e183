// The net monitor against real packets: a bridge in a network-driver-domain
// namespace, an original and its clone with the SAME IP and MAC, a client, and
// a XenStore server. What a user would check: the clone is invisible, the
// original keeps answering, allowed vifs pass, and a dead monitor leaks nothing.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/daemons/common/log.js';
import { NetMonitor, ensureTable } from '../../../src/daemons/net-monitor/monitor.js';
import { type NftExecutor, createNftExecutor } from '../../../src/daemons/net-monitor/nft-exec.js';
import { bundleDaemon } from '../../bundle.js';
import { skipIfUnavailable } from '../../prerequisites.js';
import { type Capture, Lab, labUnavailable, must, sleep } from './lab.js';
import { NET_ROOT, type VmSpec, XsFixture } from './xs-helpers.js';

const unavailable = labUnavailable(['ip', 'nft', 'python3', 'tcpdump', 'arping', 'ping']);
if (unavailable) console.warn(`net monitor packet tests skipped: ${unavailable}`);

const MAC_ORIG = '02:00:00:00:05:00';
const MAC_CLIENT = '02:00:00:00:07:00';
const IP_ORIG = '10.99.0.10';
const IP_CLIENT = '10.99.0.20';
const IP_CLONE_NIC1 = '10.99.1.30';
const IP_CLONE2 = '10.99.0.40';
const spec = { table: 'zynclone', cloneVifPrefix: 'zcv' };

function web(over: Partial<VmSpec> = {}): VmSpec {
  return {
    state: 'running',
    cloneVifs: { 0: { name: 'zcv9.0', masked: '1' }, 1: { name: 'zcv9.1', masked: '1' } },
    originalVifs: { 0: { name: 'vif5.0', masked: '0' } },
    ...over,
  };
}

describe.skipIf(skipIfUnavailable(unavailable))('net monitor with real packets', () => {
  let lab: Lab;
  let fx: XsFixture;
  let nft: NftExecutor;
  let monitor: NetMonitor | undefined;
  let child: ChildProcess | undefined;
  let bundle: string;
  const logs: string[] = [];
  // Running for the whole file: any frame from the clone's conflicting vif is a leak.
  let leakFromClone: Capture;
  let leakToClone: Capture;

  beforeAll(async () => {
    lab = await Lab.create('nm');
    fx = await XsFixture.start();
    await lab.addProductionNet('10.99.0', { orig: MAC_ORIG, client: MAC_CLIENT });
    await lab.addBridge('br1', '10.99.1.1/24');

    const gen = await fx.publish('web', web());
    nft = createNftExecutor({ netns: lab.netdd });
    await ensureTable(nft, spec);
    monitor = new NetMonitor({
      xs: fx.xs,
      nft,
      spec,
      log: createLogger('net-monitor', { write: (l) => logs.push(l), level: 'debug' }),
    });
    await monitor.start();
    await fx.waitAck('web', gen);

    // The clone's vifs appear only now, as on a real host: after the standing rule.
    await lab.addGuest('clone');
    await lab.addNic('clone', 'eth0', {
      vif: 'zcv9.0',
      bridge: 'br0',
      mac: MAC_ORIG,
      ip: `${IP_ORIG}/24`,
    });
    await lab.addNic('clone', 'eth1', {
      vif: 'zcv9.1',
      bridge: 'br1',
      mac: '02:00:00:00:09:01',
      ip: `${IP_CLONE_NIC1}/24`,
    });
    // The clone talks to the client without asking ARP first, so its frames really try to cross.
    await must('ip', [
      ...['-n', lab.ns('clone'), 'neigh', 'replace', IP_CLIENT, 'lladdr', MAC_CLIENT],
      ...['dev', 'eth0', 'nud', 'permanent'],
    ]);
    leakFromClone = await lab.capture(lab.ns('client'), 'eth0', [
      ...['src', 'host', IP_ORIG, 'and', 'icmp[icmptype]', '==', 'icmp-echo'],
    ]);
    leakToClone = await lab.capture(lab.ns('clone'), 'eth0', [], true);

    bundle = join(fx.dir, 'net-monitor.mjs');
    await bundleDaemon('runNetMonitor', 'net-monitor', bundle);
  });

  afterAll(async () => {
    child?.kill('SIGKILL');
    await monitor?.stop().catch(() => {});
    await nft?.close().catch(() => {});
    await lab?.destroy();
    await fx?.close();
  });

  async function clonePingsClient(): Promise<void> {
    // Expected to fail while locked; what matters is whether the client saw anything.
    await lab.exec(lab.ns('clone'), 'ping', [
      '-n',
      '-q',
      '-c',
      '3',
      '-i',
      '0.2',
      '-W',
      '1',
      IP_CLIENT,
    ]);
  }

  it('keeps a same-IP, same-MAC clone invisible while the original answers', async () => {
    await clonePingsClient();
    expect(await lab.reaches(lab.ns('client'), IP_ORIG)).toBe(true);
    // -b: every probe is a broadcast, so a second answerer on the segment would reply to each.
    const arping = await lab.exec(lab.ns('client'), 'arping', [
      '-b',
      '-c',
      '3',
      '-I',
      'eth0',
      IP_ORIG,
    ]);
    const replies = arping.stdout.split('\n').filter((l) => /reply from/i.test(l));
    expect(arping.stdout).toContain('Sent 3 probes');
    expect(replies).toHaveLength(3);
    expect(arping.stdout).toContain('Received 3 response(s)');
    // Nor can the clone reach the network domain itself.
    expect(await lab.ping(lab.ns('clone'), '10.99.1.1', 1)).toBe(false);
  });

  it('allows exactly the clone vif XenStore unmasks, and locks it again', async () => {
    const gen = await fx.publish(
      'web',
      web({
        cloneVifs: { 0: { name: 'zcv9.0', masked: '1' }, 1: { name: 'zcv9.1', masked: '0' } },
      }),
    );
    const applied = await fx.waitAck('web', gen);
    expect(applied).toEqual({
      generation: gen,
      allowedCloneVifs: ['zcv9.1'],
      droppedOriginalVifs: [],
    });
    expect(await lab.reaches(lab.netdd, IP_CLONE_NIC1)).toBe(true);
    // The other vif stays dark.
    await clonePingsClient();

    const gen2 = await fx.publish('web', web());
    expect((await fx.waitAck('web', gen2)).allowedCloneVifs).toEqual([]);
    expect(await lab.ping(lab.netdd, IP_CLONE_NIC1, 1)).toBe(false);
    expect(Number(await fx.xs.read(`${NET_ROOT}/ruleset-generation`))).toBeGreaterThanOrEqual(3);
  });

  it('darkens the original masked vif only while its clone is active or running', async () => {
    const masked = { 0: { name: 'vif5.0', masked: '1' as const } };
    let gen = await fx.publish('web', web({ originalVifs: masked }));
    expect((await fx.waitAck('web', gen)).droppedOriginalVifs).toEqual(['vif5.0']);
    expect(await lab.ping(lab.ns('client'), IP_ORIG, 1)).toBe(false);

    gen = await fx.publish('web', web({ state: 'inactive', originalVifs: masked }));
    expect((await fx.waitAck('web', gen)).droppedOriginalVifs).toEqual([]);
    expect(await lab.reaches(lab.ns('client'), IP_ORIG)).toBe(true);

    gen = await fx.publish('web', web({ state: 'active', originalVifs: masked }));
    await fx.waitAck('web', gen);
    expect(await lab.ping(lab.ns('client'), IP_ORIG, 1)).toBe(false);

    // Removing the clone lifts the lockdown and withdraws the acknowledgement.
    await fx.remove('web');
    await fx.waitGone(`${NET_ROOT}/ack/web`);
    expect(await fx.xs.tryRead(`${NET_ROOT}/applied/web`)).toBeUndefined();
    expect(await lab.reaches(lab.ns('client'), IP_ORIG)).toBe(true);
  });

  it('covers a clone vif on no bridge, with an address in the network domain', async () => {
    await lab.addGuest('clone3');
    await lab.addNic('clone3', 'eth0', {
      vif: 'zcv12.0',
      bridge: undefined,
      mac: '02:00:00:00:0c:00',
      ip: '10.99.2.2/24',
    });
    await must('ip', ['-n', lab.netdd, 'addr', 'add', '10.99.2.1/24', 'dev', 'zcv12.0']);
    expect(await lab.ping(lab.netdd, '10.99.2.2', 1)).toBe(false);
    expect(await lab.ping(lab.ns('clone3'), '10.99.2.1', 1)).toBe(false);

    const spec: VmSpec = {
      state: 'running',
      cloneVifs: { 0: { name: 'zcv12.0', masked: '0' } },
      originalVifs: {},
    };
    await fx.waitAck('solo', await fx.publish('solo', spec));
    expect(await lab.reaches(lab.netdd, '10.99.2.2')).toBe(true);
    expect(await lab.reaches(lab.ns('clone3'), '10.99.2.1')).toBe(true);

    await fx.remove('solo');
    await fx.waitGone(`${NET_ROOT}/ack/solo`);
    expect(await lab.ping(lab.netdd, '10.99.2.2', 1)).toBe(false);
  });

  it('leaks nothing while the monitor is killed, and reconciles on restart', async () => {
    await monitor!.stop();
    monitor = undefined;
    const startChild = () => lab.startNetMonitor(bundle, fx.socketPath, logs);
    child = startChild();
    let gen = await fx.publish(
      'web',
      web({
        cloneVifs: { 0: { name: 'zcv9.0', masked: '1' }, 1: { name: 'zcv9.1', masked: '0' } },
      }),
    );
    await fx.waitAck('web', gen);
    expect(await lab.reaches(lab.netdd, IP_CLONE_NIC1)).toBe(true);
    expect(await fx.xs.read('/tool/zynclone/daemons/net-monitor/pid')).toBe(String(child.pid));

    const dead = new Promise((r) => child!.once('exit', r));
    child.kill('SIGKILL');
    await dead;
    // The table outlives its monitor: the allowed vif stays allowed, the rest dark.
    expect(await lab.reaches(lab.netdd, IP_CLONE_NIC1)).toBe(true);
    const sets = await must('ip', [
      'netns',
      'exec',
      lab.netdd,
      'nft',
      'list',
      'set',
      'bridge',
      'zynclone',
      'clone_allowed',
    ]);
    expect(sets).toContain('"zcv9.1"');

    // A new clone appears while nobody watches: the standing rule drops it.
    await lab.addGuest('clone2');
    await lab.addNic('clone2', 'eth0', {
      vif: 'zcv11.0',
      bridge: 'br0',
      mac: '02:00:00:00:0b:00',
      ip: `${IP_CLONE2}/24`,
    });
    const dbGen = await fx.publish('db', {
      state: 'running',
      cloneVifs: { 0: { name: 'zcv11.0', masked: '0' } },
      originalVifs: {},
    });
    gen = await fx.publish('web', web());
    expect(await lab.ping(lab.ns('client'), IP_CLONE2, 1)).toBe(false);
    expect(await fx.xs.tryRead(`${NET_ROOT}/ack/db`)).toBeUndefined();

    child = startChild();
    expect((await fx.waitAck('db', dbGen)).allowedCloneVifs).toEqual(['zcv11.0']);
    expect((await fx.waitAck('web', gen)).allowedCloneVifs).toEqual([]);
    expect(await lab.reaches(lab.ns('client'), IP_CLONE2)).toBe(true);
    expect(await lab.ping(lab.netdd, IP_CLONE_NIC1, 1)).toBe(false);

    const stopped = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await stopped).toBe(0);
    // A clean stop keeps the table too.
    expect(await lab.reaches(lab.ns('client'), IP_CLONE2)).toBe(true);
    const lines = logs
      .join('')
      .split('\n')
      .filter((l) => l.startsWith('{'));
    expect(lines.map((l) => JSON.parse(l).component)).toContain('net-monitor');
  });

  it('never let a frame from or to the conflicting clone vif across the bridge', async () => {
    await sleep(200);
    expect(await leakFromClone.stop()).toEqual([]);
    expect(await leakToClone.stop()).toEqual([]);
  });
});
