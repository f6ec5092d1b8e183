// One browser WebSocket <-> one TCP connection to a VNC server. The bytes are
// RFB and pass unchanged (binary frames). Back-pressure both ways: the VNC
// socket stops being read while the browser has more than HIGH_WATER bytes
// unsent, and the WebSocket stops being read while the VNC socket's write
// buffer is full, so a slow browser or a slow server bounds memory.
//
// QEMU listens for VNC with a backlog of one. A burst of connections (a
// dashboard opening many consoles, a page reconnecting) overflows its accept
// queue, and an overflowed connection is established on our side yet never
// accepted: it would hang without a byte. So connections to one VNC server
// open one at a time, each holding its turn until the server's greeting (RFB
// servers speak first) or a deadline.
//
// Throughput: a framebuffer update is megabytes. Node's default reads are
// 64 KiB into a fresh buffer each, and every piece then costs a frame, a
// write and its stream bookkeeping. Here the VNC socket reads straight into
// slabs of READ_SLAB bytes (net's `onread`), a full read goes to the browser
// as one frame without a copy, and the slab comes back to a process-wide
// pool once the kernel has taken it. Small reads (the handshake, a cursor, a
// key echo) are copied out of a small per-connection buffer instead, so an
// idle console holds SMALL_READ bytes, not a slab.
import { type Socket, connect } from 'node:net';
import type { WebSocket } from 'ws';

export const HIGH_WATER = 1024 * 1024;
const READ_SLAB = 256 * 1024;
const SMALL_READ = 16 * 1024;
const POOLED_SLABS = 8;
const CONNECT_TIMEOUT_MS = 5000;
const GREETING_TIMEOUT_MS = 5000;

/** Turns per VNC server: the next connection starts when the previous one is greeted or failed. */
const turns = new Map<string, Promise<void>>();

function takeTurn(key: string): Promise<() => void> {
  const previous = turns.get(key) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => {
    release = r;
  });
  const tail = previous.then(() => mine);
  turns.set(key, tail);
  void tail.then(() => {
    if (turns.get(key) === tail) turns.delete(key);
  });
  return previous.then(() => release);
}

/** Free slabs, shared by every connection of the process (single-threaded, so no locking). */
const slabs: Buffer[] = [];
const takeSlab = (): Buffer => slabs.pop() ?? Buffer.allocUnsafeSlow(READ_SLAB);
const returnSlab = (slab: Buffer): void => {
  if (slabs.length < POOLED_SLABS) slabs.push(slab);
};

export interface ProxyStats {
  bytesToBrowser: number;
  bytesToVnc: number;
}

export interface ProxyEnd {
  /** Who ended it, in words, for logs and the audit. */
  readonly reason: string;
}

/** Close codes the page understands (4000-4999 are for applications). */
export const CLOSE = {
  VNC_UNREACHABLE: 4001,
  VNC_CLOSED: 4002,
  CONSOLE_MOVED: 4003,
  CLONE_GONE: 4004,
  SESSION_ENDED: 4005,
} as const;

export class VncProxy {
  readonly stats: ProxyStats = { bytesToBrowser: 0, bytesToVnc: 0 };
  readonly ended: Promise<ProxyEnd>;
  private tcp: Socket | undefined;
  private finish!: (end: ProxyEnd) => void;
  private done = false;
  private releaseTurn: (() => void) | undefined;
  private greeted = false;
  private readonly small: Buffer = Buffer.allocUnsafeSlow(SMALL_READ);
  /** The buffer the next read goes into. */
  private reading: Buffer = this.small;

  constructor(
    private readonly ws: WebSocket,
    target: { host: string; port: number },
  ) {
    this.ended = new Promise((r) => {
      this.finish = r;
    });
    // The browser speaks only after the server's greeting; until then it is not read.
    ws.pause();
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary || this.done || !this.tcp) return;
      this.stats.bytesToVnc += data.length;
      if (!this.tcp.write(data)) ws.pause();
    });
    ws.on('close', () => this.close(1000, 'browser closed the connection'));
    ws.on('error', () => this.close(1011, 'browser connection failed'));
    void takeTurn(`${target.host}:${target.port}`).then((release) => {
      this.releaseTurn = release;
      if (this.done) this.endTurn();
      else this.connect(target);
    });
  }

  private connect(target: { host: string; port: number }): void {
    const tcp = connect({
      host: target.host,
      port: target.port,
      onread: {
        buffer: () => this.reading,
        callback: (n: number, buf: Buffer) => this.toBrowser(n, buf),
      },
    });
    this.tcp = tcp;
    tcp.setNoDelay(true);
    let connected = false;
    tcp.setTimeout(CONNECT_TIMEOUT_MS);
    tcp.on('timeout', () =>
      this.close(
        CLOSE.VNC_UNREACHABLE,
        connected ? 'VNC server did not greet' : 'VNC server did not answer',
      ),
    );
    tcp.once('connect', () => {
      connected = true;
      tcp.setTimeout(GREETING_TIMEOUT_MS);
    });
    tcp.on('drain', () => this.ws.resume());
    tcp.on('error', (err: NodeJS.ErrnoException) =>
      this.close(
        connected ? CLOSE.VNC_CLOSED : CLOSE.VNC_UNREACHABLE,
        `VNC server: ${err.code ?? err.message}`,
      ),
    );
    tcp.on('close', () => this.close(CLOSE.VNC_CLOSED, 'VNC server closed the connection'));
  }

  private endTurn(): void {
    this.releaseTurn?.();
    this.releaseTurn = undefined;
  }

  /** `n` bytes arrived from the VNC server in `buf`; false stops reading. */
  private toBrowser(n: number, buf: Buffer): boolean {
    if (this.done) return false;
    if (!this.greeted) {
      this.greeted = true;
      this.tcp!.setTimeout(0);
      this.endTurn();
      this.ws.resume();
    }
    this.stats.bytesToBrowser += n;
    let chunk: Buffer;
    let handedOver: Buffer | undefined;
    if (buf === this.small) {
      chunk = Buffer.from(buf.subarray(0, n));
      // A full small buffer means a big update is coming: read it in slabs.
      if (n === buf.length) this.reading = takeSlab();
    } else if (n < SMALL_READ) {
      chunk = Buffer.from(buf.subarray(0, n));
      returnSlab(buf);
      this.reading = this.small;
    } else {
      chunk = buf.subarray(0, n);
      handedOver = buf;
      this.reading = takeSlab();
    }
    const full = this.ws.bufferedAmount + n > HIGH_WATER;
    // The frame's callback runs once the kernel has the bytes: only then may
    // the slab be reused, and only then is the browser's backlog gone.
    this.ws.send(
      chunk,
      { binary: true },
      handedOver === undefined && !full
        ? undefined
        : (err) => {
            if (err) return;
            if (handedOver) returnSlab(handedOver);
            if (full && !this.done) this.tcp?.resume();
          },
    );
    return !full;
  }

  /** Ends both sides; the first call's reason is the one reported. */
  close(code: number, reason: string): void {
    if (this.done) return;
    this.done = true;
    this.tcp?.destroy();
    this.endTurn();
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) {
      // A close reason is at most 123 bytes (RFC 6455).
      this.ws.close(code, Buffer.from(reason).subarray(0, 120).toString());
    }
    // The browser may never answer the close: do not keep its socket.
    setTimeout(() => this.ws.terminate(), 2000).unref();
    this.finish({ reason });
  }
}
