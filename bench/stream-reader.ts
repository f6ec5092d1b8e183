// Reads one byte stream as cheaply as Node allows, so that a throughput
// benchmark measures the server in the middle and not its client: reads go
// into one reused buffer (net's `onread`), and WebSocket frames are parsed in
// place, never copied or joined into messages. Plain TCP and WebSocket
// streams go through the same code; only the framing differs.
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';

const READ_BUFFER = 1024 * 1024;

export interface StreamTarget {
  host: string;
  port: number;
  /** A WebSocket path (subprotocol binary); plain TCP when absent. */
  wsPath?: string;
}

export interface Drained {
  /** From the stream being open (TCP connected, or the WebSocket upgrade answered) to its last byte. */
  ms: number;
  /** CPU time of this process over the same span. */
  userMs: number;
  systemMs: number;
}

/** Connects to `target` and counts `total` payload bytes. */
export function drainStream(target: StreamTarget, total: number): Promise<Drained> {
  return new Promise((resolve, reject) => {
    let upgraded = target.wsPath === undefined;
    let head = '';
    let t0 = 0;
    let cpu0 = process.cpuUsage();
    const opened = () => {
      t0 = performance.now();
      cpu0 = process.cpuUsage();
    };
    let counted = 0;
    // WebSocket frame parser state (server frames are unmasked).
    const header = Buffer.alloc(14);
    let headerLen = 0;
    let headerNeed = 2;
    let payloadLeft = 0;
    let dataFrame = false;
    let finished = false;

    const finish = (err?: Error) => {
      if (finished) return;
      finished = true;
      sock.destroy();
      if (err) reject(err);
      else {
        const ms = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        resolve({ ms, userMs: cpu.user / 1000, systemMs: cpu.system / 1000 });
      }
    };
    const count = (n: number) => {
      counted += n;
      if (counted >= total) finish();
    };
    const frames = (buf: Buffer, from: number, to: number) => {
      let i = from;
      while (i < to && !finished) {
        if (payloadLeft > 0) {
          const take = Math.min(payloadLeft, to - i);
          payloadLeft -= take;
          i += take;
          if (dataFrame) count(take);
          continue;
        }
        header[headerLen++] = buf[i++]!;
        if (headerLen === 2) {
          const len7 = header[1]! & 0x7f;
          headerNeed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (header[1]! & 0x80 ? 4 : 0);
        }
        if (headerLen < 2 || headerLen < headerNeed) continue;
        const opcode = header[0]! & 0x0f;
        const len7 = header[1]! & 0x7f;
        payloadLeft =
          len7 === 126
            ? header.readUInt16BE(2)
            : len7 === 127
              ? Number(header.readBigUInt64BE(2))
              : len7;
        headerLen = 0;
        dataFrame = opcode === 0 || opcode === 2;
        if (opcode === 8) finish(new Error(`closed by the server after ${counted} bytes`));
      }
    };

    const sock = connect({
      host: target.host,
      port: target.port,
      onread: {
        buffer: Buffer.allocUnsafe(READ_BUFFER),
        callback: (n: number, buf: Buffer) => {
          if (upgraded) {
            if (target.wsPath === undefined) count(n);
            else frames(buf, 0, n);
            return true;
          }
          head += buf.toString('latin1', 0, n);
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return true;
          if (!/^HTTP\/1\.1 101 /.test(head)) {
            finish(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
            return false;
          }
          upgraded = true;
          opened();
          // Frame bytes that came with the answer's head.
          const rest = Buffer.from(head.slice(end + 4), 'latin1');
          frames(rest, 0, rest.length);
          return true;
        },
      },
    });
    sock.setNoDelay(true);
    sock.on('error', (e) => finish(e));
    sock.on('close', () => finish(new Error(`closed after ${counted} of ${total} bytes`)));
    sock.on('connect', () => {
      if (target.wsPath === undefined) {
        opened();
        return;
      }
      sock.write(
        `GET ${target.wsPath} HTTP/1.1\r\n` +
          `Host: ${target.host}:${target.port}\r\n` +
          'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n` +
          'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n',
      );
    });
  });
}
