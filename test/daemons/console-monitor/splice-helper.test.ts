// The proxy's splice path (zynclone-console-splice, built from
// helpers/console-splice) on what only it can get wrong: frames cut by a
// close, a pong or a browser's close frame between its frames, a slow
// browser, a VNC server or a browser that vanishes mid-stream, many consoles
// at once, the bytes it reports, and the fall back to the copy path when it
// cannot start. (Everything else runs on both paths: proxy.test.ts.)
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import {
  CLOSE,
  type DataPath,
  type ProxyEnd,
  VncProxy,
} from '../../../src/daemons/console-monitor/proxy.js';
import { spliceHelper } from './splice-build.js';

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;

/** Byte i of a test stream: lost, doubled or reordered bytes show. */
const byteAt = (i: number) => (i * 7 + (i >>> 13)) & 0xff;
const chunkAt = (offset: number, size = CHUNK) => {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = byteAt(offset + i);
  return b;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const listen = (srv: Server | WebSocketServer) =>
  new Promise<number>((r) => {
    if (srv instanceof WebSocketServer)
      srv.once('listening', () => r((srv.address() as AddressInfo).port));
    else srv.listen(0, '127.0.0.1', () => r((srv.address() as AddressInfo).port));
  });

/** The splice helpers this test process runs now. */
const runningHelpers = (): number[] =>
  readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8')
    .split(' ')
    .filter(Boolean)
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('zynclone-consol');
      } catch {
        return false;
      }
    });
const rssKiB = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

let helper: string;
beforeAll(async () => {
  helper = await spliceHelper();
}, 60_000);

interface Proxied {
  proxy: VncProxy;
  paths: { path: DataPath; why: string }[];
}

/** A VNC stand-in, a WebSocket server whose connections go through the splice path, and what each proxy told. */
async function rig(onVnc: (s: Socket) => void, spliceHelperPath = () => helper) {
  const vnc = createServer(onVnc);
  const vncPort = await listen(vnc);
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  const wsPort = await listen(wss);
  const proxied: Proxied[] = [];
  wss.on('connection', (ws, req) => {
    const paths: Proxied['paths'] = [];
    const proxy = new VncProxy(
      ws,
      req.socket,
      { host: '127.0.0.1', port: vncPort },
      { spliceHelper: spliceHelperPath(), onDataPath: (path, why) => paths.push({ path, why }) },
    );
    proxied.push({ proxy, paths });
  });
  cleanup.push(() => {
    vnc.close();
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  const open = async () => {
    const client = new WebSocket(`ws://127.0.0.1:${wsPort}/`, ['binary']);
    await new Promise((r, j) => {
      client.once('open', r);
      client.once('error', j);
    });
    return client;
  };
  return { open, proxied };
}

/** Greets, then streams `total` test bytes (or forever) as fast as the proxy takes them. */
function streamer(total = Number.POSITIVE_INFINITY, after?: (s: Socket) => void) {
  return (sock: Socket) => {
    sock.on('error', () => {});
    let sent = 0;
    const pump = () => {
      while (sent < total && !sock.destroyed) {
        const ok = sock.write(chunkAt(sent));
        sent += CHUNK;
        if (!ok) return void sock.once('drain', pump);
      }
      if (sent >= total) after?.(sock);
    };
    pump();
  };
}

/** Checks every byte the client gets against the pattern; resolves with the close. */
function receive(client: WebSocket) {
  const got = { bytes: 0, firstBad: -1 };
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    client.on('message', (d: Buffer) => {
      for (let i = 0; i < d.length && got.firstBad < 0; i += 251) {
        if (d[i] !== byteAt(got.bytes + i)) got.firstBad = got.bytes + i;
      }
      got.bytes += d.length;
    });
    client.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  return { got, closed };
}

describe('zynclone-console-splice', () => {
  it('refuses arguments with exit 2 and says how it is used', async () => {
    const r = await promisify(execFile)(helper, ['--help']).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(r).toMatchObject({ code: 2 });
    expect((r as { stderr: string }).stderr).toContain('usage: zynclone-console-splice');
  });

  it('never cuts a frame when the proxy closes mid-stream, even toward a browser that reads slowly', async () => {
    const { open, proxied } = await rig(streamer());
    for (let round = 0; round < 3; round++) {
      const client = await open();
      const { got, closed } = receive(client);
      await sleep(300);
      // The browser stops reading: the helper is in the middle of a frame.
      client.pause();
      await sleep(300);
      const { proxy, paths } = proxied[round]!;
      expect(paths).toEqual([{ path: 'splice', why: expect.stringMatching(/^helper pid \d+$/) }]);
      proxy.close(CLOSE.SESSION_ENDED, 'console monitor stopping');
      await sleep(500);
      client.resume();
      // A cut frame would swallow the close frame: ws would report 1006, or 1002.
      expect(await closed).toEqual({
        code: CLOSE.SESSION_ENDED,
        reason: 'console monitor stopping',
      });
      expect(got.firstBad).toBe(-1);
      const end: ProxyEnd = await proxy.ended;
      expect(end.reason).toBe('console monitor stopping');
      expect(proxy.stats.bytesToBrowser).toBe(got.bytes);
    }
    await expect.poll(runningHelpers).toEqual([]);
  }, 30_000);

  it("answers a browser's ping between its frames and its close frame after the last one", async () => {
    const { open, proxied } = await rig(streamer());
    const client = await open();
    const { got, closed } = receive(client);
    await sleep(200);
    const pongs: string[] = [];
    client.on('pong', (d: Buffer) => pongs.push(d.toString()));
    for (let i = 0; i < 5; i++) {
      client.ping(`ping ${i}`);
      await sleep(50);
    }
    await expect.poll(() => pongs).toEqual(['ping 0', 'ping 1', 'ping 2', 'ping 3', 'ping 4']);
    client.close(1000, 'tab closed');
    expect(await closed).toEqual({ code: 1000, reason: 'tab closed' });
    expect(got.firstBad).toBe(-1);
    expect(got.bytes).toBeGreaterThan(MiB);
    const { proxy } = proxied[0]!;
    expect((await proxy.ended).reason).toBe('browser closed the connection');
    expect(proxy.stats.bytesToBrowser).toBe(got.bytes);
  }, 20_000);

  it('blocks in the kernel while the browser does not read: memory bounded, nothing lost', async () => {
    const TOTAL = 64 * MiB;
    let accepted = 0;
    const { open, proxied } = await rig((sock) => {
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
    const client = await open();
    client.pause();
    await sleep(1500);
    const stalledAt = accepted;
    await sleep(1000);
    expect(accepted).toBe(stalledAt);
    // Socket buffers and the helper's 1 MiB pipe: the VNC server is held back.
    expect(accepted).toBeLessThan(24 * MiB);
    const [pid] = runningHelpers();
    expect(pid).toBeDefined();
    // The helper holds no copy of the bytes: they wait in the kernel.
    expect(rssKiB(pid!)).toBeLessThan(4 * 1024);
    const { got, closed } = receive(client);
    client.resume();
    expect((await closed).code).toBe(CLOSE.VNC_CLOSED);
    expect(got.firstBad).toBe(-1);
    expect(got.bytes).toBe(TOTAL);
    expect(proxied[0]!.proxy.stats.bytesToBrowser).toBe(TOTAL);
  }, 30_000);

  it('closes with 4002 when the VNC server is killed mid-stream, after every byte it sent', async () => {
    const SENT = 8 * MiB;
    let server: Socket | undefined;
    const { open, proxied } = await rig(
      streamer(SENT, (sock) => {
        server = sock;
      }),
    );
    const client = await open();
    const { got, closed } = receive(client);
    await expect.poll(() => got.bytes).toBe(SENT);
    // A killed QEMU: the connection is reset, not ended.
    server!.resetAndDestroy();
    expect((await closed).code).toBe(CLOSE.VNC_CLOSED);
    expect(got).toEqual({ bytes: SENT, firstBad: -1 });
    expect(proxied[0]!.paths.map((p) => p.path)).toEqual(['splice']);
    expect(proxied[0]!.proxy.stats.bytesToBrowser).toBe(SENT);
    await expect.poll(runningHelpers).toEqual([]);
  }, 20_000);

  it('ends the helper and the VNC connection when the browser vanishes mid-stream', async () => {
    let vncClosed = false;
    const { open, proxied } = await rig((sock) => {
      sock.on('close', () => {
        vncClosed = true;
      });
      streamer()(sock);
    });
    const client = await open();
    receive(client);
    await sleep(300);
    expect(runningHelpers()).toHaveLength(1);
    // The tab is killed: no close frame, the TCP connection just goes.
    client.terminate();
    const end = await proxied[0]!.proxy.ended;
    expect(end.reason).toMatch(/browser/);
    await expect.poll(() => vncClosed).toBe(true);
    await expect.poll(runningHelpers).toEqual([]);
    expect(proxied[0]!.proxy.stats.bytesToBrowser).toBeGreaterThan(0);
  }, 20_000);

  it('carries 50 consoles at once, each byte in order, and leaves no helper behind', async () => {
    const EACH = 4 * MiB;
    const { open, proxied } = await rig(streamer(EACH, (s) => s.end()));
    const results = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const { got, closed } = receive(await open());
        return { ...(await closed), ...got };
      }),
    );
    for (const r of results) {
      expect(r).toEqual({
        code: CLOSE.VNC_CLOSED,
        reason: 'VNC server closed the connection',
        bytes: EACH,
        firstBad: -1,
      });
    }
    expect(proxied).toHaveLength(50);
    for (const { proxy, paths } of proxied) {
      await proxy.ended;
      expect(paths.map((p) => p.path)).toEqual(['splice']);
      expect(proxy.stats.bytesToBrowser).toBe(EACH);
    }
    await expect.poll(runningHelpers).toEqual([]);
  }, 60_000);

  it.each([
    ['is not there', '/nonexistent/zynclone-console-splice', /ENOENT/],
    ['exits at once', '/bin/false', /exit 1/],
  ])(
    'falls back to copying when the helper %s, and loses nothing',
    async (_what, path, why) => {
      const TOTAL = 8 * MiB;
      let server: Socket | undefined;
      const { open, proxied } = await rig(
        streamer(TOTAL, (s) => {
          server = s;
        }),
        () => path,
      );
      const client = await open();
      const { got, closed } = receive(client);
      await expect.poll(() => got.bytes).toBe(TOTAL);
      // ws answers pings itself again.
      const pong = new Promise<string>((r) => client.once('pong', (d: Buffer) => r(d.toString())));
      client.ping('still there?');
      expect(await pong).toBe('still there?');
      server!.end();
      expect((await closed).code).toBe(CLOSE.VNC_CLOSED);
      expect(got).toEqual({ bytes: TOTAL, firstBad: -1 });
      const { proxy, paths } = proxied[0]!;
      expect(paths).toEqual([{ path: 'js', why: expect.stringMatching(why) }]);
      expect(proxy.dataPath).toBe('js');
      expect(proxy.stats.bytesToBrowser).toBe(TOTAL);
    },
    20_000,
  );
});
