import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureIsolationBridge, refuseProductionBridge } from '../../../src/core/clones/bridge.js';

// A directory laid out like /sys/class/net (bridge/ marks a bridge, brif/ lists its ports).
describe('isolation bridge', () => {
  let sys: string;
  beforeEach(() => {
    sys = mkdtempSync(join(tmpdir(), 'zc-sysnet-'));
  });
  afterEach(() => rmSync(sys, { recursive: true, force: true }));

  function bridge(name: string, ports: string[]) {
    mkdirSync(join(sys, name, 'bridge'), { recursive: true });
    for (const p of ports) mkdirSync(join(sys, name, 'brif', p), { recursive: true });
  }

  it('accepts a bridge whose ports are all clone vifs', async () => {
    bridge('zc-isolated', ['zcl0a1b2c3d.0', 'zcl0a1b2c3d.1']);
    await expect(ensureIsolationBridge('zc-isolated', 'zcl', { sysNet: sys })).resolves.toBe(
      'exists',
    );
  });

  it('refuses a bridge with an uplink, naming it', async () => {
    bridge('zc-isolated', ['zcl0a1b2c3d.0', 'eth0']);
    await expect(
      ensureIsolationBridge('zc-isolated', 'zcl', { sysNet: sys }),
    ).rejects.toMatchObject({
      code: 'ISOLATION_BRIDGE',
      message: expect.stringContaining('eth0'),
    });
  });

  it('refuses an interface of that name that is not a bridge', async () => {
    mkdirSync(join(sys, 'zc-isolated'));
    await expect(
      ensureIsolationBridge('zc-isolated', 'zcl', { sysNet: sys }),
    ).rejects.toMatchObject({
      code: 'ISOLATION_BRIDGE',
    });
  });

  it('creates a missing bridge with ip, and reports a failure', async () => {
    const calls: string[][] = [];
    const made = await ensureIsolationBridge('zc-isolated', 'zcl', {
      sysNet: sys,
      ip: async (args) => {
        calls.push([...args]);
      },
    });
    expect(made).toBe('created');
    expect(calls).toEqual([
      ['link', 'add', 'name', 'zc-isolated', 'type', 'bridge'],
      ['link', 'set', 'zc-isolated', 'up'],
    ]);
    await expect(
      ensureIsolationBridge('zc-isolated', 'zcl', {
        sysNet: sys,
        ip: async () => {
          throw new Error('Operation not permitted');
        },
      }),
    ).rejects.toThrow(/cannot create isolation bridge zc-isolated: Operation not permitted/);
  });

  it('refuses a bridge the VM uses, and one carrying production ports, naming them', () => {
    const opts = { vm: 'web', clonePrefix: 'zcl', productionBridges: ['xenbr0'], sysNet: sys };
    expect(() => refuseProductionBridge('xenbr0', opts)).toThrow(
      /isolation_bridge xenbr0 is a production bridge: a vif of web/,
    );
    bridge('br-lan', ['vif3.0', 'eth1']);
    expect(() => refuseProductionBridge('br-lan', opts)).toThrow(
      /br-lan has ports that are not clone vifs \((eth1, vif3\.0|vif3\.0, eth1)\)/,
    );
    bridge('zc-isolated', ['zcl0a1b2c3d.0']);
    expect(() => refuseProductionBridge('zc-isolated', opts)).not.toThrow();
    expect(() => refuseProductionBridge('not-here-yet', opts)).not.toThrow();
  });
});
