// The web console on the simulator: time from running `vmclone console` to the
// first framebuffer update painted in Debian's chromium, with its milestones;
// throughput and round-trip latency through clone_console_monitor's proxy on
// both of its data paths (VNC -> browser bytes copied by the monitor, and
// spliced by zynclone-console-splice), against a direct TCP connection and
// against Debian's websockify on the same stream, and what the source, each
// proxy and the reader spend in CPU per GiB. The stream's source and reader
// are stream-ends.c, which never copy the payload (sendfile from a memfd,
// recv with MSG_TRUNC), so that the ends cost as little as the kernel allows
// and the proxy in the middle is what is measured; memory per open console after a full frame of the clone's QEMU screen
// (the monitor's, plus its helpers' on the splice path). Two monitors serve
// the same simulator, one per data path. The net monitor's ack is written by
// a stand-in here (the bench does not measure lockdown). Needs
// qemu-system-x86, chromium, websockify, and the built splice helper
// (`make build`).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { ZYNCLONE_NODE_FLAGS } from '../src/daemons/common/node-flags.js';
import { XsClient } from '../src/xenstore/index.js';
import { CHROMIUM, openChromium } from '../test/browser.js';
import { ByteReader, readFrame, requestFrame, rfbHandshakeOver } from './rfb-client.js';
import { ackEveryGeneration, sh, simDemo, simEnv } from './sim-host.js';
import type { BenchResult } from './types.js';

const here = dirname(fileURLToPath(import.meta.url));
const zynclone = resolve(here, '../src/bin/zynclone.js');
const vmclone = resolve(here, '../src/bin/vmclone.js');
const assets = resolve(here, '../console-page');
/** The C source of the stream's ends; the bench compiles it (setup installs gcc). */
const STREAM_ENDS_SOURCE = resolve(here, '../../bench/stream-ends.c');
const SPLICE_HELPER = resolve(here, '../../helpers/console-splice/build/zynclone-console-splice');
const STREAM_BYTES = 2 ** 30;
const ROUND_TRIPS = 1000;
const ROUNDS = 5;
/**
 * Where the throughput processes run: each proxy alone on one CPU, the source
 * and the reader together on the other (the same for both proxies and for
 * the direct stream). Without pinning, the scheduler puts the three processes
 * wherever the host's other work leaves room, and a round measures that.
 */
const PIN = availableParallelism() >= 2 ? { proxy: '1', ends: '0' } : undefined;
const PAINTS = 8;
const CONSOLES = 30;

function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A VNC server stand-in for round trips: greets, then echoes. (The
 * throughput stream's source is `stream-ends source`, which sends from a
 * memfd and never copies; the greeting there is the stream's first bytes.)
 */
const ECHO_SERVER = `
const net = require('node:net');
const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  sock.on('error', () => {});
  // RFB servers speak first, and the monitor waits for that greeting.
  sock.write('RFB 003.008\\n');
  sock.pipe(sock);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

const stage = (what: string) => process.stderr.write(`bench: console: ${what}\n`);

/** `p`, or a clear failure after `ms` instead of a hang. */
function within<T>(what: string, p: Promise<T>, ms = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, j) => {
      timer = setTimeout(() => j(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
interface Cpu {
  userMs: number;
  systemMs: number;
}
/** CPU time of a process and of its children that have exited. */
const cpuOf = (pid: number): Cpu => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ').map(Number);
  // utime, stime, cutime, cstime: fields 14-17, in clock ticks of 10 ms.
  return { userMs: (f[11]! + f[13]!) * 10, systemMs: (f[12]! + f[14]!) * 10 };
};
const cpuSince = (pid: number, before: Cpu): Cpu => {
  const now = cpuOf(pid);
  return { userMs: now.userMs - before.userMs, systemMs: now.systemMs - before.systemMs };
};
/** `argv` on the CPUs in `cpus` (a taskset list), or anywhere without pinning. */
const pinned = (cpus: string | undefined, argv: string[]): [string, string[]] =>
  cpus === undefined ? [argv[0]!, argv.slice(1)] : ['taskset', ['-c', cpus, ...argv]];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface StreamTarget {
  host: string;
  port: number;
  /** A WebSocket path (subprotocol binary); plain TCP when absent. */
  wsPath?: string;
}

/** What the reader saw: from the stream being open to its last byte, and its own CPU time then. */
interface Drained {
  ms: number;
  userMs: number;
  systemMs: number;
}

/** Reads one stream with `stream-ends read`, a process of its own. */
function readStream(ends: string, target: StreamTarget, bytes: number): Promise<Drained> {
  const argv = [ends, 'read', target.host, String(target.port), String(bytes)];
  if (target.wsPath !== undefined) argv.push(target.wsPath);
  const [cmd, args] = pinned(PIN?.ends, argv);
  return new Promise((res, rej) => {
    execFile(cmd, args, { timeout: 180_000 }, (err, out, errOut) =>
      err ? rej(new Error(`stream reader: ${errOut || err.message}`)) : res(JSON.parse(out)),
    );
  });
}
const rssKiB = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
/** Proportional set size: shared pages (libc) counted once across the processes sharing them. */
const pssKiB = (pid: number) =>
  Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1]);
/** The processes `pid` started that still run. */
const childrenOf = (pid: number): number[] =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);

interface Stream {
  reader: ByteReader;
  send(d: Buffer): void;
  close(): void;
}

/** Round trips of one byte through an echo server (ms), after its greeting and 50 to warm up. */
async function roundTrips(s: Stream): Promise<number[]> {
  await s.reader.read(12);
  const out: number[] = [];
  const one = Buffer.from([0x2a]);
  for (let i = 0; i < ROUND_TRIPS + 50; i++) {
    const t0 = performance.now();
    s.send(one);
    await s.reader.read(1);
    if (i >= 50) out.push(performance.now() - t0);
  }
  return out;
}

export async function run(): Promise<BenchResult[]> {
  // The helper as `make build` builds it (npm run build does not).
  await sh('make', ['-s', '-C', dirname(dirname(SPLICE_HELPER))]);
  for (const need of ['/usr/bin/websockify', CHROMIUM]) {
    if (!existsSync(need)) throw new Error(`${need} is missing (scripts/debian-packages.txt)`);
  }
  const root = mkdtempSync(join(tmpdir(), 'zc-console-bench-'));
  const ends = join(root, 'stream-ends');
  await sh('cc', [
    '-O2',
    '-std=c11',
    '-Wall',
    '-Wextra',
    '-Werror',
    '-o',
    ends,
    STREAM_ENDS_SOURCE,
  ]);
  const env = { ...simEnv(root), NO_COLOR: '1' };
  const procs: ChildProcess[] = [];
  let xs: XsClient | undefined;
  let browserClose: (() => Promise<void>) | undefined;
  let stopAcking: (() => Promise<void>) | undefined;
  const out: BenchResult[] = [];
  try {
    await simDemo(root, env);
    mkdirSync(join(root, 'etc/xen/clone'), { recursive: true });
    writeFileSync(
      join(root, 'etc/xen/clone/base.json'),
      JSON.stringify({ console_port: 0, storage_backend: 'copy' }),
    );
    const socket = join(root, 'run/xenstored/socket');
    xs = await XsClient.connect({ path: socket, transport: 'socket', reconnect: false });
    // No network in this run: a stand-in acks the lockdown.
    stopAcking = await ackEveryGeneration(socket);
    await sh(join(root, 'bin/xl'), ['destroy', 'win01'], env);
    await sh(process.execPath, [vmclone, 'create', 'win01', '--offline', '-q'], env);

    // One monitor per data path; each reads base.json once, at start. The
    // splice one starts last, so the URL vmclone console prints (the one
    // published last) is its: the browser part measures the default path.
    const helperAt = join(root, 'usr/lib/zynclone/zynclone-console-splice');
    mkdirSync(dirname(helperAt), { recursive: true });
    copyFileSync(SPLICE_HELPER, helperAt);
    chmodSync(helperAt, 0o755);
    const startMonitor = async (path: 'js' | 'splice') => {
      writeFileSync(
        join(root, 'etc/xen/clone/base.json'),
        JSON.stringify({
          console_port: 0,
          storage_backend: 'copy',
          ...(path === 'js' ? { console_splice_helper: '' } : {}),
        }),
      );
      const log = join(root, `console-monitor-${path}.log`);
      writeFileSync(log, '');
      const child = spawn(
        process.execPath,
        [
          ...ZYNCLONE_NODE_FLAGS,
          zynclone,
          'console-monitor',
          '--root',
          root,
          '--assets',
          assets,
          '--heartbeat-ms',
          '1000',
        ],
        { env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      procs.push(child);
      child.stdout?.on('data', (d: Buffer) => writeFileSync(log, d, { flag: 'a' }));
      child.stderr?.on('data', (d: Buffer) => writeFileSync(log, d, { flag: 'a' }));
      const url = await until(`the console monitor (${path})`, async () => {
        const line = readFileSync(log, 'utf8')
          .split('\n')
          .find((l) => l.includes('"msg":"serving"'));
        return line && (JSON.parse(line) as { url: string }).url;
      });
      return { pid: child.pid!, url, log };
    };
    const monitors = { js: await startMonitor('js'), splice: await startMonitor('splice') };
    await until('its heartbeat', () =>
      xs!.tryRead('/tool/zynclone/daemons/console-monitor/heartbeat'),
    );
    const domid = Number(await xs.read('/tool/zynclone/vm/win01/clone-domid'));
    const vncPort = Number(await xs.read(`/local/domain/${domid}/console/vnc-port`));

    stage('vmclone console -> first frame in chromium');
    // 1. vmclone console -> first framebuffer update painted, in chromium.
    const browser = await openChromium();
    browserClose = browser.close;
    const { page } = browser;
    // Milestones after running vmclone console (ms): the URL printed, the
    // page's HTML, its script run, the session open, RFB connected (ServerInit),
    // the first framebuffer update painted. The first open is a cold browser
    // tab; the median is over the PAINTS - 1 after it.
    const MILESTONES = ['cli', 'html', 'script', 'session', 'rfb', 'paint'] as const;
    const opens: Record<(typeof MILESTONES)[number], number>[] = [];
    for (let i = 0; i < PAINTS; i++) {
      const t0 = Date.now();
      const url = (
        JSON.parse(await sh(process.execPath, [vmclone, 'console', 'win01', '--json'], env)) as {
          url: string;
        }
      ).url;
      const cli = Date.now() - t0;
      await page.goto(url);
      const at = await until('the first frame', () =>
        page.evaluate(() => {
          const p = (
            window as unknown as {
              zcConsole: { sessionAt: number; connectedAt: number; firstPaintAt: number };
            }
          ).zcConsole;
          const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
          return p.firstPaintAt
            ? {
                html: performance.timeOrigin + nav.responseEnd,
                script: performance.timeOrigin + nav.domContentLoadedEventEnd,
                session: p.sessionAt,
                rfb: p.connectedAt,
                paint: p.firstPaintAt,
              }
            : undefined;
        }),
      );
      opens.push({
        cli,
        html: at.html - t0,
        script: at.script - t0,
        session: at.session - t0,
        rfb: at.rfb - t0,
        paint: at.paint - t0,
      });
      await page.goto('about:blank');
    }
    const warm = opens.slice(1);
    const breakdown = (o: Record<string, number>) =>
      MILESTONES.map((m) => `${m} ${Math.round(o[m]!)}`).join(', ');
    out.push({
      name: `vmclone console -> first frame painted (median of ${warm.length})`,
      value: median(warm.map((o) => o.paint)),
      unit: 'ms',
      note: `goal < 1000; all: ${warm.map((o) => Math.round(o.paint)).join(', ')}`,
    });
    out.push({
      name: '  of which the vmclone console process',
      value: median(warm.map((o) => o.cli)),
      unit: 'ms',
      note: `median milestones: ${breakdown(
        Object.fromEntries(MILESTONES.map((m) => [m, median(warm.map((o) => o[m]))])),
      )}`,
    });
    out.push({
      name: '  first open (cold tab)',
      value: opens[0]!.paint,
      unit: 'ms',
      note: breakdown(opens[0]!),
    });
    await browserClose();
    browserClose = undefined;

    stage('the same streams four ways');
    // 2. Proxy throughput and latency. QEMU paces its framebuffer updates on a
    // refresh timer (up to seconds when the screen is idle), which would hide
    // any proxy; so the clone's VNC server is stood in for by a source that
    // streams STREAM_BYTES as fast as TCP allows, then by an echo server, each
    // put where libxl writes console/vnc-port (the monitors follow the port).
    // Each stream is read direct, through each monitor and through
    // websockify, by the same reader, in ROUNDS rounds whose order rotates
    // (the machine is shared: medians). Source, proxy and reader are three
    // processes, pinned as PIN says (a monitor's splice helpers inherit its
    // CPU). The CPU time of each is measured too: on a loaded host the wall
    // clock also times whatever else runs; CPU per GiB is what each part
    // costs, and the source's and reader's show whether they, not the proxy,
    // set the pace. A helper's CPU time counts in its monitor's once it has
    // exited (at the end of its stream) and been reaped.
    const controls: WebSocket[] = [];
    const proxySession = async (monitorUrl: string) => {
      const url = new URL(
        (
          JSON.parse(await sh(process.execPath, [vmclone, 'console', 'win01', '--json'], env)) as {
            url: string;
          }
        ).url,
      );
      const control = new WebSocket(
        `${monitorUrl.replace(/^http/, 'ws')}/session/win01?ticket=${url.hash.slice(8)}`,
      );
      controls.push(control);
      const first = await within(
        'the console session',
        new Promise<string>((r, j) => {
          control.once('message', (d) => r(String(d)));
          control.once('error', j);
          control.once('unexpected-response', (_q, res) =>
            j(new Error(`ticket refused: ${res.statusCode}`)),
          );
        }),
      );
      return (JSON.parse(first) as { session: string }).session;
    };
    const vncUrl = async (monitorUrl: string) =>
      `${monitorUrl.replace(/^http/, 'ws')}/vnc/win01?session=${await proxySession(monitorUrl)}`;
    /** The stand-in server in a process of its own (not sharing the client's event loop), and websockify in front of it. */
    const standIn = async (kind: 'stream' | 'echo') => {
      const server = spawn(
        ...pinned(
          PIN?.ends,
          kind === 'stream'
            ? [ends, 'source', String(STREAM_BYTES)]
            : [process.execPath, '-e', ECHO_SERVER],
        ),
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      procs.push(server);
      const port = await within(
        'the stand-in server',
        new Promise<number>((r) =>
          server.stdout!.once('data', (d: Buffer) => r(Number(String(d).trim()))),
        ),
      );
      const wsPort = await freePort();
      // websockify serves each connection in a forked child, which inherits the pinning.
      const websockify = spawn(
        ...pinned(PIN?.proxy, ['/usr/bin/websockify', `127.0.0.1:${wsPort}`, `127.0.0.1:${port}`]),
        { stdio: 'ignore' },
      );
      procs.push(websockify);
      await xs!.write(`/local/domain/${domid}/console/vnc-port`, String(port));
      await new Promise((r) => setTimeout(r, 500));
      return {
        port,
        wsPort,
        pid: server.pid!,
        websockifyPid: websockify.pid!,
        stop: () => {
          websockify.kill('SIGTERM');
          server.kill('SIGTERM');
        },
      };
    };
    const rawWs = async (url: string): Promise<Stream> => {
      const ws = new WebSocket(url, ['binary']);
      const early: Buffer[] = [];
      ws.on('message', (d: Buffer) => early.push(d));
      await within(
        `WebSocket ${url}`,
        new Promise((r, j) => {
          ws.once('open', r);
          ws.once('error', j);
        }),
      );
      ws.removeAllListeners('message');
      return {
        reader: ByteReader.ofWebSocket(ws, early),
        send: (d) => ws.send(d),
        close: () => ws.close(),
      };
    };
    const JS = 'monitor, js path';
    const SPLICE = 'monitor, splice path';
    const monitorOf = { [JS]: monitors.js, [SPLICE]: monitors.splice };
    const monitorTarget = async (m: { url: string }): Promise<StreamTarget> => {
      const at = new URL(m.url);
      return {
        host: at.hostname,
        port: Number(at.port),
        wsPath: `/vnc/win01?session=${await proxySession(m.url)}`,
      };
    };

    if (PIN) {
      for (const m of Object.values(monitors)) {
        await sh('taskset', ['-a', '-p', '-c', PIN.proxy, String(m.pid)], env);
      }
    }
    const source = await standIn('stream');
    const tput: Record<string, number[]> = {};
    const cpu: Record<string, Record<'proxy' | 'source' | 'reader', Cpu[]>> = {};
    const loads: number[] = [];
    try {
      const targets: Record<string, () => Promise<StreamTarget>> = {
        'direct TCP': async () => ({ host: '127.0.0.1', port: source.port }),
        [JS]: () => monitorTarget(monitors.js),
        [SPLICE]: () => monitorTarget(monitors.splice),
        websockify: async () => ({ host: '127.0.0.1', port: source.wsPort, wsPath: '/' }),
      };
      const proxyPid: Record<string, number> = {
        [JS]: monitors.js.pid,
        [SPLICE]: monitors.splice.pid,
        websockify: source.websockifyPid,
      };
      const names = Object.keys(targets);
      for (const name of names) {
        tput[name] = [];
        cpu[name] = { proxy: [], source: [], reader: [] };
      }
      for (let round = 0; round < ROUNDS; round++) {
        const order = [
          ...names.slice(round % names.length),
          ...names.slice(0, round % names.length),
        ];
        for (const name of order) {
          stage(`throughput, ${name}, round ${round + 1} of ${ROUNDS}`);
          loads.push(loadavg()[0]!);
          const pid = proxyPid[name];
          const target = await targets[name]!();
          const proxy0 = pid === undefined ? undefined : cpuOf(pid);
          const source0 = cpuOf(source.pid);
          const drained = await readStream(ends, target, STREAM_BYTES);
          tput[name]!.push(STREAM_BYTES / 1e6 / (drained.ms / 1000));
          // websockify's CPU time shows in its parent's once the child that
          // served the connection has exited and been reaped; so does a splice helper's.
          await sleep(500);
          cpu[name]!.source.push(cpuSince(source.pid, source0));
          cpu[name]!.reader.push(drained);
          if (pid !== undefined) cpu[name]!.proxy.push(cpuSince(pid, proxy0!));
        }
      }
    } finally {
      source.stop();
    }
    const GiB = STREAM_BYTES / 2 ** 30;
    const perGiB = (runs: Cpu[]) => {
      const total = runs.map((c) => (c.userMs + c.systemMs) / GiB);
      return {
        total: median(total),
        note: `user ${median(runs.map((c) => c.userMs / GiB)).toFixed(0)} + system ${median(runs.map((c) => c.systemMs / GiB)).toFixed(0)} (medians); runs ${total.map((t) => t.toFixed(0)).join(', ')}`,
      };
    };
    const mbps: Record<string, number> = {};
    const proxyCpu: Record<string, number> = {};
    for (const [name, runs] of Object.entries(tput)) {
      mbps[name] = median(runs);
      out.push({
        name: `throughput, ${name}`,
        value: mbps[name]!,
        unit: 'MB/s',
        note: `median of ${runs.map((r) => r.toFixed(0)).join(', ')}; ${STREAM_BYTES / 2 ** 20} MiB each`,
      });
      let all = 0;
      for (const part of ['proxy', 'source', 'reader'] as const) {
        if (cpu[name]![part].length === 0) continue;
        const c = perGiB(cpu[name]![part]);
        all += c.total;
        if (part === 'proxy') proxyCpu[name] = c.total;
        out.push({
          name: `  CPU per GiB, ${part === 'proxy' ? name : part}`,
          value: c.total,
          unit: 'ms',
          note: c.note,
        });
      }
      // Zero copy moves work to the ends: the source's pages live until the
      // reader has read them, so page allocation and freeing happen there.
      out.push({
        name: '  CPU per GiB, all of them',
        value: all,
        unit: 'ms',
        note: 'sum of the medians above: what the machine spends on the stream',
      });
    }
    out.push({
      name: 'load average (1 min) during the throughput rounds',
      value: median(loads),
      unit: '',
      note: `median; at each stream: ${loads.map((l) => l.toFixed(1)).join(', ')}; ${availableParallelism()} CPUs; ${PIN ? `proxy on CPU ${PIN.proxy}, source and reader on CPU ${PIN.ends}` : 'not pinned'}`,
    });

    const echo = await standIn('echo');
    const trips: Record<string, number[]> = {};
    try {
      const opens: Record<string, () => Promise<Stream>> = {
        'direct TCP': async () => {
          const sock = connect(echo.port, '127.0.0.1');
          sock.setNoDelay(true);
          await new Promise((r) => sock.once('connect', r));
          return {
            reader: ByteReader.ofSocket(sock),
            send: (d) => sock.write(d),
            close: () => sock.destroy(),
          };
        },
        [JS]: async () => rawWs(await vncUrl(monitors.js.url)),
        [SPLICE]: async () => rawWs(await vncUrl(monitors.splice.url)),
        websockify: () => until('websockify', () => rawWs(`ws://127.0.0.1:${echo.wsPort}/`)),
      };
      for (const [name, open] of Object.entries(opens)) {
        stage(`round trips, ${name}`);
        const s = await open();
        try {
          trips[name] = await within(`round trips over ${name}`, roundTrips(s), 180_000);
        } finally {
          s.close();
        }
      }
    } finally {
      echo.stop();
    }
    const p50: Record<string, number> = {};
    for (const [name, rt] of Object.entries(trips)) {
      p50[name] = pct(rt, 0.5);
      out.push({
        name: `round trip p50, ${name}`,
        value: p50[name]!,
        unit: 'ms',
        note: `p99 ${pct(rt, 0.99).toFixed(3)} ms, ${ROUND_TRIPS} one-byte echoes`,
      });
    }
    await xs.write(`/local/domain/${domid}/console/vnc-port`, String(vncPort));
    await new Promise((r) => setTimeout(r, 500));
    for (const name of [SPLICE, JS]) {
      out.push({
        name: `throughput ratio: ${name} / websockify`,
        value: mbps[name]! / mbps.websockify!,
        unit: 'x',
        note: 'goal >= 2',
      });
    }
    out.push({
      name: 'throughput ratio: direct TCP / websockify (the ceiling here)',
      value: mbps['direct TCP']! / mbps.websockify!,
      unit: 'x',
      note: 'what a proxy that costs nothing would reach on this machine, source and reader sharing one CPU',
    });
    for (const name of [SPLICE, JS]) {
      out.push({
        name: `proxy CPU ratio: websockify / ${name}`,
        value: proxyCpu.websockify! / proxyCpu[name]!,
        unit: 'x',
        note: 'bytes a CPU second moves, monitor over websockify',
      });
    }
    for (const name of [SPLICE, JS, 'websockify']) {
      out.push({
        name: `added latency p50: ${name} - direct`,
        value: p50[name]! - p50['direct TCP']!,
        unit: 'ms',
        ...(name === 'websockify' ? {} : { note: 'goal < 1' }),
      });
    }

    stage('memory per open console');
    // 3. Memory per open console (session + VNC connection, one frame each):
    // the monitor's RSS, and on the splice path its helpers' too (RSS counts
    // each helper's shared libc pages again: an upper bound; PSS in the note
    // shares them out).
    for (const c of controls.splice(0)) c.close();
    await new Promise((r) => setTimeout(r, 500));
    for (const [name, m] of Object.entries(monitorOf)) {
      const before = rssKiB(m.pid);
      const open: Stream[] = [];
      let frameBytes = 0;
      for (let i = 0; i < CONSOLES; i++) {
        const s = await rawWs(await vncUrl(m.url));
        open.push(s);
        const rfb = await within('RFB handshake', rfbHandshakeOver(s.reader, s.send));
        requestFrame(rfb, rfb);
        frameBytes = await readFrame(rfb, 15_000);
      }
      const after = rssKiB(m.pid);
      const helpers = childrenOf(m.pid);
      const helperKiB = helpers.reduce((sum, pid) => sum + rssKiB(pid), 0);
      const helperPss = helpers.reduce((sum, pid) => sum + pssKiB(pid), 0);
      out.push({
        name: `memory per open console, ${name}`,
        value: (after - before + helperKiB) / CONSOLES,
        unit: 'KiB',
        note: `monitor RSS ${before} -> ${after} KiB with ${CONSOLES} consoles, each after a full frame (${(frameBytes / 2 ** 20).toFixed(1)} MiB)${helpers.length > 0 ? `; plus ${helpers.length} helpers, ${helperKiB} KiB RSS in all (PSS ${helperPss} KiB)` : ''}`,
      });
      if (helpers.length > 0) {
        out.push({
          name: `memory per open console, ${name}, helpers by PSS`,
          value: (after - before + helperPss) / CONSOLES,
          unit: 'KiB',
          note: 'the same, with the helpers counted by proportional set size (libc pages shared out)',
        });
      }
      for (const s of open) s.close();
      for (const c of controls.splice(0)) c.close();
      await new Promise((r) => setTimeout(r, 500));
    }
    return out;
  } finally {
    await browserClose?.().catch(() => {});
    await stopAcking?.().catch(() => {});
    for (const p of procs) p.kill('SIGTERM');
    await xs?.close().catch(() => {});
    await sh(process.execPath, [zynclone, 'sim', 'down', '--root', root], env).catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
}
