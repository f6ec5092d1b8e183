// clone_guest_orchestrator's figures, all processes real: the simulator's
// xenstored and `zynclone orchestrator` as child processes, 100 well-behaved
// guests on their own domain sockets in this process, and one hostile guest
// on its own socket in a process of its own (hostile-guest-process.ts).
// - the baseline first: the same guests against reply-floor-process.ts, which
//   answers `accepted` as the orchestrator writes it and does nothing else
//   (the protocol's floor on this machine now); the orchestrator's p99 as a
//   ratio of it;
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
import type { FloodResult } from '../src/sim/host/hostile-guest.js';
import { writeDomain } from '../src/sim/host/layout.js';
import { XsClient } from '../src/xenstore/client.js';
import type { BenchResult } from './types.js';

const GUESTS = Number(process.env.ZYNCLONE_BENCH_GUESTS ?? 100);
const HOSTILE_WRITES = Number(process.env.ZYNCLONE_BENCH_FLOOD ?? 100_000);
const QUIET_REQUESTS = 4;
const FLOOR_FLOOD = Math.min(HOSTILE_WRITES, 20_000);
const HOSTILE = GUESTS + 1;
const HERE = dirname(fileURLToPath(import.meta.url));
const ENTRY = join(HERE, '../src/bin/zynclone.js');
const HOSTILE_ENTRY = join(HERE, 'hostile-guest-process.js');
const FLOOR_ENTRY = join(HERE, 'reply-floor-process.js');
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

function start(args: string[], log: string, ready: RegExp, entry = ENTRY): Promise<ChildProcess> {
  const out = openSync(log, 'a');
  const child = spawn(process.execPath, [entry, ...args], { stdio: ['ignore', out, out] });
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
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
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
  let hostile: ChildProcess | undefined;
  let floor: ChildProcess | undefined;
  const guests: Guest[] = [];
  let dom0: XsClient | undefined;
  try {
    xenstored = await start(
      ['xenstored', '--socket', socket, '--domain-socket-dir', join(dir, 'domains')],
      join(dir, 'xenstored.log'),
      /"ready"/,
    );
    dom0 = await XsClient.connect({ path: socket, transport: 'socket' });
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
    for (let domid = 1; domid <= GUESTS; domid++) {
      guests.push(await Guest.connect(join(dir, 'domains', `dom${domid}.sock`), domid));
    }

    // Every guest asks `min` times (more while keepGoing()), one after another.
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

    // The hostile guest's flood, `writes` long, while every guest keeps asking.
    const askDuringFlood = async (writes: number) => {
      const hostileLog = join(dir, 'hostile.log');
      hostile = await start(
        [join(dir, 'domains', `dom${HOSTILE}.sock`), String(writes)],
        hostileLog,
        /^ready$/m,
        HOSTILE_ENTRY,
      );
      const flooded = new Promise<FloodResult>((resolve, reject) => {
        hostile!.once('exit', (code) => {
          const last = readFileSync(hostileLog, 'utf8').trim().split('\n').at(-1) ?? '';
          if (code === 0 && last.startsWith('{')) resolve(JSON.parse(last) as FloodResult);
          else reject(new Error(`the hostile guest exited with ${code}: ${last}`));
        });
      });
      let flooding = true;
      return Promise.all([
        flooded.finally(() => {
          flooding = false;
        }),
        askAll(() => flooding, 2),
      ]);
    };

    // Baseline: the protocol's floor, quiet and during a shorter flood of the
    // same rate (the floor does not answer the hostile guest); then its
    // replies are cleared away.
    floor = await start([socket, String(GUESTS)], join(dir, 'floor.log'), /^ready$/m, FLOOR_ENTRY);
    const base = summary(await askAll(() => false, QUIET_REQUESTS));
    const baseFlood = summary((await askDuringFlood(FLOOR_FLOOD))[1]);
    await stopChild(floor);
    for (let domid = 1; domid <= GUESTS; domid++) await dom0.rm(`/local/domain/${domid}/zynclone`);

    const log = join(dir, 'orchestrator.log');
    orchestrator = await start(
      ['orchestrator', '--xenstore', socket, '--root', paths.root, '--scan-ms', '60000'],
      log,
      /"msg":"watching"/,
    );
    const pid = orchestrator.pid!;
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
    let peakRss = 0;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, usage(pid).rssMiB);
    }, 200);
    u0 = usage(pid);
    x0 = usage(xenstored.pid!);
    t0 = performance.now();
    const [floodResult, floodSamples] = await askDuringFlood(HOSTILE_WRITES);
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
      {
        name: `baseline: reply floor p50, ${GUESTS} guests`,
        value: base.p50,
        unit: 'ms',
        note: 'accepted written by a bare responder',
      },
      { name: `baseline: reply floor p99, ${GUESTS} guests`, value: base.p99, unit: 'ms' },
      {
        name: 'baseline: reply floor p99, during a flood',
        value: baseFlood.p99,
        unit: 'ms',
        note: `${FLOOR_FLOOD.toLocaleString('en-US')} hostile writes`,
      },
      { name: `request -> accepted p50, ${GUESTS} guests, quiet`, value: quiet.p50, unit: 'ms' },
      {
        name: `request -> accepted p99, ${GUESTS} guests, quiet`,
        value: quiet.p99,
        unit: 'ms',
        note: 'goal < 100 ms',
      },
      {
        name: 'p99 quiet / p99 of the floor',
        value: quiet.p99 / base.p99,
        unit: 'x',
        note: "the orchestrator's own share",
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
        name: 'p99 flood / p99 of the floor during a flood',
        value: busy.p99 / baseFlood.p99,
        unit: 'x',
        note: "the orchestrator's own share",
      },
      {
        name: 'hostile writes',
        value: floodResult.ops,
        unit: 'writes',
        note: `${Math.round(floodResult.ops / floodSeconds)}/s, ${floodResult.refused} refused by xenstored, 128 watches`,
      },
      {
        name: `orchestrator CPU, quiet (${GUESTS} guests asking)`,
        value: quietCpu,
        unit: '% of a core',
      },
      { name: 'orchestrator CPU, during the flood', value: floodCpu, unit: '% of a core' },
      {
        name: "simulator's xenstored CPU, quiet",
        value: quietXenstoredCpu,
        unit: '% of a core',
      },
      {
        name: `the ${GUESTS} guest clients (this process) CPU, quiet`,
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
    await dom0?.close().catch(() => {});
    await stopChild(floor);
    await stopChild(hostile);
    await stopChild(orchestrator);
    await stopChild(xenstored);
    rmSync(dir, { recursive: true, force: true });
  }
}
