// The daemons' shared helpers: JSON log lines and the XenStore heartbeat.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHeartbeat } from '../../../src/daemons/common/heartbeat.js';
import { createLogger } from '../../../src/daemons/common/log.js';
import { XsFixture } from './xs-helpers.js';

describe('createLogger', () => {
  it('writes one JSON object per line with time, level, component, msg and fields', () => {
    const lines: string[] = [];
    const log = createLogger('net-monitor', {
      write: (l) => lines.push(l),
      level: 'info',
      now: () => new Date('2024-01-02T03:04:05.000Z'),
    });
    log.debug('hidden');
    log.info('applied', { vm: 'web', generation: 3 });
    const err = Object.assign(new Error('nft failed: boom'), { code: 'NFT_FAILED' });
    log.child({ vm: 'db' }).error('pass failed', { error: err, msg: 'not overriding' });
    expect(lines).toHaveLength(2);
    expect(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n'))).toBe(true);
    expect(JSON.parse(lines[0]!)).toEqual({
      time: '2024-01-02T03:04:05.000Z',
      level: 'info',
      component: 'net-monitor',
      msg: 'applied',
      vm: 'web',
      generation: 3,
    });
    expect(JSON.parse(lines[1]!)).toMatchObject({
      level: 'error',
      msg: 'pass failed',
      vm: 'db',
      error: { message: 'nft failed: boom', code: 'NFT_FAILED' },
    });
  });

  it('survives fields that JSON cannot hold', () => {
    const lines: string[] = [];
    const log = createLogger('x', { write: (l) => lines.push(l) });
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    log.warn('odd', { loop, big: 10n });
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'odd', fields: 'unserialisable' });
  });
});

describe('startHeartbeat', () => {
  let fx: XsFixture;
  beforeAll(async () => {
    fx = await XsFixture.start();
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('writes heartbeat, heartbeat-ms, version and pid under daemons/<name>', async () => {
    const hb = startHeartbeat(fx.xs, 'net-monitor', '1.2.3', 60_000);
    try {
      const before = Date.now();
      await hb.beat();
      const base = '/tool/zynclone/daemons/net-monitor';
      expect(await fx.xs.read(`${base}/version`)).toBe('1.2.3');
      expect(await fx.xs.read(`${base}/pid`)).toBe(String(process.pid));
      expect(await fx.xs.read(`${base}/heartbeat-ms`)).toBe('60000');
      const beat = Number(await fx.xs.read(`${base}/heartbeat`));
      expect(beat).toBeGreaterThanOrEqual(before - 1000);
      expect(beat).toBeLessThanOrEqual(Date.now());
    } finally {
      hb.stop();
    }
    expect(() => startHeartbeat(fx.xs, '../evil', '1', 1000)).toThrow(/invalid daemon name/);
  });
});
