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
//
// With a splice helper (splice-helper.ts) the VNC -> browser bytes leave user
// space altogether: once the server's greeting has gone out and reached the
// kernel, reading stops and the helper gets both sockets. The browser ->
// VNC direction stays here. Whatever ws must still send to the browser (a
// pong, the close frame) goes between the helper's frames: a pong through
// the helper, the close after the helper has stopped at a frame boundary.
import { type Socket, connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { type SpliceEnd, SpliceHelper, controlFrame } from './splice-helper.js';
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

/** How VNC -> browser bytes go: copied by this process, or spliced by the helper. */
export type DataPath = 'js' | 'splice';

export interface ProxyOptions {
  /** zynclone-console-splice; absent: the bytes are always copied here. */
  spliceHelper?: string | undefined;
  /** Told which path the connection's VNC -> browser bytes take, once it is known, and why. */
  onDataPath?: (path: DataPath, why: string) => void;
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
  /** Where the VNC -> browser bytes go now. */
  dataPath: DataPath = 'js';
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
  private handingOver = false;
  private spliceTried = false;
  private helper: SpliceHelper | undefined;
  /** ws's own close, which an active helper must not be overtaken by. */
  private readonly closeWs: (code?: number, data?: string | Buffer) => void;

  /** `browser` is the socket under `ws` (the upgraded connection): data frames are written to it directly. */
  constructor(
    private readonly ws: WebSocket,
    private readonly browser: Duplex,
    target: { host: string; port: number },
    private readonly options: ProxyOptions = {},
  ) {
    this.closeWs = ws.close.bind(ws);
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
    if (this.options.spliceHelper !== undefined && !this.spliceTried) {
      // The rest goes through the helper, once this has reached the kernel.
      this.spliceTried = true;
      this.handingOver = true;
      this.paused = true;
      return false;
    }
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
    if (this.handingOver && !this.done) {
      this.handingOver = false;
      this.handOver(this.options.spliceHelper!);
    } else if (this.paused && !this.done) {
      this.paused = false;
      this.tcp?.resume();
    }
  };

  /** Gives the VNC -> browser direction to the splice helper; nothing is read or unsent here now. */
  private handOver(path: string): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.browser.writableLength > 0) {
      // ws wrote something of its own meanwhile (a pong): not a clean point to hand over.
      this.options.onDataPath?.('js', 'bytes of ws still unsent at the hand-over');
      this.paused = false;
      this.tcp?.resume();
      return;
    }
    const helper = new SpliceHelper(path, this.tcp!, this.browser as Socket);
    this.helper = helper;
    // spawn stops reading every socket it shares with a child; the browser's frames are still ours.
    if (!this.ws.isPaused) this.browser.resume();
    // ws answers a browser's close frame (or a protocol error) with one of its
    // own and a ping with a pong: neither may cut into a frame of the helper's.
    const wsClose = this.closeWs;
    this.ws.close = (code?: number, data?: string | Buffer) => {
      void helper
        .stop()
        .then((end) => (end.atFrameBoundary ? wsClose(code, data) : this.ws.terminate()));
    };
    this.ws.pong = (data?: unknown, _mask?: boolean, cb?: (err: Error) => void) => {
      helper.sendControlFrame(controlFrame(0xa, Buffer.from((data ?? []) as Buffer)));
      cb?.(undefined as unknown as Error);
    };
    void helper.started.then((ok) => {
      if (!ok) return;
      this.dataPath = 'splice';
      this.options.onDataPath?.('splice', `helper pid ${helper.pid}`);
    });
    void helper.ended.then((end) => this.helperEnded(helper, end));
  }

  private async helperEnded(helper: SpliceHelper, end: SpliceEnd): Promise<void> {
    this.stats.bytesToBrowser += end.bytes;
    if (!(await helper.started)) {
      // It never read or wrote a byte: the copy path carries on where the
      // helper would have, and ws sends its pongs and close itself again.
      this.helper = undefined;
      Reflect.deleteProperty(this.ws, 'close');
      Reflect.deleteProperty(this.ws, 'pong');
      this.options.onDataPath?.('js', `splice helper failed to start: ${end.error ?? end.reason}`);
      if (!this.done) {
        this.paused = false;
        this.tcp?.resume();
      }
      return;
    }
    if (end.reason === 'vnc-closed')
      this.close(CLOSE.VNC_CLOSED, 'VNC server closed the connection');
    else if (end.reason === 'vnc-failed') this.close(CLOSE.VNC_CLOSED, `VNC server: ${end.error}`);
    else if (end.reason === 'browser-gone') this.close(1011, 'browser connection failed');
    else if (end.reason !== 'stopped') this.close(1011, `splice helper ended: ${end.reason}`);
  }

  /** Ends both sides; the first call's reason is the one reported. */
  close(code: number, reason: string): void {
    if (this.done) return;
    this.done = true;
    this.endTurn();
    const helper = this.helper;
    if (helper === undefined) this.closeBoth(code, reason, true);
    else void helper.stop().then((end) => this.closeBoth(code, reason, end.atFrameBoundary));
  }

  /** `clean`: the browser's stream ends with a whole frame, so a close frame may follow. */
  private closeBoth(code: number, reason: string, clean: boolean): void {
    this.tcp?.destroy();
    if (!clean) this.ws.terminate();
    else if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) {
      // A close reason is at most 123 bytes (RFC 6455).
      this.closeWs(code, Buffer.from(reason).subarray(0, 120).toString());
    }
    // The browser may never answer the close: do not keep its socket.
    setTimeout(() => this.ws.terminate(), 2000).unref();
    this.finish({ reason });
  }
}
