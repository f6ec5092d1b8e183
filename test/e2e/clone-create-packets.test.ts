// The first invariant, checked with real frames for `vmclone create` itself
// (clone-lockdown.test.ts checks `start`): from the moment the clone's
// domain exists until after create returns, its masked vif passes no frame
// in either direction, while its unmasked vif works; and a create whose
// lockdown is never acknowledged never lets the clone run and passes nothing.
//
// One lab for every case: the simulator with its network domain and the
// real net monitor (nftables), and a "production" namespace of the test's
// own, plugged into both production bridges (xenbr0, xenbr1), that keeps
// sending marked broadcast frames and listens for the clone's. web01's clone
// has vif 0 masked (on xenbr0 in production, so on the isolation bridge) and
// vif 1 unmasked (on xenbr1). Inside the clone's namespace a sender starts as
// soon as its domain exists; a capture on every interface of the network
// domain sees where each frame went.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { skipWithout } from '../prerequisites.js';
import { CloneHost, E2E_NEEDS, type RunOut, canRunE2e, run } from './clone-helpers.js';

const FRAMES = join(import.meta.dirname, 'frames.py');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** frames.py in a network namespace; its output lines, once stopped. */
class Frames {
  private readonly lines: string[] = [];
  private readonly exited: Promise<unknown>;
  private constructor(private readonly child: ChildProcess) {
    let partial = '';
    child.stdout!.on('data', (b: Buffer) => {
      const text = partial + b.toString();
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      this.lines.push(...parts);
    });
    this.exited = new Promise((r) => child.once('exit', r));
  }

  static start(netns: string, args: readonly string[]): Frames {
    return new Frames(
      spawn('ip', ['netns', 'exec', netns, '/usr/bin/python3', FRAMES, ...args], {
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
  }

  async stop(): Promise<string[]> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
    }
    await this.exited;
    return this.lines;
  }
}

interface Watched {
  readonly create: RunOut;
  /** States of the clone's domain seen while create ran. */
  readonly states: string[];
  /** `cap IFNAME in|out MARKER` lines of the network domain. */
  readonly captured: string[];
  readonly production: string[];
  /** The clone's sender; empty if its domain never got a namespace. */
  readonly clone: string[];
  readonly maskedVif: string;
  readonly unmaskedVif: string;
}

/** Frames received on `ifname` whose marker starts `zc:<label>` (label `prod`, or `clone:eth1`, ...). */
const rx = (lines: readonly string[], ifname: string, label: string) =>
  lines.filter((l) => l.startsWith(`rx ${ifname} zc:${label}`)).length;
const sent = (lines: readonly string[], ifname: string) =>
  Number(lines.find((l) => l.startsWith(`sent ${ifname} `))?.split(' ')[2] ?? 0);

describe.skipIf(skipWithout(canRunE2e, E2E_NEEDS))(
  'vmclone create: masked vifs pass no frame, captured',
  () => {
    let host: CloneHost;
    const productionNs = `zcpk-${process.pid}`;
    let netdd: string;

    beforeAll(async () => {
      host = await CloneHost.create();
      netdd = `${host.netPrefix}-netdd`;
      if (host.netMonitor !== 'real') {
        throw new Error('the real net monitor did not start, so nothing applies the lockdown');
      }
      const ok = async (argv: string[]) => {
        const r = await run('ip', argv, host.env);
        expect(r.code, `ip ${argv.join(' ')}: ${r.stderr}`).toBe(0);
      };
      await ok(['netns', 'add', productionNs]);
      for (const [i, bridge] of ['xenbr0', 'xenbr1'].entries()) {
        const port = `zpk${process.pid % 1e7}${i}`;
        await ok([
          '-n',
          netdd,
          'link',
          'add',
          port,
          'type',
          'veth',
          'peer',
          'name',
          `eth${i}`,
          'netns',
          productionNs,
        ]);
        await ok(['-n', netdd, 'link', 'set', port, 'master', bridge, 'up']);
        await ok(['-n', productionNs, 'link', 'set', `eth${i}`, 'up']);
      }
      expect((await host.vmclone(['config', 'web01', '--set', 'clone_vif_mask=0'])).code).toBe(0);
    }, 120_000);

    afterEach(async () => {
      await host.vmclone(['remove', 'web01', '-q']);
    }, 60_000);

    afterAll(async () => {
      await run('ip', ['netns', 'delete', productionNs], process.env);
      await host?.dispose();
    }, 60_000);

    /** Runs `vmclone create web01 ARGS` with frames flowing from before it starts until after it returns. */
    async function createWatched(args: readonly string[]): Promise<Watched> {
      const capture = Frames.start(netdd, ['capture']);
      const production = Frames.start(productionNs, ['send', 'prod', 'eth0', 'eth1']);
      let clone: Frames | undefined;
      const states: string[] = [];
      let maskedVif = '';
      let unmaskedVif = '';
      try {
        await sleep(300);
        let finished = false;
        const created = host.vmclone(['create', 'web01', ...args, '-q']).finally(() => {
          finished = true;
        });
        while (!finished) {
          const d = (await host.domains()).get('web01-clone');
          if (d !== undefined) {
            states.push(d.state);
            const ns = `${host.netPrefix}-d${d.domid}`;
            if (clone === undefined && existsSync(`/run/netns/${ns}`)) {
              clone = Frames.start(ns, ['send', 'clone', 'eth0', 'eth1']);
            }
            maskedVif ||= (await host.xsRead('/tool/zynclone/vm/web01/clone-vif/0/name')) ?? '';
            unmaskedVif ||= (await host.xsRead('/tool/zynclone/vm/web01/clone-vif/1/name')) ?? '';
          }
          await sleep(20);
        }
        const create = await created;
        await sleep(1000);
        return {
          create,
          states,
          captured: await capture.stop(),
          production: await production.stop(),
          clone: (await clone?.stop()) ?? [],
          maskedVif,
          unmaskedVif,
        };
      } finally {
        await Promise.all([capture.stop(), production.stop(), clone?.stop()]);
      }
    }

    it.each([['online'], ['offline'], ['memory']])(
      'an %s create: no frame through the masked vif, either way; the unmasked vif works',
      async (kind) => {
        if (kind === 'offline') expect((await host.xl('shutdown', '-w', 'web01')).code).toBe(0);
        let w: Watched;
        try {
          w = await createWatched([`--${kind}`]);
        } finally {
          if (kind === 'offline') await host.xl('create', join(host.root, 'etc/xen/web01.cfg'));
        }
        expect(w.create.code, w.create.stderr).toBe(0);
        expect(w.states.length, 'the clone domain was seen while create ran').toBeGreaterThan(0);
        expect(w.maskedVif).toMatch(/^zcv[0-9a-f]+\.0$/);
        expect(w.unmaskedVif).toMatch(/^zcv[0-9a-f]+\.1$/);
        const show = JSON.stringify({ ...w, captured: w.captured.slice(0, 40) });

        // The clone did send on both vifs once it ran (so "nothing passed" is not for want of trying).
        expect(sent(w.clone, 'eth0'), show).toBeGreaterThan(0);
        expect(sent(w.clone, 'eth1'), show).toBeGreaterThan(0);
        // Its masked vif: the capture there sees the clone's frames arrive and none go on.
        const masked = w.captured.filter((l) => l.includes(':clone:eth0'));
        expect(masked.length, show).toBeGreaterThan(0);
        expect(
          masked.filter((l) => l !== `cap ${w.maskedVif} in zc:clone:eth0`),
          show,
        ).toEqual([]);
        expect(rx(w.production, 'eth0', 'clone') + rx(w.production, 'eth1', 'clone:eth0')).toBe(0);
        // ... and nothing of production reaches it, nor the clone's eth0.
        expect(
          w.captured.filter((l) => l.startsWith(`cap ${w.maskedVif} `) && l.includes(':prod:')),
        ).toEqual([]);
        expect(rx(w.clone, 'eth0', 'prod'), show).toBe(0);

        // The unmasked vif works both ways, and the capture sees it on the production bridge.
        expect(rx(w.production, 'eth1', 'clone:eth1'), show).toBeGreaterThan(0);
        expect(rx(w.clone, 'eth1', 'prod:eth1'), show).toBeGreaterThan(0);
        expect(w.captured, show).toContain(`cap ${w.unmaskedVif} out zc:prod:eth1`);
      },
      90_000,
    );

    it('a create whose lockdown is never acknowledged: the clone never runs, nothing passes, and it is destroyed', async () => {
      expect(
        (await host.vmclone(['config', 'web01', '--set', 'lockdown_ack_timeout_ms=1500'])).code,
      ).toBe(0);
      host.ack!.pause();
      let w: Watched;
      try {
        w = await createWatched(['--online']);
      } finally {
        host.ack!.resume();
        await host.vmclone(['config', 'web01', '--unset', 'lockdown_ack_timeout_ms']);
      }
      expect(w.create.code, w.create.stderr).toBe(7);
      expect(w.create.stderr).toMatch(/LOCKDOWN_TIMEOUT/);
      const show = JSON.stringify({ ...w, captured: w.captured.slice(0, 40) });
      expect(w.states.length, show).toBeGreaterThan(0);
      for (const s of w.states) expect(s, show).toContain('p');
      // Paused throughout: the clone could not send a frame, and none reached it.
      expect(sent(w.clone, 'eth0') + sent(w.clone, 'eth1'), show).toBe(0);
      expect(
        w.clone.filter((l) => l.startsWith('rx ')),
        show,
      ).toEqual([]);
      expect(
        w.captured.filter((l) => /^cap zcv/.test(l)),
        show,
      ).toEqual([]);
      expect(
        w.production.filter((l) => l.includes(':clone:')),
        show,
      ).toEqual([]);
      // The capture worked: production's own frames crossed the bridges.
      expect(
        w.captured.some((l) => l.includes(':prod:')),
        show,
      ).toBe(true);
      expect(await host.leftovers('web01')).toEqual([]);
    }, 60_000);
  },
);
