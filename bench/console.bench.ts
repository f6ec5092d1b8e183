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
import { ByteReader, rfbHandshake } from './rfb-client.js';
import type { BenchResult } from './types.js';

const here = dirname(fileURLToPath(import.meta.url));
const zynclone = resolve(here, '../src/bin/zynclone.js');
const vmclone = resolve(here, '../src/bin/vmclone.js');
const assets = resolve(here, '../console-page');
const CHROMIUM = '/usr/bin/chromium';
const STREAM_BYTES = 256 * 2 ** 20;
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

/** A VNC server stand-in: `stream` sends N bytes to each client as fast as TCP allows; `echo` echoes. */
const STAND_IN = `
const net = require('node:net');
const [kind, total] = [process.argv[1], Number(process.argv[2])];
const chunk = Buffer.alloc(256 * 1024, 0x5a);
const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  sock.on('error', () => {});
  if (kind === 'echo') return void sock.pipe(sock);
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      sent += chunk.length;
      if (!sock.write(chunk)) return void sock.once('drain', pump);
    }
  };
  pump();
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
const rssKiB = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

interface Stream {
  reader: ByteReader;
  send(d: Buffer): void;
  close(): void;
}

/** Round trips of one byte through an echo server (ms), after 50 to warm up. */
async function roundTrips(s: Stream): Promise<number[]> {
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

    stage('the same streams three ways');
    // 2. Proxy throughput and latency. QEMU paces its framebuffer updates on a
    // refresh timer (up to seconds when the screen is idle), which would hide
    // any proxy; so the clone's VNC server is stood in for by a source that
    // streams STREAM_BYTES as fast as TCP allows, then by an echo server, each
    // put where libxl writes console/vnc-port (the monitor follows the port).
    // Each stream is measured direct, through the monitor and through websockify.
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
    const measure = async (
      kind: 'stream' | 'echo',
      use: (s: Stream, path: string) => Promise<void>,
      what: string,
    ): Promise<Record<string, number>> => {
      // The stand-in server is a process of its own, so that it does not share
      // this process's event loop with the client being measured.
      const server = spawn(process.execPath, ['-e', STAND_IN, kind, String(STREAM_BYTES)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      procs.push(server);
      const port = await within(
        'the stand-in server',
        new Promise<number>((r) =>
          server.stdout!.once('data', (d: Buffer) => r(Number(String(d).trim()))),
        ),
      );
      const wsPort = await freePort();
      const websockify = spawn(
        '/usr/bin/websockify',
        [`127.0.0.1:${wsPort}`, `127.0.0.1:${port}`],
        { stdio: 'ignore' },
      );
      procs.push(websockify);
      await xs!.write(`/local/domain/${domid}/console/vnc-port`, String(port));
      await new Promise((r) => setTimeout(r, 500));
      const opens: Record<string, () => Promise<Stream>> = {
        'direct TCP': async () => {
          const sock = connect(port, '127.0.0.1');
          sock.setNoDelay(true);
          await new Promise((r) => sock.once('connect', r));
          return {
            reader: ByteReader.ofSocket(sock),
            send: (d) => sock.write(d),
            close: () => sock.destroy(),
          };
        },
        clone_console_monitor: async () =>
          rawWs(`${monitorUrl.replace(/^http/, 'ws')}/vnc/win01?session=${await proxySession()}`),
        websockify: () => until('websockify', () => rawWs(`ws://127.0.0.1:${wsPort}/`)),
      };
      const ms: Record<string, number> = {};
      try {
        for (const [name, open] of Object.entries(opens)) {
          stage(`${what}, ${name}`);
          const s = await open();
          const t0 = performance.now();
          try {
            await within(`${what} over ${name}`, use(s, name), 180_000);
          } finally {
            s.close();
          }
          ms[name] = performance.now() - t0;
        }
      } finally {
        websockify.kill('SIGTERM');
        server.kill('SIGTERM');
      }
      return ms;
    };
    const streamMs = await measure(
      'stream',
      async (s) => {
        await s.reader.drain(STREAM_BYTES);
      },
      'throughput',
    );
    const tput: Record<string, number> = {};
    for (const [name, ms] of Object.entries(streamMs)) {
      tput[name] = STREAM_BYTES / 1e6 / (ms / 1000);
      out.push({
        name: `throughput, ${name}`,
        value: tput[name]!,
        unit: 'MB/s',
        note: `${STREAM_BYTES / 2 ** 20} MiB stream`,
      });
    }
    const trips: Record<string, number[]> = {};
    await measure(
      'echo',
      async (s, path) => {
        trips[path] = await roundTrips(s);
      },
      'round trips',
    );
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
      const url = `${monitorUrl.replace(/^http/, 'ws')}/vnc/win01?session=${await proxySession()}`;
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
      await within('RFB handshake', rfbHandshake(ws, early));
      open.push({ close: () => ws.close() });
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
