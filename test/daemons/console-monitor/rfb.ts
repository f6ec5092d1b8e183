// A minimal RFB client over the console monitor's WebSocket proxy, for tests
// and benchmarks: the version and "None" security handshake, then the
// ServerInit with its desktop name; FramebufferUpdate requests on demand.
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

/** Bytes from a WebSocket as a stream one can read exact counts from. */
export class ByteReader {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  closed: { code: number; reason: string } | undefined;

  constructor(
    readonly ws: WebSocket,
    early: Buffer[] = [],
  ) {
    this.buf = Buffer.concat(early);
    ws.on('message', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.waiter?.();
    });
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

  get buffered(): number {
    return this.buf.length;
  }

  discard(): void {
    this.buf = Buffer.alloc(0);
  }
}

export interface RfbSession {
  reader: ByteReader;
  desktopName: string;
  width: number;
  height: number;
  bytesPerPixel: number;
}

/** RFB 3.8 handshake with security None; returns the ServerInit facts. */
export async function rfbHandshake(ws: WebSocket, early: Buffer[] = []): Promise<RfbSession> {
  const reader = new ByteReader(ws, early);
  const version = (await reader.read(12)).toString('latin1');
  if (!version.startsWith('RFB 003.')) throw new Error(`not RFB: ${JSON.stringify(version)}`);
  ws.send(Buffer.from('RFB 003.008\n', 'latin1'));
  const n = (await reader.read(1))[0]!;
  const types = [...(await reader.read(n))];
  if (!types.includes(1)) throw new Error(`no None security: ${types}`);
  ws.send(Buffer.from([1]));
  if ((await reader.read(4)).readUInt32BE(0) !== 0) throw new Error('security failed');
  ws.send(Buffer.from([1])); // shared
  const init = await reader.read(24);
  const name = await reader.read(init.readUInt32BE(20));
  return {
    reader,
    desktopName: name.toString('utf8'),
    width: init.readUInt16BE(0),
    height: init.readUInt16BE(2),
    bytesPerPixel: init[4]! / 8,
  };
}

/** FramebufferUpdateRequest for the whole screen. */
export function requestFrame(ws: WebSocket, s: RfbSession, incremental = false): void {
  const m = Buffer.alloc(10);
  m[0] = 3;
  m[1] = incremental ? 1 : 0;
  m.writeUInt16BE(s.width, 6);
  m.writeUInt16BE(s.height, 8);
  ws.send(m);
}

/** Reads one FramebufferUpdate of raw rectangles; returns its payload size. */
export async function readFrame(s: RfbSession, timeoutMs = 10_000): Promise<number> {
  const head = await s.reader.read(4, timeoutMs);
  if (head[0] !== 0) throw new Error(`expected FramebufferUpdate, got message type ${head[0]}`);
  let bytes = 0;
  for (let i = head.readUInt16BE(2); i > 0; i--) {
    const r = await s.reader.read(12, timeoutMs);
    const encoding = r.readInt32BE(8);
    if (encoding < 0) continue; // pseudo-encodings carry no pixels here
    if (encoding !== 0) throw new Error(`unexpected encoding ${encoding}`);
    const size = r.readUInt16BE(4) * r.readUInt16BE(6) * s.bytesPerPixel;
    await s.reader.read(size, timeoutMs);
    bytes += size;
  }
  return bytes;
}
