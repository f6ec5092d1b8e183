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
// Throughput: a framebuffer update is megabytes, and on a busy host what
// decides how fast it reaches the browser is what the proxy spends per byte.
// The VNC socket reads straight into slabs of READ_SLAB bytes (net's
// `onread`), each read goes to the browser as one frame, and the frame header
// is written into room kept in front of the bytes (ws-frame.ts), so a frame is
// one write of one buffer with no copy. ws keeps the handshake, the browser's
// frames, pings and the close; the data frames bypass its Sender, which would
// add per-frame objects, a writev and a callback. A buffer the kernel took at
// once is read into again (it stays in cache); one the socket still holds is
// set aside until the socket has written it, and reading stops while more
// than HIGH_WATER bytes wait. Small reads (the handshake, a cursor, a key
// echo) go into a small per-connection buffer, so an idle console holds
// SMALL_READ bytes, not a slab.
import { type Socket, connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { FRAME_HEADROOM, writeBinaryFrameHeader } from './ws-frame.js';

export const HIGH_WATER = 1024 * 1024;
const READ_SLAB = 1024 * 1024;
const SMALL_READ = 16 * 1024;
const POOLED_SLABS = 4;
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

/** A read buffer with room for a frame header in front of what is read. */
class FrameBuffer {
  readonly whole: Buffer;
  /** Where reads go: everything after the header room. */
  readonly payload: Buffer;
  constructor(capacity: number) {
    this.whole = Buffer.allocUnsafeSlow(FRAME_HEADROOM + capacity);
    this.payload = this.whole.subarray(FRAME_HEADROOM);
  }
  /** The first `n` bytes read, as one binary frame. */
  frame(n: number): Buffer {
    return this.whole.subarray(writeBinaryFrameHeader(this.whole, n), FRAME_HEADROOM + n);
  }
}

/** Free slabs, shared by every connection of the process (single-threaded, so no locking). */
const slabs: FrameBuffer[] = [];
const takeSlab = (): FrameBuffer => slabs.pop() ?? new FrameBuffer(READ_SLAB);
const returnSlab = (slab: FrameBuffer): void => {
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
  private readonly small = new FrameBuffer(SMALL_READ);
  /** The buffer the next read goes into. */
  private reading: FrameBuffer = this.small;
  /** Buffers the browser socket has not written yet, and how many of our writes it has not finished. */
  private readonly held: FrameBuffer[] = [];
  private writesInFlight = 0;
  private paused = false;

  /** `browser` is the socket under `ws` (the upgraded connection): data frames are written to it directly. */
  constructor(
    private readonly ws: WebSocket,
    private readonly browser: Duplex,
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
        buffer: () => this.reading.payload,
        callback: (n: number) => this.toBrowser(n),
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

  /** `n` bytes arrived from the VNC server in `this.reading`; false stops reading. */
  private toBrowser(n: number): boolean {
    if (this.done) return false;
    if (!this.greeted) {
      this.greeted = true;
      this.tcp!.setTimeout(0);
      this.endTurn();
      this.ws.resume();
    }
    // After a close frame (sent or received) no data frame may follow.
    if (this.ws.readyState !== this.ws.OPEN) return false;
    this.stats.bytesToBrowser += n;
    const used = this.reading;
    this.writesInFlight++;
    this.browser.write(used.frame(n), this.written);
    const waiting = this.browser.writableLength;
    if (waiting > 0) this.held.push(used);
    // A full read means more is queued: read on in a slab. One that is not
    // full means the server's queue ran dry (an update ended): back to the
    // small buffer, which is all an idle console holds.
    const big = n === used.payload.length;
    this.reading = this.nextBuffer(used, waiting > 0, big);
    if (waiting <= HIGH_WATER) return true;
    this.paused = true;
    return false;
  }

  private nextBuffer(used: FrameBuffer, usedHeld: boolean, big: boolean): FrameBuffer {
    if (!usedHeld && (used !== this.small) === big) return used;
    if (!usedHeld && used !== this.small) returnSlab(used);
    if (!big && !this.held.includes(this.small)) return this.small;
    return takeSlab();
  }

  /** A write of ours is done; when all are, their buffers are free and reading may go on. */
  private readonly written = (err?: Error | null): void => {
    this.writesInFlight--;
    if (err || this.writesInFlight > 0) return;
    if (this.held.length > 0) {
      for (const buf of this.held) if (buf !== this.small) returnSlab(buf);
      this.held.length = 0;
    }
    if (this.paused && !this.done) {
      this.paused = false;
      this.tcp?.resume();
    }
  };

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
