// XenStore going away and coming back: the table keeps its state meanwhile,
// and the monitor reconciles fully once it is reachable again. Also the
// start-up rules: a missing table is created, an existing one is kept.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/daemons/common/log.js';
import { NetMonitor, ensureTable } from '../../../src/daemons/net-monitor/monitor.js';
import { type NftExecutor, createNftExecutor } from '../../../src/daemons/net-monitor/nft-exec.js';
import { XenstoreServer } from '../../../src/sim/xenstored/server.js';
import { XsClient } from '../../../src/xenstore/index.js';
import { skipIfUnavailable } from '../../prerequisites.js';
import { Lab, labUnavailable, must, sleep } from './lab.js';
import { NET_ROOT, Publisher } from './xs-helpers.js';

const unavailable = labUnavailable(['ip', 'nft', 'python3']);
const spec = { table: 'zctest', cloneVifPrefix: 'zcv' };

async function setElements(lab: Lab, family: string, set: string): Promise<string[]> {
  const out = await must('ip', [
    ...['netns', 'exec', lab.netdd, 'nft', '-j', 'list', 'set', family, spec.table, set],
  ]);
  const doc = JSON.parse(out) as { nftables: { set?: { elem?: string[] } }[] };
  return doc.nftables.flatMap((o) => o.set?.elem ?? []).sort();
}

describe.skipIf(skipIfUnavailable(unavailable))('net monitor and XenStore outages', () => {
  let lab: Lab;
  let dir: string;
  let nft: NftExecutor;

  beforeAll(async () => {
    lab = await Lab.create('nr');
    dir = mkdtempSync(join(tmpdir(), 'zc-netmon-rc-'));
    nft = createNftExecutor({ netns: lab.netdd });
  });

  afterAll(async () => {
    await nft?.close();
    await lab?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('creates a missing table with the standing rule, and keeps an existing one untouched', async () => {
    expect(await ensureTable(nft, spec)).toEqual(['bridge', 'inet', 'arp']);
    const rules = await must('ip', [
      'netns',
      'exec',
      lab.netdd,
      'nft',
      'list',
      'table',
      'bridge',
      spec.table,
    ]);
    expect(rules).toContain(
      'iifname "zcv*" iifname != @clone_allowed counter packets 0 bytes 0 drop',
    );
    await nft.run(`add element bridge ${spec.table} clone_allowed { "zcv1.0" }`);
    expect(await ensureTable(nft, spec)).toEqual([]);
    expect(await setElements(lab, 'bridge', 'clone_allowed')).toEqual(['zcv1.0']);
  });

  it('runs scripts through either backend and reports what nft refused', async () => {
    const cli = createNftExecutor({ netns: lab.netdd, backend: 'cli' });
    for (const exec of [nft, cli]) {
      expect((await exec.run('list tables')).stdout).toContain(`table bridge ${spec.table}`);
      const refused = exec.run(`delete element bridge ${spec.table} masked { "nosuch0" }\n`);
      await expect(refused).rejects.toMatchObject({ code: 'NFT_FAILED' });
      await expect(refused).rejects.toThrow(/nft failed: .*No such file or directory/);
    }
    await cli.close();
  });

  it('keeps the sets while XenStore is away and reconciles when it is back', async () => {
    const socketPath = join(dir, 'xs.sock');
    let server = await XenstoreServer.start({ socketPath });
    const fx = await XsClient.connect({ path: socketPath, transport: 'socket' });
    const xs = await XsClient.connect({
      path: socketPath,
      transport: 'socket',
      reconnect: { initialDelayMs: 10, maxDelayMs: 100 },
    });
    const logs: string[] = [];
    const monitor = new NetMonitor({
      xs,
      nft,
      spec,
      log: createLogger('net-monitor', { write: (l) => logs.push(l) }),
    });
    try {
      await monitor.start();
      const pub = new Publisher(fx);
      const gen = await pub.publish('web', {
        state: 'running',
        cloneVifs: { 0: { name: 'zcv4.0', masked: '0' } },
        originalVifs: { 0: { name: 'vif3.0', masked: '1' } },
      });
      await pub.waitAck('web', gen);
      expect(await setElements(lab, 'bridge', 'clone_allowed')).toEqual(['zcv4.0']);
      expect(await setElements(lab, 'inet', 'masked')).toEqual(['vif3.0']);

      await server.close();
      await sleep(300);
      // Nothing to read: the last lockdown stays exactly as it was.
      expect(await setElements(lab, 'bridge', 'clone_allowed')).toEqual(['zcv4.0']);
      expect(await setElements(lab, 'arp', 'masked')).toEqual(['vif3.0']);

      // A fresh xenstored (empty) with a different publication.
      server = await XenstoreServer.start({ socketPath });
      await fx.whenReady();
      pub.setGeneration('db', 4);
      const dbGen = await pub.publish('db', {
        state: 'active',
        cloneVifs: { 0: { name: 'zcv8.0', masked: '0' } },
        originalVifs: {},
      });
      expect(await pub.waitAck('db', dbGen)).toEqual({
        generation: 5,
        allowedCloneVifs: ['zcv8.0'],
        droppedOriginalVifs: [],
      });
      expect(await setElements(lab, 'bridge', 'clone_allowed')).toEqual(['zcv8.0']);
      expect(await setElements(lab, 'bridge', 'masked')).toEqual([]);
      expect(Number(await fx.read(`${NET_ROOT}/ruleset-generation`))).toBeGreaterThan(0);
      expect(logs.join('')).toContain('full reconcile');
    } finally {
      await monitor.stop();
      await xs.close();
      await fx.close();
      await server.close();
    }
  });
});
