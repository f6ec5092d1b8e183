// clone_guest_orchestrator's figures, all processes real: the simulator's
// xenstored and `zynclone orchestrator` as child processes, 100 well-behaved
// guests and one hostile guest as clients on their own domain sockets.
// - request -> accepted (the reply's watch event at the guest), p50/p99, with
//   100 guests asking, quiet and while the hostile guest floods 100k writes
//   and a watch flood; the ratio of the p99s;
// - the orchestrator's CPU and RSS, quiet and during the flood;
// - operations logged for a VM other than the requesting domain's (must be 0).
// Figures only; never fails on time.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { zynclonePaths } from '../src/core/paths.js';
import { REQUEST_NODE } from '../src/daemons/orchestrator/protocol.js';
import { flood, hostileOps, watchFlood } from '../src/sim/host/hostile-guest.js';
import { writeDomain } from '../src/sim/host/layout.js';
import { XsClient } from '../src/xenstore/client.js';
import type { BenchResult } from './types.js';

const GUESTS = Number(process.env.ZYNCLONE_BENCH_GUESTS ?? 100);
const HOSTILE_WRITES = Number(process.env.ZYNCLONE_BENCH_FLOOD ?? 100_000);
const QUIET_REQUESTS = 4;
const HOSTILE = GUESTS + 1;
const ENTRY = join(dirname(fileURLToPath(import.meta.url)), '../src/bin/zynclone.js');
const CLK_TCK = 100;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(samples: number[]): { p50: number; p99: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99) };
}

/** CPU seconds (user + system) and RSS in MiB of a process, from /proc. */
function usage(pid: number): { cpuS: number; rssMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuS = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return { cpuS, rssMiB: Number(rss) / 1024 };
}

function start(args: string[], log: string, ready: RegExp): Promise<ChildProcess> {
  const out = openSync(log, 'a');
  const child = spawn(process.execPath, [ENTRY, ...args], { stdio: ['ignore', out, out] });
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 30_000;
    const poll = () => {
      if (ready.test(readFileSync(log, 'utf8'))) return resolve(child);
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        return reject(new Error(`${args[0]} did not start: ${readFileSync(log, 'utf8')}`));
      }
      setTimeout(poll, 50);
    };
    poll();
  });
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

/** One well-behaved guest: asks, notes when its reply's watch says accepted. */
class Guest {
  private seq = 0;
  private waiting: { id: string; sentAt: number; resolve: (ms: number) => void } | undefined;

  private constructor(
    readonly domid: number,
    private readonly xs: XsClient,
  ) {}

  static async connect(socket: string, domid: number): Promise<Guest> {
    const xs = await XsClient.connect({ path: socket, transport: 'socket', reconnect: false });
    const g = new Guest(domid, xs);
    const watch = await xs.watch('zynclone/reply');
    void (async () => {
      for await (const item of watch) {
        const w = g.waiting;
        if (item.kind !== 'event' || !w || item.path !== `zynclone/reply/${w.id}/state`) continue;
        const state = await xs.tryRead(item.path).catch(() => undefined);
        if (state === undefined) continue;
        g.waiting = undefined;
        w.resolve(performance.now() - w.sentAt);
      }
    })().catch(() => {});
    return g;
  }

  /** ms from the request's write to the first reply state. */
  async ask(): Promise<number> {
    const id = `b${this.domid}-${++this.seq}`;
    const answered = new Promise<number>((resolve) => {
      this.waiting = { id, sentAt: performance.now(), resolve };
    });
    await this.xs.write(REQUEST_NODE, `${id} status`);
    return answered;
  }

  close(): Promise<void> {
    return this.xs.close();
  }
}

export async function run(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'zc-orch-bench-'));
  const socket = join(dir, 'socket');
  const paths = zynclonePaths(join(dir, 'root'));
  mkdirSync(dirname(paths.baseConfigFile), { recursive: true });
  writeFileSync(paths.baseConfigFile, JSON.stringify({ guest_orchestration: true }));
  let xenstored: ChildProcess | undefined;
  let orchestrator: ChildProcess | undefined;
  const guests: Guest[] = [];
  const clients: XsClient[] = [];
  try {
    xenstored = await start(
      ['xenstored', '--socket', socket, '--domain-socket-dir', join(dir, 'domains')],
      join(dir, 'xenstored.log'),
      /"ready"/,
    );
    const dom0 = await XsClient.connect({ path: socket, transport: 'socket' });
    clients.push(dom0);
    const names = new Map<number, string>();
    for (let domid = 1; domid <= HOSTILE; domid++) {
      const name = domid === HOSTILE ? 'hostile' : `guest${String(domid).padStart(3, '0')}`;
      names.set(domid, name);
      await dom0.transaction((tx) =>
        writeDomain(tx, {
          domid,
          name,
          uuid: `00000000-0000-4000-8000-${String(domid).padStart(12, '0')}`,
          type: 'pv',
          memoryMiB: 64,
          maxMemMiB: 64,
          vcpus: 1,
          startTime: Date.now() / 1000,
        }),
      );
      await dom0.introduce(domid, 0x10000 + domid, 1);
    }
    const log = join(dir, 'orchestrator.log');
    orchestrator = await start(
      ['orchestrator', '--xenstore', socket, '--root', paths.root, '--scan-ms', '60000'],
      log,
      /"msg":"watching"/,
    );
    const pid = orchestrator.pid!;
    for (let domid = 1; domid <= GUESTS; domid++) {
      guests.push(await Guest.connect(join(dir, 'domains', `dom${domid}.sock`), domid));
    }

    // Quiet: every guest asks QUIET_REQUESTS times, one after another.
    const askAll = async (keepGoing: () => boolean, min: number) => {
      const samples: number[] = [];
      await Promise.all(
        guests.map(async (g) => {
          for (let i = 0; i < min || keepGoing(); i++) {
            samples.push(await g.ask());
            // Within the rate limit (10 at once, then one per 2 s).
            await new Promise((r) => setTimeout(r, 400));
          }
        }),
      );
      return samples;
    };
    let u0 = usage(pid);
    let x0 = usage(xenstored.pid!);
    const b0 = process.cpuUsage();
    let t0 = performance.now();
    const quiet = summary(await askAll(() => false, QUIET_REQUESTS));
    const quietSeconds = (performance.now() - t0) / 1000;
    let u1 = usage(pid);
    const quietCpu = (100 * (u1.cpuS - u0.cpuS)) / quietSeconds;
    const quietXenstoredCpu = (100 * (usage(xenstored.pid!).cpuS - x0.cpuS)) / quietSeconds;
    const b1 = process.cpuUsage(b0);
    const quietGuestsCpu = (100 * (b1.user + b1.system)) / 1e6 / quietSeconds;
    const quietRss = u1.rssMiB;

    // Flood: the hostile guest writes HOSTILE_WRITES times with a watch flood on.
    const hostile = await XsClient.connect({
      path: join(dir, 'domains', `dom${HOSTILE}.sock`),
      transport: 'socket',
      reconnect: false,
    });
    clients.push(hostile);
    await watchFlood(hostile, [REQUEST_NODE, 'zynclone/reply', 'data'], 128);
    let flooding = true;
    let peakRss = 0;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, usage(pid).rssMiB);
    }, 200);
    u0 = usage(pid);
    x0 = usage(xenstored.pid!);
    t0 = performance.now();
    const [floodResult, floodSamples] = await Promise.all([
      flood(hostile, hostileOps(REQUEST_NODE, HOSTILE_WRITES, 42), 64).finally(() => {
        flooding = false;
      }),
      askAll(() => flooding, 2),
    ]);
    const floodSeconds = (performance.now() - t0) / 1000;
    u1 = usage(pid);
    clearInterval(sampler);
    const floodCpu = (100 * (u1.cpuS - u0.cpuS)) / floodSeconds;
    const xenstoredCpu = (100 * (usage(xenstored.pid!).cpuS - x0.cpuS)) / floodSeconds;
    const busy = summary(floodSamples);

    // What the orchestrator did, from its log: any operation for another VM?
    const records = readFileSync(log, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; domid?: number; vm?: string; level: string });
    const accepted = records.filter((r) => r.msg === 'request accepted');
    const outside = accepted.filter((r) => names.get(r.domid ?? -1) !== r.vm).length;
    const hostileAccepted = accepted.filter((r) => r.domid === HOSTILE).length;
    const errors = records.filter((r) => r.level === 'error').length;

    const alive = orchestrator.exitCode === null;

    return [
      { name: 'request -> accepted p50, 100 guests, quiet', value: quiet.p50, unit: 'ms' },
      {
        name: 'request -> accepted p99, 100 guests, quiet',
        value: quiet.p99,
        unit: 'ms',
        note: 'goal < 100 ms',
      },
      {
        name: 'request -> accepted p50, during the flood',
        value: busy.p50,
        unit: 'ms',
        note: `${floodSamples.length} requests`,
      },
      { name: 'request -> accepted p99, during the flood', value: busy.p99, unit: 'ms' },
      { name: 'p99 flood / p99 quiet', value: busy.p99 / quiet.p99, unit: 'x', note: 'goal <= 2' },
      {
        name: 'hostile writes',
        value: floodResult.ops,
        unit: 'writes',
        note: `${Math.round(floodResult.ops / floodSeconds)}/s, ${floodResult.refused} refused by xenstored, 128 watches`,
      },
      { name: 'orchestrator CPU, quiet (100 guests asking)', value: quietCpu, unit: '% of a core' },
      { name: 'orchestrator CPU, during the flood', value: floodCpu, unit: '% of a core' },
      {
        name: "simulator's xenstored CPU, quiet",
        value: quietXenstoredCpu,
        unit: '% of a core',
      },
      {
        name: 'the 100 guest clients (this process) CPU, quiet',
        value: quietGuestsCpu,
        unit: '% of a core',
      },
      {
        name: "simulator's xenstored CPU, during the flood",
        value: xenstoredCpu,
        unit: '% of a core',
        note: 'one process serving every domain',
      },
      { name: 'orchestrator RSS, quiet', value: quietRss, unit: 'MiB' },
      { name: 'orchestrator RSS, peak during the flood', value: peakRss, unit: 'MiB' },
      {
        name: 'operations for a VM other than the requester',
        value: outside,
        unit: 'ops',
        note: `${accepted.length} accepted (${hostileAccepted} from the hostile guest); ${errors} error lines; ${alive ? 'alive' : 'EXITED'}`,
      },
    ];
  } finally {
    for (const g of guests) await g.close().catch(() => {});
    for (const c of clients) await c.close().catch(() => {});
    await stopChild(orchestrator);
    await stopChild(xenstored);
    rmSync(dir, { recursive: true, force: true });
  }
}
