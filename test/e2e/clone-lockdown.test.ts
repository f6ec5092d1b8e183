// Issue 9 §1: a clone started after its mask was tightened must come up
// locked, whether or not clone_monitor runs: the lockdown `start` publishes
// (and waits for the ack of) and the bridges in the clone's domain config
// come from the configuration of now, never from the one at creation.
// Checked with real packets: the clone pings win01 on the production bridge
// and tcpdump on win01's port of that bridge sees none of its frames, while the original's
// identical pings are seen.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { XsClient } from '../../src/xenstore/index.js';
import { skipWithout } from '../prerequisites.js';
import {
  CloneHost,
  type CloneMonitorProcess,
  E2E_NEEDS,
  type CloneHost as Host,
  canRunE2e,
  run,
} from './clone-helpers.js';

const WIN01 = { ip: '10.77.0.20', mac: '00:16:3e:5a:00:02' };
/** A size no other traffic of the demo has, so the capture counts only the test's pings. */
const PING_SIZE = '1111';

interface Snapshot {
  generation: string | undefined;
  state: string | undefined;
  masked: (string | undefined)[];
}

/** Every publication of vm/web01 seen while it runs: generation and the clone vifs' masked nodes. */
class PublicationRecorder {
  private constructor(
    readonly seen: readonly Snapshot[],
    private readonly xs: XsClient,
    private readonly watch: { close(): Promise<void> },
    private readonly loop: Promise<void>,
  ) {}

  static async start(socket: string, vm: string): Promise<PublicationRecorder> {
    const xs = await XsClient.connect({ path: socket, transport: 'socket', reconnect: false });
    const base = `/tool/zynclone/vm/${vm}`;
    const watch = await xs.watch(base);
    const seen: Snapshot[] = [];
    const loop = (async () => {
      for await (const _ of watch) {
        const snap = await xs.transaction(async (tx) => {
          const generation = await tx.tryRead(`${base}/generation`);
          const state = await tx.tryRead(`${base}/state`);
          let devids: string[] = [];
          try {
            devids = await tx.directory(`${base}/clone-vif`);
          } catch {
            // no clone vif published (yet)
          }
          const masked = await Promise.all(
            devids.sort().map((d) => tx.tryRead(`${base}/clone-vif/${d}/masked`)),
          );
          return { generation, state, masked };
        });
        if (seen.at(-1)?.generation !== snap.generation) seen.push(snap);
      }
    })().catch(() => {});
    return new PublicationRecorder(seen, xs, watch, loop);
  }

  async close(): Promise<void> {
    await this.watch.close().catch(() => {});
    await this.xs.close().catch(() => {});
    await this.loop;
  }
}

/**
 * tcpdump on a port of the production bridge (win01's vif) in the network
 * domain, counting the test's pings: a frame the clone sends win01 can only
 * reach it through there.
 */
class Capture {
  private lines: string[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async start(netns: string, port: string): Promise<Capture> {
    const child = spawn(
      'ip',
      ['netns', 'exec', netns, 'tcpdump', '-i', port, '-nn', '-l', '-p', 'icmp and greater 1000'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const cap = new Capture(child);
    child.stdout!.on('data', (b: Buffer) =>
      cap.lines.push(...b.toString().split('\n').filter(Boolean)),
    );
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (b: Buffer) => {
        err += b.toString();
        if (err.includes('listening on')) resolve();
      });
      child.once('exit', () => reject(new Error(`tcpdump exited: ${err}`)));
    });
    return cap;
  }

  /** Packets seen so far (after giving the kernel a moment to deliver them). */
  async count(): Promise<number> {
    await new Promise((r) => setTimeout(r, 500));
    return this.lines.length;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

async function pingWin01From(host: Host, domid: number): Promise<number | null> {
  const ns = `${host.netPrefix}-d${domid}`;
  // A static neighbour: no ARP, so the only frames are the pings themselves.
  await run(
    'ip',
    [
      '-n',
      ns,
      'neigh',
      'replace',
      WIN01.ip,
      'lladdr',
      WIN01.mac,
      'dev',
      'eth0',
      'nud',
      'permanent',
    ],
    host.env,
  );
  const r = await run(
    'ip',
    ['netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '1', '-s', PING_SIZE, WIN01.ip],
    host.env,
  );
  return r.code;
}

describe.skipIf(skipWithout(canRunE2e, E2E_NEEDS))(
  'a clone started after its mask was tightened',
  () => {
    let host: CloneHost;
    let monitor: CloneMonitorProcess | undefined;

    beforeAll(async () => {
      host = await CloneHost.create();
    }, 120_000);

    afterEach(async () => {
      await monitor?.stop();
      monitor = undefined;
      await host.vmclone(['remove', 'web01', '-q']);
      await host.vmclone(['config', 'web01', '--unset', 'clone_vif_mask']);
    }, 60_000);

    afterAll(async () => {
      await host?.dispose();
    }, 60_000);

    async function vm(...args: string[]) {
      const r = await host.vmclone(args);
      expect(r.code, `vmclone ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r;
    }

    it.each([
      ['online', 'running'],
      ['online', 'dead'],
      ['memory', 'running'],
      ['memory', 'dead'],
    ])(
      'an %s clone comes up locked (clone_monitor %s)',
      async (kind, monitorState) => {
        if (monitorState === 'running') monitor = await host.startCloneMonitor();
        await vm('config', 'web01', '--set', 'clone_vif_mask=none');
        if (kind === 'online') {
          await vm('create', 'web01', '--online', '-q');
          await vm('stop', 'web01', '--force', '-q');
        } else {
          // Kept in its memory image: `start` is the restore path.
          await vm('create', 'web01', '--memory', '--no-start', '-q');
        }
        await vm('deactivate', 'web01', '-q');
        await vm('config', 'web01', '--set', 'clone_vif_mask=all');

        const socket = host.env.XENSTORED_PATH!;
        const recorder = await PublicationRecorder.start(socket, 'web01');
        try {
          await vm('start', 'web01', '-q');
        } finally {
          await recorder.close();
        }
        // Every lockdown published for the running clone masked every clone vif
        // (the inactive ones before may be stale: no clone domain, nothing to lock).
        const during = recorder.seen.filter((p) => p.state === 'running');
        expect(during.length).toBeGreaterThan(0);
        for (const p of during) {
          expect(p.masked.length, JSON.stringify(recorder.seen)).toBe(2);
          expect(p.masked, JSON.stringify(recorder.seen)).toEqual(['1', '1']);
        }
        expect(await host.xsRead('/tool/zynclone/vm/web01/clone-vif-mask')).toBe('all');

        // Frontend: the clone's vif was born on the isolation bridge.
        const vif0 = (await host.xsRead('/tool/zynclone/vm/web01/clone-vif/0/name'))!;
        const netdd = `${host.netPrefix}-netdd`;
        const link = await run('ip', ['-n', netdd, '-o', 'link', 'show', vif0], host.env);
        expect(link.stdout).toContain('master zc-isolated');

        // Real packets: nothing of the clone's reaches the production bridge.
        const doms = await host.domains();
        const capture = await Capture.start(netdd, `vif${doms.get('win01')!.domid}.0`);
        try {
          expect(await pingWin01From(host, doms.get('web01-clone')!.domid)).not.toBe(0);
          expect(await capture.count()).toBe(0);
          // The capture works: the original's identical pings are seen and answered.
          expect(await pingWin01From(host, doms.get('web01')!.domid)).toBe(0);
          expect(await capture.count()).toBeGreaterThanOrEqual(3);
        } finally {
          await capture.stop();
        }
        const applied = await host.xsRead('/tool/zynclone/net/applied/web01');
        if (host.netMonitor === 'real') {
          expect(JSON.parse(applied ?? '{}')).toMatchObject({ allowedCloneVifs: [] });
        }
      },
      90_000,
    );

    it('refuses a production bridge as the isolation bridge, in the config and at create and start', async () => {
      // web01's vifs use xenbr0 and xenbr1.
      const set = await host.vmclone(['config', 'web01', '--set', 'isolation_bridge=xenbr0']);
      expect(set.code).toBe(6);
      expect(set.stderr).toMatch(
        /isolation_bridge xenbr0 is a production bridge.*\[ISOLATION_BRIDGE\]/,
      );
      expect((await host.vmclone(['config', 'web01', '--json'])).stdout).toContain(
        '"isolation_bridge": "zc-isolated"',
      );
      // base.json names no VM, so it cannot be checked when written: create and start refuse.
      const base = join(host.root, 'etc/xen/clone/base.json');
      const saved = existsSync(base) ? readFileSync(base, 'utf8') : undefined;
      try {
        await vm('create', 'web01', '--online', '--no-start', '-q');
        mkdirSync(dirname(base), { recursive: true });
        writeFileSync(base, JSON.stringify({ isolation_bridge: 'xenbr1' }));
        const start = await host.vmclone(['start', 'web01']);
        expect(start.code).toBe(6);
        expect(start.stderr).toMatch(/xenbr1 is a production bridge/);
        await vm('remove', 'web01', '-q');
        const create = await host.vmclone(['create', 'web01', '--online']);
        expect(create.code).toBe(6);
        expect(create.stderr).toMatch(/xenbr1 is a production bridge/);
        expect(await host.leftovers('web01')).toEqual([]);
      } finally {
        if (saved === undefined) rmSync(base, { force: true });
        else writeFileSync(base, saved);
      }
    }, 60_000);
  },
);
