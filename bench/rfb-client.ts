// A minimal RFB client (over the console monitor's WebSocket proxy or plain TCP), for tests
// and benchmarks: the version and "None" security handshake, then the
// ServerInit with its desktop name; FramebufferUpdate requests on demand.
import { type Socket, connect } from 'node:net';
import { WebSocket } from 'ws';

export interface WsRefusal {
  status: number;
  code: string | undefined;
  body: string;
  elapsedMs: number;
}

/**
 * Opens a WebSocket; resolves with it and every message received so far and
 * later (a first message may arrive in the same tick as the open), or with
 * the HTTP refusal.
 */
export function openWs(
  url: string,
  protocols: string[] = [],
): Promise<{ ws: WebSocket; received: Buffer[] } | { refused: WsRefusal }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols);
    const received: Buffer[] = [];
    ws.on('message', (d: Buffer) => received.push(d));
    ws.once('open', () => resolve({ ws, received }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString('utf8');
      });
      res.on('end', () =>
        resolve({
          refused: {
            status: res.statusCode ?? 0,
            code: res.headers['x-zynclone-refusal'] as string | undefined,
            body,
            elapsedMs: Date.now() - t0,
          },
        }),
      );
    });
    ws.once('error', reject);
  });
}

/** Bytes from a WebSocket or a TCP socket as a stream one can read exact counts from. */
export class ByteReader {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  closed: { code: number; reason: string } | undefined;

  constructor(early: Buffer[] = []) {
    this.buf = Buffer.concat(early);
  }

  static ofWebSocket(ws: WebSocket, early: Buffer[] = []): ByteReader {
    const r = new ByteReader(early);
    ws.on('message', (d: Buffer) => r.push(d));
    ws.on('close', (code, reason) => r.end(code, reason.toString()));
    return r;
  }

  static ofSocket(sock: Socket): ByteReader {
    const r = new ByteReader();
    sock.on('data', (d: Buffer) => r.push(d));
    sock.on('close', () => r.end(0, 'socket closed'));
    return r;
  }

  private push(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    this.waiter?.();
  }

  private end(code: number, reason: string): void {
    this.closed = { code, reason };
    this.waiter?.();
  }

  async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`closed (${this.closed.code} ${this.closed.reason})`);
      if (Date.now() > deadline) throw new Error(`timed out reading ${n} bytes`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 100);
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Consumes exactly `n` bytes without keeping them (throughput runs; the caller bounds the time). */
  async drain(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.buf.length === 0) {
        if (this.closed) throw new Error(`closed with ${left} bytes to go`);
        await new Promise<void>((r) => {
          this.waiter = r;
        });
        continue;
      }
      const take = Math.min(left, this.buf.length);
      this.buf = this.buf.subarray(take);
      left -= take;
    }
  }

  get buffered(): number {
    return this.buf.length;
  }

  discard(): void {
    this.buf = Buffer.alloc(0);
  }
}

export interface RfbSession {
  reader: ByteReader;
  send(data: Buffer): void;
  desktopName: string;
  width: number;
  height: number;
  bytesPerPixel: number;
  /** ServerInit's pixel format: little-endian true colour shifts. */
  shifts: { red: number; green: number; blue: number };
}

/** RFB 3.8 handshake with security None over the proxy; returns the ServerInit facts. */
export function rfbHandshake(
  ws: WebSocket,
  early: Buffer[] = [],
  timeoutMs?: number,
): Promise<RfbSession> {
  return rfbHandshakeOver(ByteReader.ofWebSocket(ws, early), (d) => ws.send(d), timeoutMs);
}

/** The same handshake over any byte stream (a TCP socket: ByteReader.ofSocket). */
export async function rfbHandshakeOver(
  reader: ByteReader,
  send: (d: Buffer) => void,
  timeoutMs?: number,
): Promise<RfbSession> {
  const ws = { send };
  const version = (await reader.read(12, timeoutMs)).toString('latin1');
  if (!version.startsWith('RFB 003.')) throw new Error(`not RFB: ${JSON.stringify(version)}`);
  ws.send(Buffer.from('RFB 003.008\n', 'latin1'));
  const n = (await reader.read(1, timeoutMs))[0]!;
  const types = [...(await reader.read(n, timeoutMs))];
  if (!types.includes(1)) throw new Error(`no None security: ${types}`);
  ws.send(Buffer.from([1]));
  if ((await reader.read(4, timeoutMs)).readUInt32BE(0) !== 0) throw new Error('security failed');
  ws.send(Buffer.from([1])); // shared
  const init = await reader.read(24, timeoutMs);
  const name = await reader.read(init.readUInt32BE(20), timeoutMs);
  return {
    reader,
    send,
    desktopName: name.toString('utf8'),
    width: init.readUInt16BE(0),
    height: init.readUInt16BE(2),
    bytesPerPixel: init[4]! / 8,
    shifts: { red: init[14]!, green: init[15]!, blue: init[16]! },
  };
}

/** FramebufferUpdateRequest for the whole screen. */
export function requestFrame(
  ws: { send(d: Buffer): void },
  s: RfbSession,
  incremental = false,
): void {
  const m = Buffer.alloc(10);
  m[0] = 3;
  m[1] = incremental ? 1 : 0;
  m.writeUInt16BE(s.width, 6);
  m.writeUInt16BE(s.height, 8);
  ws.send(m);
}

/**
 * Reads one FramebufferUpdate of raw rectangles; returns its payload size, and
 * paints the rectangles into `rgb` (3 bytes a pixel) when given.
 */
export async function readFrame(s: RfbSession, timeoutMs = 10_000, rgb?: Buffer): Promise<number> {
  const head = await s.reader.read(4, timeoutMs);
  if (head[0] !== 0) throw new Error(`expected FramebufferUpdate, got message type ${head[0]}`);
  let bytes = 0;
  for (let i = head.readUInt16BE(2); i > 0; i--) {
    const r = await s.reader.read(12, timeoutMs);
    const encoding = r.readInt32BE(8);
    if (encoding < 0) continue; // pseudo-encodings carry no pixels here
    if (encoding !== 0) throw new Error(`unexpected encoding ${encoding}`);
    const [x, y, w, h] = [
      r.readUInt16BE(0),
      r.readUInt16BE(2),
      r.readUInt16BE(4),
      r.readUInt16BE(6),
    ];
    const px = await s.reader.read(w * h * s.bytesPerPixel, timeoutMs);
    bytes += px.length;
    if (rgb && s.bytesPerPixel === 4) {
      for (let row = 0; row < h; row++) {
        for (let col = 0; col < w; col++) {
          const v = px.readUInt32LE((row * w + col) * 4);
          const o = ((y + row) * s.width + x + col) * 3;
          rgb[o] = (v >>> s.shifts.red) & 0xff;
          rgb[o + 1] = (v >>> s.shifts.green) & 0xff;
          rgb[o + 2] = (v >>> s.shifts.blue) & 0xff;
        }
      }
    }
  }
  return bytes;
}

/** The whole screen of the VNC server at host:port, straight over TCP, as RGB. */
export async function grabScreen(
  host: string,
  port: number,
): Promise<{ width: number; height: number; rgb: Buffer; desktopName: string }> {
  const sock = connect(port, host);
  try {
    await new Promise<void>((res, rej) => {
      sock.once('connect', () => res());
      sock.once('error', rej);
    });
    const s = await rfbHandshakeOver(ByteReader.ofSocket(sock), (d) => sock.write(d));
    const rgb = Buffer.alloc(s.width * s.height * 3);
    requestFrame(s, s);
    await readFrame(s, 10_000, rgb);
    return { width: s.width, height: s.height, rgb, desktopName: s.desktopName };
  } finally {
    sock.destroy();
  }
}
