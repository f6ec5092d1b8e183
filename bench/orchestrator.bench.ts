// clone_guest_orchestrator's figures, all processes real: the simulator's
// xenstored and a responder as child processes, 100 well-behaved guests on
// their own domain sockets in this process, and one hostile guest on its own
// socket in a process of its own (hostile-guest-process.ts), alive (idle,
// its 128 watches set) in the quiet phases too: quiet and flood are measured
// with the same processes and the same guests.
// Two responders, taken in turn in every round:
// - the baseline, reply-floor-process.ts: answers `accepted` as the
//   orchestrator writes it and does nothing else (the protocol's floor on
//   this machine now);
// - `zynclone orchestrator`.
// Each round measures each responder quiet and during a flood (100k hostile
// writes over all rounds, 20k for the floor; xenstored lets the guest write
// 200 times a second), in alternating order, the guests asking all along;
// figures
// are medians over the rounds, so that the load of other work on the
// machine weighs on quiet and flood alike. Measured: request -> accepted
// (the reply's watch event at the guest) p50/p99, their flood/quiet ratios,
// CPU of every process, the orchestrator's RSS, the load average, and the
// operations logged for a VM other than the requester's (must be 0).
// Figures only; never fails on time.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { zynclonePaths } from '../src/core/paths.js';
import { ZYNCLONE_NODE_FLAGS } from '../src/daemons/common/node-flags.js';
import { REQUEST_NODE } from '../src/daemons/orchestrator/protocol.js';
import type { FloodResult } from '../src/sim/host/hostile-guest.js';
import { writeDomain } from '../src/sim/host/layout.js';
import { DEFAULT_QUOTAS } from '../src/sim/xenstored/quotas.js';
import { XsClient } from '../src/xenstore/client.js';
import type { BenchResult } from './types.js';

const GUESTS = Number(process.env.ZYNCLONE_BENCH_GUESTS ?? 100);
const HOSTILE_WRITES = Number(process.env.ZYNCLONE_BENCH_FLOOD ?? 100_000);
const ROUNDS = Number(process.env.ZYNCLONE_BENCH_ROUNDS ?? 3);
/** A quiet phase lasts as long as its flood would (see DEFAULT_QUOTAS.writeRate), at most this long. */
const QUIET_MAX_S = Number(process.env.ZYNCLONE_BENCH_QUIET_MAX_S ?? 30);
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

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const loadAverage = () => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);

/** One phase of a round: what the guests saw, what each process spent. */
interface Phase {
  readonly p50: number;
  readonly p99: number;
  readonly requests: number;
  readonly seconds: number;
  /** % of a core, by process. */
  readonly cpu: { responder: number; xenstored: number; hostile: number; guests: number };
  readonly load: number;
  readonly flood?: FloodResult;
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
  const child = spawn(process.execPath, [...ZYNCLONE_NODE_FLAGS, entry, ...args], {
    stdio: ['ignore', out, out],
  });
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

/** The hostile guest's process: idle until told to flood. */
class HostileGuest {
  private readonly lines: AsyncIterator<string>;

  private constructor(readonly child: ChildProcess) {
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  }

  static async start(socket: string, log: string): Promise<HostileGuest> {
    const err = openSync(log, 'a');
    const child = spawn(process.execPath, [HOSTILE_ENTRY, socket], {
      stdio: ['pipe', 'pipe', err],
    });
    const h = new HostileGuest(child);
    if ((await h.line()) !== 'ready') throw new Error(`the hostile guest did not start: ${log}`);
    return h;
  }

  async flood(writes: number): Promise<FloodResult> {
    this.child.stdin!.write(`flood ${writes}\n`);
    return JSON.parse(await this.line()) as FloodResult;
  }

  async stop(): Promise<void> {
    this.child.stdin!.end();
    await stopChild(this.child);
  }

  private async line(): Promise<string> {
    const next = await this.lines.next();
    if (next.done) throw new Error(`the hostile guest exited with ${this.child.exitCode}`);
    return next.value;
  }
}

export async function run(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'zc-orch-bench-'));
  const socket = join(dir, 'socket');
  const paths = zynclonePaths(join(dir, 'root'));
  mkdirSync(dirname(paths.baseConfigFile), { recursive: true });
  writeFileSync(paths.baseConfigFile, JSON.stringify({ guest_orchestration: true }));
  let xenstored: ChildProcess | undefined;
  let responder: ChildProcess | undefined;
  let hostile: HostileGuest | undefined;
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
    hostile = await HostileGuest.start(
      join(dir, 'domains', `dom${HOSTILE}.sock`),
      join(dir, 'hostile.log'),
    );

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

    // Every guest keeps asking, with the hostile guest idle (quiet) or
    // flooding `writes` times. Both phases last about as long, so that both
    // see the same mix of answers (the rate limit refuses a guest's requests
    // past its first 10) and the same share of the responder's GC pauses.
    const measure = async (kind: 'quiet' | 'flood', writes: number): Promise<Phase> => {
      const pids = {
        responder: responder!.pid!,
        xenstored: xenstored!.pid!,
        hostile: hostile!.child.pid!,
      };
      const before = Object.fromEntries(
        Object.entries(pids).map(([k, pid]) => [k, usage(pid).cpuS]),
      );
      const guests0 = process.cpuUsage();
      const t0 = performance.now();
      let flood: FloodResult | undefined;
      let samples: number[];
      if (kind === 'quiet') {
        const until = t0 + 1000 * Math.min(QUIET_MAX_S, writes / DEFAULT_QUOTAS.writeRate);
        samples = await askAll(() => performance.now() < until, 2);
      } else {
        let flooding = true;
        [flood, samples] = await Promise.all([
          hostile!.flood(writes).finally(() => {
            flooding = false;
          }),
          askAll(() => flooding, 2),
        ]);
      }
      const seconds = (performance.now() - t0) / 1000;
      const pct = (k: keyof typeof pids) => (100 * (usage(pids[k]).cpuS - before[k]!)) / seconds;
      const g = process.cpuUsage(guests0);
      return {
        ...summary(samples),
        requests: samples.length,
        seconds,
        cpu: {
          responder: pct('responder'),
          xenstored: pct('xenstored'),
          hostile: pct('hostile'),
          guests: (100 * (g.user + g.system)) / 1e6 / seconds,
        },
        load: loadAverage(),
        ...(flood ? { flood } : {}),
      };
    };

    const floorPhases = { quiet: [] as Phase[], flood: [] as Phase[] };
    const orchPhases = { quiet: [] as Phase[], flood: [] as Phase[] };
    const orchestratorLogs: string[] = [];
    let peakRss = 0;
    let quietRss = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const which of ['floor', 'orchestrator'] as const) {
        // Each responder starts from nothing of the other's replies.
        for (let domid = 1; domid <= HOSTILE; domid++) {
          await dom0.rm(`/local/domain/${domid}/zynclone`);
        }
        if (which === 'floor') {
          responder = await start(
            [socket, String(GUESTS)],
            join(dir, `floor-${round}.log`),
            /^ready$/m,
            FLOOR_ENTRY,
          );
        } else {
          const log = join(dir, `orchestrator-${round}.log`);
          orchestratorLogs.push(log);
          responder = await start(
            ['orchestrator', '--xenstore', socket, '--root', paths.root, '--scan-ms', '60000'],
            log,
            /"msg":"watching"/,
          );
        }
        const phases = which === 'floor' ? floorPhases : orchPhases;
        const floodWrites = Math.ceil((which === 'floor' ? FLOOR_FLOOD : HOSTILE_WRITES) / ROUNDS);
        for (const kind of round % 2 === 0 ? ['quiet', 'flood'] : ['flood', 'quiet']) {
          if (kind === 'quiet') {
            phases.quiet.push(await measure('quiet', floodWrites));
            if (which === 'orchestrator')
              quietRss = Math.max(quietRss, usage(responder.pid!).rssMiB);
          } else {
            const pid = responder.pid!;
            const sampler = setInterval(() => {
              peakRss = Math.max(peakRss, usage(pid).rssMiB);
            }, 200);
            phases.flood.push(await measure('flood', floodWrites));
            clearInterval(sampler);
          }
        }
        await stopChild(responder);
      }
    }

    // What the orchestrator did, from its logs: any operation for another VM?
    const records = orchestratorLogs
      .flatMap((log) => readFileSync(log, 'utf8').split('\n'))
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; domid?: number; vm?: string; level: string });
    const accepted = records.filter((r) => r.msg === 'request accepted');
    const outside = accepted.filter((r) => names.get(r.domid ?? -1) !== r.vm).length;
    const hostileAccepted = accepted.filter((r) => r.domid === HOSTILE).length;
    const errors = records.filter((r) => r.level === 'error').length;

    const med = (phases: Phase[], f: (p: Phase) => number) => median(phases.map(f));
    const list = (phases: Phase[], f: (p: Phase) => number) =>
      phases.map((p) => Math.round(f(p))).join(', ');
    const floorQuiet = med(floorPhases.quiet, (p) => p.p99);
    const floorFlood = med(floorPhases.flood, (p) => p.p99);
    const quiet = med(orchPhases.quiet, (p) => p.p99);
    const busy = med(orchPhases.flood, (p) => p.p99);
    const ratios = orchPhases.flood.map((f, i) => f.p99 / orchPhases.quiet[i]!.p99);
    const floods = orchPhases.flood.map((p) => p.flood!);
    const hostileWrites = floods.reduce((n, f) => n + f.ops, 0);
    const refused = floods.reduce((n, f) => n + f.refused, 0);
    const floodSeconds = orchPhases.flood.reduce((n, p) => n + p.seconds, 0);
    const loads = [
      ...floorPhases.quiet,
      ...floorPhases.flood,
      ...orchPhases.quiet,
      ...orchPhases.flood,
    ].map((p) => p.load);
    const perRound = `${ROUNDS} rounds, median; per round: `;

    return [
      {
        name: `baseline: reply floor p50, ${GUESTS} guests, quiet`,
        value: med(floorPhases.quiet, (p) => p.p50),
        unit: 'ms',
        note: 'accepted written by a bare responder',
      },
      {
        name: `baseline: reply floor p99, ${GUESTS} guests, quiet`,
        value: floorQuiet,
        unit: 'ms',
        note: perRound + list(floorPhases.quiet, (p) => p.p99),
      },
      {
        name: 'baseline: reply floor p99, during a flood',
        value: floorFlood,
        unit: 'ms',
        note: `${Math.ceil(FLOOR_FLOOD / ROUNDS).toLocaleString('en-US')} hostile writes a round; per round: ${list(floorPhases.flood, (p) => p.p99)}`,
      },
      {
        name: 'baseline: floor p99 flood / quiet',
        value: floorFlood / floorQuiet,
        unit: 'x',
        note: 'what the flood costs without the orchestrator',
      },
      {
        name: `request -> accepted p50, ${GUESTS} guests, quiet`,
        value: med(orchPhases.quiet, (p) => p.p50),
        unit: 'ms',
      },
      {
        name: `request -> accepted p99, ${GUESTS} guests, quiet`,
        value: quiet,
        unit: 'ms',
        note: `goal < 100 ms; per round: ${list(orchPhases.quiet, (p) => p.p99)}`,
      },
      {
        name: 'p99 quiet / p99 of the floor, quiet',
        value: quiet / floorQuiet,
        unit: 'x',
        note: "the orchestrator's own share",
      },
      {
        name: 'request -> accepted p50, during the flood',
        value: med(orchPhases.flood, (p) => p.p50),
        unit: 'ms',
        note: `${orchPhases.flood.reduce((n, p) => n + p.requests, 0)} requests`,
      },
      {
        name: 'request -> accepted p99, during the flood',
        value: busy,
        unit: 'ms',
        note: `per round: ${list(orchPhases.flood, (p) => p.p99)}`,
      },
      {
        name: 'p99 flood / p99 quiet',
        value: busy / quiet,
        unit: 'x',
        note: `goal <= 2; per round: ${ratios.map((r) => r.toFixed(2)).join(', ')}`,
      },
      {
        name: 'p99 flood / p99 of the floor during a flood',
        value: busy / floorFlood,
        unit: 'x',
        note: "the orchestrator's own share",
      },
      {
        name: 'hostile writes',
        value: hostileWrites,
        unit: 'writes',
        note: `${Math.round(hostileWrites / floodSeconds)}/s, ${refused} refused by xenstored, 128 watches`,
      },
      {
        name: `orchestrator CPU, quiet (${GUESTS} guests asking)`,
        value: med(orchPhases.quiet, (p) => p.cpu.responder),
        unit: '% of a core',
      },
      {
        name: 'orchestrator CPU, during the flood',
        value: med(orchPhases.flood, (p) => p.cpu.responder),
        unit: '% of a core',
      },
      {
        name: "simulator's xenstored CPU, quiet / flood",
        value: med(orchPhases.quiet, (p) => p.cpu.xenstored),
        unit: '% of a core',
        note: `during the flood ${Math.round(med(orchPhases.flood, (p) => p.cpu.xenstored))}%`,
      },
      {
        name: "the hostile guest's process CPU, during the flood",
        value: med(orchPhases.flood, (p) => p.cpu.hostile),
        unit: '% of a core',
      },
      {
        name: `the ${GUESTS} guest clients (this process) CPU, quiet / flood`,
        value: med(orchPhases.quiet, (p) => p.cpu.guests),
        unit: '% of a core',
        note: `during the flood ${Math.round(med(orchPhases.flood, (p) => p.cpu.guests))}%`,
      },
      { name: 'orchestrator RSS, quiet', value: quietRss, unit: 'MiB' },
      { name: 'orchestrator RSS, peak during the flood', value: peakRss, unit: 'MiB' },
      {
        name: 'load average (1 min), lowest of the phases',
        value: Math.min(...loads),
        unit: '',
        note: `highest ${Math.max(...loads)}; 2 cores shared with other work`,
      },
      {
        name: 'operations for a VM other than the requester',
        value: outside,
        unit: 'ops',
        note: `${accepted.length} accepted (${hostileAccepted} from the hostile guest); ${errors} error lines`,
      },
    ];
  } finally {
    for (const g of guests) await g.close().catch(() => {});
    await dom0?.close().catch(() => {});
    await hostile?.stop().catch(() => {});
    await stopChild(responder);
    await stopChild(xenstored);
    rmSync(dir, { recursive: true, force: true });
  }
}
