// Guests as network namespaces on real bridges: they ping each other, a paused
// guest goes silent, and a twin with the same IP and MAC really conflicts.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simPaths } from '../../src/sim/paths.js';
import { skipWithout } from '../prerequisites.js';
import { SimFixture, exec, isRoot } from './helpers.js';

let fx: SimFixture;
let prefix: string;

function guest(name: string, mac: string, ip: string): string {
  const file = join(fx.root, `${name}.cfg`);
  writeFileSync(
    file,
    `name = "${name}"\nmemory = 16\nvif = [ 'mac=${mac},bridge=xenbr0' ]\nsim_ip = [ "${ip}/24" ]\n`,
  );
  return file;
}

async function inGuest(domid: number, ...cmd: string[]) {
  return exec('ip', ['netns', 'exec', `${prefix}-d${domid}`, ...cmd]);
}

/** `arping` from a guest, broadcasting every probe: probes sent and replies received. */
async function arping(domid: number, ip: string) {
  const r = await inGuest(domid, 'arping', '-b', '-c', '2', '-I', 'eth0', ip);
  const sent = Number(/Sent (\d+) probes/.exec(r.stdout)?.[1] ?? Number.NaN);
  const received = Number(/Received (\d+) response/.exec(r.stdout)?.[1] ?? Number.NaN);
  return { sent, received };
}

describe.skipIf(skipWithout(isRoot, 'root (network namespaces)'))(
  'simulated network (root)',
  () => {
    beforeAll(async () => {
      fx = await SimFixture.create('zc-sim-net-');
      prefix = simPaths(fx.root).prefix;
      const up = await fx.sim('up');
      expect(up.stdout).toContain(`network: namespaces ${prefix}-*`);
      for (const [name, mac, ip] of [
        ['a', '00:16:3e:00:10:01', '10.77.0.10'],
        ['b', '00:16:3e:00:10:02', '10.77.0.11'],
      ] as const) {
        const r = await fx.xl('create', '-q', guest(name, mac, ip));
        expect(r.code, r.stderr).toBe(0);
      }
    });

    afterAll(async () => {
      await fx?.dispose();
    });

    it('puts each vif on its bridge in the netdd namespace, named vif<domid>.<devid>', async () => {
      const r = await exec('ip', [
        '-n',
        `${prefix}-netdd`,
        '-o',
        'link',
        'show',
        'master',
        'xenbr0',
      ]);
      expect(r.stdout).toMatch(/vif1\.0@/);
      expect(r.stdout).toMatch(/vif2\.0@/);
      const eth = await inGuest(1, 'ip', '-o', 'addr', 'show', 'dev', 'eth0');
      expect(eth.stdout).toContain('10.77.0.10/24');
    });

    it('lets two guests ping each other; a paused guest answers nothing', async () => {
      expect((await inGuest(1, 'ping', '-c', '1', '-W', '2', '10.77.0.11')).code).toBe(0);
      await fx.xl('pause', 'b');
      expect((await inGuest(1, 'ping', '-c', '1', '-W', '1', '10.77.0.11')).code).not.toBe(0);
      await fx.xl('unpause', 'b');
      expect((await inGuest(1, 'ping', '-c', '1', '-W', '2', '10.77.0.11')).code).toBe(0);
    });

    it('shows the conflict of a twin with the same IP and MAC', async () => {
      const alone = await arping(1, '10.77.0.11');
      expect([alone.sent, alone.received]).toEqual([2, 2]);
      const twin = await fx.xl('create', '-q', guest('b-twin', '00:16:3e:00:10:02', '10.77.0.11'));
      expect(twin.code, twin.stderr).toBe(0);
      const both = await arping(1, '10.77.0.11');
      // Every probe is answered twice: once by each guest.
      expect([both.sent, both.received]).toEqual([2, 4]);
    });
  },
);
