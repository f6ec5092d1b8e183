// A scripted xs_wire peer on a Unix socket, for what only a fake can do:
// out-of-order replies, bogus reply types, vanishing and coming back.
import { mkdtempSync, rmSync } from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FrameDecoder,
  type XsFrame,
  XsType,
  encodeFrame,
  joinNul,
  splitNul,
} from '../../../src/xenstore/wire.js';

export interface FakeConn {
  readonly socket: Socket;
  send(frame: XsFrame): void;
  /** Answers `req` with its own type (or `type`) and the given payload. */
  reply(req: XsFrame, payload: string | Buffer, type?: number): void;
  error(req: XsFrame, errno: string): void;
  event(path: string, token: string): void;
}

export type FakeHandler = (frame: XsFrame, conn: FakeConn) => void;

export class FakeXenstored {
  readonly received: XsFrame[] = [];
  connections = 0;
  private server: Server | undefined;
  private sockets = new Set<Socket>();
  readonly conns: FakeConn[] = [];

  private constructor(
    readonly path: string,
    public handler: FakeHandler,
  ) {}

  static async start(path: string, handler: FakeHandler): Promise<FakeXenstored> {
    const fake = new FakeXenstored(path, handler);
    await fake.listen();
    return fake;
  }

  async listen(): Promise<void> {
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => resolve());
    });
  }

  /** Stops listening and drops every client, like a dying xenstored. */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Frames of one type seen so far. */
  seen(type: number): XsFrame[] {
    return this.received.filter((f) => f.type === type);
  }

  private accept(socket: Socket): void {
    this.connections++;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    const decoder = new FrameDecoder();
    const conn: FakeConn = {
      socket,
      send: (frame) => {
        if (!socket.destroyed) socket.write(encodeFrame(frame));
      },
      reply: (req, payload, type) =>
        conn.send({
          type: type ?? req.type,
          reqId: req.reqId,
          txId: req.txId,
          payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
        }),
      error: (req, errno) => conn.reply(req, `${errno}\0`, XsType.ERROR),
      event: (path, token) =>
        conn.send({ type: XsType.WATCH_EVENT, reqId: 0, txId: 0, payload: joinNul([path, token]) }),
    };
    this.conns.push(conn);
    socket.on('data', (chunk) => {
      for (const frame of decoder.push(chunk)) {
        this.received.push(frame);
        this.handler(frame, conn);
      }
    });
  }
}

/** A temp dir for sockets, removed by the returned cleanup. */
export function tempDir(prefix = 'xs-client-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A tiny in-memory store speaking just enough of the protocol for the client's
 * own paths: no permissions, no quotas. Watches fire on writes to the watched
 * path or below, and once at registration, as xenstored does.
 */
export function memoryStore(): FakeHandler & { data: Map<string, string> } {
  const data = new Map<string, string>();
  const watches: Array<{ path: string; token: string; conn: FakeConn }> = [];
  const tracked = new WeakSet<FakeConn>();
  let nextTx = 1;
  const fire = (path: string) => {
    for (const w of watches) {
      if (path === w.path || path.startsWith(`${w.path}/`)) w.conn.event(path, w.token);
    }
  };
  const handler = (frame: XsFrame, conn: FakeConn) => {
    const args = splitNul(frame.payload);
    const path = args[0] ?? '';
    switch (frame.type) {
      case XsType.READ: {
        const v = data.get(path);
        if (v === undefined) conn.error(frame, 'ENOENT');
        else conn.reply(frame, v);
        return;
      }
      case XsType.WRITE: {
        const nul = frame.payload.indexOf(0);
        data.set(path, frame.payload.subarray(nul + 1).toString());
        conn.reply(frame, 'OK\0');
        fire(path);
        return;
      }
      case XsType.MKDIR:
        if (!data.has(path)) data.set(path, '');
        conn.reply(frame, 'OK\0');
        return;
      case XsType.RM:
        for (const k of [...data.keys()])
          if (k === path || k.startsWith(`${path}/`)) data.delete(k);
        conn.reply(frame, 'OK\0');
        fire(path);
        return;
      case XsType.DIRECTORY: {
        const kids = new Set<string>();
        for (const k of data.keys()) {
          if (k.startsWith(`${path}/`)) kids.add(k.slice(path.length + 1).split('/')[0]!);
        }
        conn.reply(frame, joinNul([...kids]));
        return;
      }
      case XsType.WATCH:
        watches.push({ path, token: args[1]!, conn });
        if (!tracked.has(conn)) {
          tracked.add(conn);
          // Watches belong to a connection; xenstored forgets them when it goes.
          conn.socket.once('close', () => {
            for (let i = watches.length - 1; i >= 0; i--) {
              if (watches[i]!.conn === conn) watches.splice(i, 1);
            }
          });
        }
        conn.reply(frame, 'OK\0');
        conn.event(path, args[1]!);
        return;
      case XsType.UNWATCH: {
        const i = watches.findIndex(
          (w) => w.path === path && w.token === args[1] && w.conn === conn,
        );
        if (i < 0) conn.error(frame, 'ENOENT');
        else {
          watches.splice(i, 1);
          conn.reply(frame, 'OK\0');
        }
        return;
      }
      case XsType.TRANSACTION_START:
        conn.reply(frame, `${nextTx++}\0`);
        return;
      case XsType.TRANSACTION_END:
        conn.reply(frame, 'OK\0');
        return;
      default:
        conn.error(frame, 'ENOSYS');
    }
  };
  return Object.assign(handler, { data });
}
