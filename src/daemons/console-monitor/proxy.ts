// One browser WebSocket <-> one TCP connection to a VNC server. The bytes are
// RFB and pass unchanged (binary frames). Back-pressure both ways: the VNC
// socket stops being read while the browser has more than HIGH_WATER bytes
// unsent, and the WebSocket stops being read while the VNC socket's write
// buffer is full, so a slow browser or a slow server bounds memory.
import { type Socket, connect } from 'node:net';
import type { WebSocket } from 'ws';

export const HIGH_WATER = 1024 * 1024;
export const LOW_WATER = 256 * 1024;
const CONNECT_TIMEOUT_MS = 5000;

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
  private readonly tcp: Socket;
  private finish!: (end: ProxyEnd) => void;
  private done = false;

  constructor(
    private readonly ws: WebSocket,
    target: { host: string; port: number },
  ) {
    this.ended = new Promise((r) => {
      this.finish = r;
    });
    this.tcp = connect({ host: target.host, port: target.port });
    this.tcp.setNoDelay(true);
    this.tcp.setTimeout(CONNECT_TIMEOUT_MS, () =>
      this.close(CLOSE.VNC_UNREACHABLE, 'VNC server did not answer'),
    );
    let connected = false;
    this.tcp.once('connect', () => {
      connected = true;
      this.tcp.setTimeout(0);
    });
    this.tcp.on('data', (chunk: Buffer) => this.toBrowser(chunk));
    this.tcp.on('drain', () => ws.resume());
    this.tcp.on('error', (err: NodeJS.ErrnoException) =>
      this.close(
        connected ? CLOSE.VNC_CLOSED : CLOSE.VNC_UNREACHABLE,
        `VNC server: ${err.code ?? err.message}`,
      ),
    );
    this.tcp.on('close', () => this.close(CLOSE.VNC_CLOSED, 'VNC server closed the connection'));

    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary || this.done) return;
      this.stats.bytesToVnc += data.length;
      if (!this.tcp.write(data)) ws.pause();
    });
    ws.on('close', () => this.close(1000, 'browser closed the connection'));
    ws.on('error', () => this.close(1011, 'browser connection failed'));
  }

  private toBrowser(chunk: Buffer): void {
    this.stats.bytesToBrowser += chunk.length;
    this.ws.send(chunk, { binary: true }, () => {
      if (this.ws.bufferedAmount <= LOW_WATER && this.tcp.isPaused()) this.tcp.resume();
    });
    if (this.ws.bufferedAmount > HIGH_WATER) this.tcp.pause();
  }

  /** Ends both sides; the first call's reason is the one reported. */
  close(code: number, reason: string): void {
    if (this.done) return;
    this.done = true;
    this.tcp.destroy();
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) {
      // A close reason is at most 123 bytes (RFC 6455).
      this.ws.close(code, Buffer.from(reason).subarray(0, 120).toString());
    }
    // The browser may never answer the close: do not keep its socket.
    setTimeout(() => this.ws.terminate(), 2000).unref();
    this.finish({ reason });
  }
}
