// The web console on the simulator: time from running `vmclone console` to the
// first framebuffer update painted in Debian's chromium; RFB throughput and
// round-trip latency through clone_console_monitor's proxy, against a direct
// TCP connection to QEMU and against Debian's websockify on the same stream
// (full frames of the clone's QEMU screen); the monitor's memory per open
// console. The net monitor's ack is written by a stand-in here (the bench
// does not measure lockdown). Needs qemu-system-x86, chromium, websockify.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { WebSocket } from 'ws';
import { XsClient } from '../src/xenstore/index.js';
import {
  ByteReader,
  type RfbSession,
  readFrame,
  requestFrame,
  rfbHandshake,
  rfbHandshakeOver,
} from './rfb-client.js';
import type { BenchResult } from './types.js';

const here = dirname(fileURLToPath(import.meta.url));
const zynclone = resolve(here, '../src/bin/zynclone.js');
const vmclone = resolve(here, '../src/bin/vmclone.js');
const assets = resolve(here, '../console-page');
const CHROMIUM = '/usr/bin/chromium';
const FRAMES = 60;
const ROUND_TRIPS = 1000;
const CONSOLES = 30;

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((res, rej) =>
    execFile(cmd, args, { env, maxBuffer: 64 * 1024 * 1024 }, (err, out, errOut) =>
      err ? rej(new Error(`${cmd} ${args.join(' ')}: ${errOut || err.message}`)) : res(out),
    ),
  );
}

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
const rssKiB = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

interface Path {
  name: string;
  open(): Promise<{ session: RfbSession; close(): void }>;
}

/** Frames a second and MB/s of full-screen raw updates, one request at a time. */
async function throughput(path: Path): Promise<{ mbps: number }> {
  const { session, close } = await path.open();
  try {
    requestFrame(session, session);
    await readFrame(session);
    const t0 = performance.now();
    let bytes = 0;
    for (let i = 0; i < FRAMES; i++) {
      requestFrame(session, session);
      bytes += await readFrame(session);
    }
    return { mbps: bytes / 1e6 / ((performance.now() - t0) / 1000) };
  } finally {
    close();
  }
}

/** Round trips of a 1x1 non-incremental update request. */
async function roundTrips(path: Path): Promise<number[]> {
  const { session, close } = await path.open();
  const tiny = { ...session, width: 1, height: 1 };
  try {
    const out: number[] = [];
    for (let i = 0; i < ROUND_TRIPS + 50; i++) {
      const t0 = performance.now();
      requestFrame(session, tiny);
      await readFrame({ ...session, width: session.width });
      if (i >= 50) out.push(performance.now() - t0);
    }
    return out;
  } finally {
    close();
  }
}

export async function run(): Promise<BenchResult[]> {
  for (const need of ['/usr/bin/websockify', CHROMIUM]) {
    if (!existsSync(need)) throw new Error(`${need} is missing (scripts/debian-packages.txt)`);
  }
  const root = mkdtempSync(join(tmpdir(), 'zc-console-bench-'));
  const env = {
    ...process.env,
    PATH: `${join(root, 'bin')}:${process.env.PATH ?? ''}`,
    XENSTORED_PATH: join(root, 'run/xenstored/socket'),
    ZYNCLONE_ROOT: root,
    NO_COLOR: '1',
  };
  const procs: ChildProcess[] = [];
  let xs: XsClient | undefined;
  let browserClose: (() => Promise<void>) | undefined;
  const out: BenchResult[] = [];
  try {
    await sh(
      process.execPath,
      [zynclone, 'sim', 'demo', '--no-network', '--storage', 'plain', '--root', root],
      env,
    );
    mkdirSync(join(root, 'etc/xen/clone'), { recursive: true });
    writeFileSync(
      join(root, 'etc/xen/clone/base.json'),
      JSON.stringify({ console_port: 0, storage_backend: 'copy' }),
    );
    xs = await XsClient.connect({
      path: env.XENSTORED_PATH,
      transport: 'socket',
      reconnect: false,
    });
    const ackWatch = await xs.watch('/tool/zynclone/vm');
    void (async () => {
      for await (const _ of ackWatch) {
        for (const vm of await xs!.directory('/tool/zynclone/vm').catch(() => [] as string[])) {
          const g = await xs!.tryRead(`/tool/zynclone/vm/${vm}/generation`);
          if (g !== undefined) await xs!.write(`/tool/zynclone/net/ack/${vm}`, g);
        }
      }
    })().catch(() => {});
    await sh(join(root, 'bin/xl'), ['destroy', 'win01'], env);
    await sh(process.execPath, [vmclone, 'create', 'win01', '--offline', '-q'], env);

    const log = join(root, 'console-monitor.log');
    writeFileSync(log, '');
    const monitor = spawn(
      process.execPath,
      [zynclone, 'console-monitor', '--root', root, '--assets', assets, '--heartbeat-ms', '1000'],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    procs.push(monitor);
    monitor.stdout?.on('data', (d: Buffer) => writeFileSync(log, d, { flag: 'a' }));
    monitor.stderr?.on('data', (d: Buffer) => writeFileSync(log, d, { flag: 'a' }));
    const monitorUrl = await until('the console monitor', async () => {
      const line = readFileSync(log, 'utf8')
        .split('\n')
        .find((l) => l.includes('"msg":"serving"'));
      return line && (JSON.parse(line) as { url: string }).url;
    });
    await until('its heartbeat', () =>
      xs!.tryRead('/tool/zynclone/daemons/console-monitor/heartbeat'),
    );
    const domid = Number(await xs.read('/tool/zynclone/vm/win01/clone-domid'));
    const vncPort = Number(await xs.read(`/local/domain/${domid}/console/vnc-port`));

    stage('vmclone console -> first frame in chromium');
    // 1. vmclone console -> first framebuffer update painted, in chromium.
    const profile = mkdtempSync(join(tmpdir(), 'zc-console-bench-chromium-'));
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    browserClose = async () => {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    };
    const page = browser.pages()[0] ?? (await browser.newPage());
    const toPaint: number[] = [];
    const cliMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      const url = (
        JSON.parse(await sh(process.execPath, [vmclone, 'console', 'win01', '--json'], env)) as {
          url: string;
        }
      ).url;
      cliMs.push(Date.now() - t0);
      await page.goto(url);
      const painted = await until('the first frame', () =>
        page.evaluate(
          () =>
            (window as unknown as { zcConsole: { firstPaintAt: number } }).zcConsole.firstPaintAt ||
            undefined,
        ),
      );
      toPaint.push(painted - t0);
      await page.goto('about:blank');
    }
    out.push({
      name: 'vmclone console -> first frame painted (median of 5)',
      value: median(toPaint),
      unit: 'ms',
      note: 'goal < 1000',
    });
    out.push({ name: '  of which the vmclone console process', value: median(cliMs), unit: 'ms' });
    await browserClose();
    browserClose = undefined;

    stage('the same RFB stream three ways');
    // 2. The same RFB stream three ways.
    const wsPort = await freePort();
    const websockify = spawn(
      '/usr/bin/websockify',
      [`127.0.0.1:${wsPort}`, `127.0.0.1:${vncPort}`],
      {
        stdio: 'ignore',
      },
    );
    procs.push(websockify);
    const overWs = async (url: string) => {
      const ws = new WebSocket(url, ['binary']);
      const early: Buffer[] = [];
      ws.on('message', (d: Buffer) => early.push(d));
      await within(
        `WebSocket ${url}`,
        new Promise((r, j) => {
          ws.once('open', r);
          ws.once('error', j);
          ws.once('unexpected-response', (_q, res) => j(new Error(`HTTP ${res.statusCode}`)));
        }),
      );
      ws.removeAllListeners('message');
      return {
        session: await within(`RFB handshake over ${url}`, rfbHandshake(ws, early)),
        close: () => ws.close(),
      };
    };
    const controls: WebSocket[] = [];
    const proxySession = async () => {
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
      const first = await new Promise<string>((r, j) => {
        control.once('message', (d) => r(String(d)));
        control.once('error', j);
        control.once('unexpected-response', () => j(new Error('ticket refused')));
      });
      return (JSON.parse(first) as { session: string }).session;
    };
    const paths: Path[] = [
      {
        name: 'direct TCP',
        open: async () => {
          const sock = connect(vncPort, '127.0.0.1');
          sock.setNoDelay(true);
          await new Promise((r) => sock.once('connect', r));
          const reader = ByteReader.ofSocket(sock);
          const session = await rfbHandshakeOver(reader, (d) => sock.write(d));
          return { session, close: () => sock.destroy() };
        },
      },
      {
        name: 'clone_console_monitor',
        open: async () =>
          overWs(`${monitorUrl.replace(/^http/, 'ws')}/vnc/win01?session=${await proxySession()}`),
      },
      { name: 'websockify', open: () => overWs(`ws://127.0.0.1:${wsPort}/`) },
    ];
    await until('websockify', async () => {
      const s = await paths[2]!.open();
      s.close();
      return true;
    });
    const tput: Record<string, number> = {};
    const p50: Record<string, number> = {};
    for (const p of paths) {
      stage(`throughput and round trips, ${p.name}`);
      tput[p.name] = (await within(`throughput over ${p.name}`, throughput(p), 120_000)).mbps;
      const rt = await within(`round trips over ${p.name}`, roundTrips(p), 120_000);
      p50[p.name] = pct(rt, 0.5);
      out.push({
        name: `throughput, ${p.name}`,
        value: tput[p.name]!,
        unit: 'MB/s',
        note: `${FRAMES} full raw frames`,
      });
      out.push({
        name: `round trip p50, ${p.name}`,
        value: p50[p.name]!,
        unit: 'ms',
        note: `p99 ${pct(rt, 0.99).toFixed(3)} ms`,
      });
    }
    out.push({
      name: 'throughput ratio: monitor / websockify',
      value: tput.clone_console_monitor! / tput.websockify!,
      unit: 'x',
      note: 'goal >= 2',
    });
    out.push({
      name: 'throughput ratio: monitor / direct',
      value: tput.clone_console_monitor! / tput['direct TCP']!,
      unit: 'x',
    });
    out.push({
      name: 'added latency p50: monitor - direct',
      value: p50.clone_console_monitor! - p50['direct TCP']!,
      unit: 'ms',
      note: 'goal < 1',
    });
    out.push({
      name: 'added latency p50: websockify - direct',
      value: p50.websockify! - p50['direct TCP']!,
      unit: 'ms',
    });

    stage('memory per open console');
    // 3. Memory per open console (session + VNC connection, one frame each).
    for (const c of controls.splice(0)) c.close();
    await new Promise((r) => setTimeout(r, 500));
    const before = rssKiB(monitor.pid!);
    const open: { close(): void }[] = [];
    for (let i = 0; i < CONSOLES; i++) {
      const s = await overWs(
        `${monitorUrl.replace(/^http/, 'ws')}/vnc/win01?session=${await proxySession()}`,
      );
      requestFrame(s.session, s.session);
      await readFrame(s.session);
      open.push(s);
    }
    const after = rssKiB(monitor.pid!);
    out.push({
      name: 'monitor memory per open console',
      value: (after - before) / CONSOLES,
      unit: 'KiB',
      note: `RSS ${before} -> ${after} KiB with ${CONSOLES} consoles`,
    });
    for (const s of open) s.close();
    for (const c of controls) c.close();
    ackWatch.close().catch(() => {});
    return out;
  } finally {
    await browserClose?.().catch(() => {});
    for (const p of procs) p.kill('SIGTERM');
    await xs?.close().catch(() => {});
    await sh(process.execPath, [zynclone, 'sim', 'down', '--root', root], env).catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
}
