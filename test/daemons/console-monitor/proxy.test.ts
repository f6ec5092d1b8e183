// The WebSocket-to-VNC proxy alone, in-process, against byte sources faster
// than any VNC server: back-pressure holds memory bounded both ways, and
// every byte arrives, in order, once the slow side reads again. Each test
// runs on both data paths: VNC -> browser bytes copied by the proxy, and
// spliced by zynclone-console-splice (its own cases: splice-helper.test.ts).
// (The same proxy against QEMU, through the monitor process:
// console-monitor.test.ts.)
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { CLOSE, type ProxyOptions, VncProxy } from '../../../src/daemons/console-monitor/proxy.js';
import { DATA_PATHS, spliceHelper } from './splice-build.js';

const MiB = 1024 * 1024;
const TOTAL = 48 * MiB;
const CHUNK = 64 * 1024;

/** Byte i of the test stream: a pattern that makes lost, doubled or reordered bytes visible. */
const chunkAt = (offset: number) => {
  const b = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i += 4) b.writeUInt32LE((offset + i) >>> 2, i);
  return b;
};

const listen = (srv: Server | WebSocketServer) =>
  new Promise<number>((r) => {
    if (srv instanceof WebSocketServer)
      srv.once('listening', () => r((srv.address() as AddressInfo).port));
    else srv.listen(0, '127.0.0.1', () => r((srv.address() as AddressInfo).port));
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

describe.each(DATA_PATHS)('VncProxy, %s data path', (dataPath) => {
  let options: ProxyOptions = {};
  beforeAll(async () => {
    if (dataPath === 'splice') options = { spliceHelper: await spliceHelper() };
  }, 60_000);

  /** A "VNC server" (any TCP source), a WebSocket server proxying to it, and its last proxy. */
  async function rig(onVnc: (s: Socket) => void) {
    const vnc = createServer(onVnc);
    const vncPort = await listen(vnc);
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    const wsPort = await listen(wss);
    const proxies: VncProxy[] = [];
    wss.on('connection', (ws, req) =>
      proxies.push(new VncProxy(ws, req.socket, { host: '127.0.0.1', port: vncPort }, options)),
    );
    cleanup.push(() => {
      vnc.close();
      wss.close();
      for (const c of wss.clients) c.terminate();
    });
    const client = new WebSocket(`ws://127.0.0.1:${wsPort}/`, ['binary']);
    await new Promise((r) => client.once('open', r));
    return { client, proxies, vnc };
  }

  it('stops reading the VNC server while the browser does not read, and loses nothing', async () => {
    let accepted = 0;
    const { client } = await rig((sock) => {
      const pump = () => {
        while (accepted < TOTAL) {
          const ok = sock.write(chunkAt(accepted));
          accepted += CHUNK;
          if (!ok) return void sock.once('drain', pump);
        }
        sock.end();
      };
      pump();
    });
    client.pause();
    await sleep(1500);
    const stalledAt = accepted;
    await sleep(1000);
    // Stalled: what the VNC server got rid of is the proxy's 1 MiB plus socket buffers.
    expect(accepted).toBe(stalledAt);
    expect(accepted).toBeLessThan(24 * MiB);

    let received = 0;
    let corrupt = false;
    const done = new Promise<void>((r) => {
      client.on('message', (d: Buffer) => {
        // Check the aligned words (frames need not end on a word boundary).
        for (let i = (4 - (received % 4)) % 4; i + 4 <= d.length && !corrupt; i += 4092) {
          if (d.readUInt32LE(i) !== (received + i) >>> 2) corrupt = true;
        }
        received += d.length;
        if (received >= TOTAL) r();
      });
    });
    client.resume();
    await done;
    expect(corrupt).toBe(false);
    expect(received).toBe(TOTAL);
  }, 30_000);

  it('stops reading the browser while the VNC server does not read, and loses nothing', async () => {
    let server: Socket | undefined;
    let got = 0;
    const { client, proxies } = await rig((sock) => {
      server = sock;
      sock.write('RFB 003.008\n'); // RFB servers speak first
      sock.pause();
      sock.on('data', (d: Buffer) => {
        got += d.length;
      });
    });
    for (let off = 0; off < TOTAL; off += CHUNK) client.send(chunkAt(off));
    await sleep(2000);
    // The proxy took only what the VNC socket could buffer; the rest waits in the browser.
    expect(proxies[0]!.stats.bytesToVnc).toBeLessThan(24 * MiB);
    expect(client.bufferedAmount).toBeGreaterThan(0);
    server!.resume();
    await expect.poll(() => got, { timeout: 20_000 }).toBe(TOTAL);
    expect(proxies[0]!.stats.bytesToVnc).toBe(TOTAL);
  }, 30_000);

  it('passes every byte in order through reads of every size, fast and trickling', async () => {
    // Sizes around the small buffer and the slab, bursts and lone bytes with
    // pauses between: buffers are reused, set aside and swapped all the time.
    const sizes = [12, 1, 16 * 1024, 16 * 1024 + 1, 70_000, 3 * MiB + 5, 100, 2 * MiB, 5, MiB];
    const byteAt = (i: number) => (i * 7 + (i >>> 13)) & 0xff;
    let total = 0;
    const { client, proxies } = await rig(async (sock) => {
      for (let round = 0; round < 3; round++) {
        for (const size of sizes) {
          const b = Buffer.allocUnsafe(size);
          for (let i = 0; i < size; i++) b[i] = byteAt(total + i);
          total += size;
          if (!sock.write(b)) await new Promise((r) => sock.once('drain', r));
          if (size < 1000) await sleep(5);
        }
      }
      sock.end();
    });
    let received = 0;
    let firstBad = -1;
    const closeCode = await new Promise<number>((resolve) => {
      client.on('message', (d: Buffer) => {
        for (let i = 0; i < d.length && firstBad < 0; i++) {
          if (d[i] !== byteAt(received + i)) firstBad = received + i;
        }
        received += d.length;
      });
      client.on('close', (code) => resolve(code));
    });
    expect(firstBad).toBe(-1);
    expect(received).toBe(total);
    expect(total).toBe(3 * sizes.reduce((a, b) => a + b, 0));
    // The server's end of stream reached the browser as a clean close, after the last byte.
    expect(closeCode).toBe(CLOSE.VNC_CLOSED);
    await proxies[0]!.ended;
    expect(proxies[0]!.dataPath).toBe(dataPath);
    expect(proxies[0]!.stats.bytesToBrowser).toBe(total);
  }, 30_000);

  it('closes the browser side with 4002 when the VNC server goes, 4001 when it is not there', async () => {
    const { client, vnc } = await rig((sock) => setTimeout(() => sock.destroy(), 100));
    const code = await new Promise<number>((r) => client.once('close', (c) => r(c)));
    expect(code).toBe(CLOSE.VNC_CLOSED);
    const gone = (vnc.address() as AddressInfo).port;
    await new Promise((r) => vnc.close(r));
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    const port = await listen(wss);
    cleanup.push(() => wss.close());
    // The port of the closed server: nobody listens there now.
    wss.on(
      'connection',
      (ws, req) => new VncProxy(ws, req.socket, { host: '127.0.0.1', port: gone }, options),
    );
    const c2 = new WebSocket(`ws://127.0.0.1:${port}/`, ['binary']);
    const code2 = await new Promise<number>((r) => c2.once('close', (c) => r(c)));
    expect(code2).toBe(CLOSE.VNC_UNREACHABLE);
  });

  it('opens a burst of connections to one server one at a time, each until it is greeted', async () => {
    // QEMU accepts VNC connections with a backlog of one: a burst it is slow to
    // greet must never find more than one connection waiting.
    let waiting = 0;
    let mostWaiting = 0;
    const vnc = createServer((sock) => {
      waiting++;
      mostWaiting = Math.max(mostWaiting, waiting);
      setTimeout(() => {
        waiting--;
        sock.write('RFB 003.008\n');
      }, 30);
    });
    const vncPort = await listen(vnc);
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    const wsPort = await listen(wss);
    wss.on(
      'connection',
      (ws, req) => new VncProxy(ws, req.socket, { host: '127.0.0.1', port: vncPort }, options),
    );
    cleanup.push(() => {
      vnc.close();
      for (const c of wss.clients) c.terminate();
      wss.close();
    });
    const greetings = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<string>((resolve, reject) => {
            const c = new WebSocket(`ws://127.0.0.1:${wsPort}/`, ['binary']);
            c.once('message', (d: Buffer) => resolve(d.toString('latin1')));
            c.once('close', (code) => reject(new Error(`closed ${code}`)));
          }),
      ),
    );
    expect(greetings).toEqual(Array(20).fill('RFB 003.008\n'));
    expect(mostWaiting).toBe(1);
  });

  it('gives up on a server that accepts and never greets, and lets the next connection try', async () => {
    let accepted = 0;
    const { client } = await rig((sock) => {
      if (++accepted > 1) sock.write('RFB 003.008\n');
    });
    const closed = await new Promise<{ code: number; reason: string }>((r) =>
      client.once('close', (code, reason) => r({ code, reason: reason.toString() })),
    );
    expect(closed).toEqual({ code: CLOSE.VNC_UNREACHABLE, reason: 'VNC server did not greet' });
    const wsPort = Number(new URL(client.url).port);
    const next = new WebSocket(`ws://127.0.0.1:${wsPort}/`, ['binary']);
    const greeting = await new Promise<Buffer>((r) => next.once('message', r));
    expect(greeting.toString('latin1')).toBe('RFB 003.008\n');
    next.close();
  }, 15_000);
});
