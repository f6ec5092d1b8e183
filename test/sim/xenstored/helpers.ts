import { type ChildProcess, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { XenstoreServer, type XenstoreServerOptions } from '../../../src/sim/xenstored/server.js';
import { FrameDecoder, type XsFrame, XsType, encodeFrame } from '../../../src/xenstore/wire.js';

export interface TestServer {
  server: XenstoreServer;
  dir: string;
  socketPath: string;
  stop(): Promise<void>;
}

/** A server in a fresh temp dir; stop() closes it and removes the dir. */
export async function startTestServer(
  extra: Omit<XenstoreServerOptions, 'socketPath'> = {},
): Promise<TestServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'xsd-test-'));
  const socketPath = path.join(dir, 'socket');
  const server = await XenstoreServer.start({
    socketPath,
    domainSocketDir: path.join(dir, 'domains'),
    ...extra,
  });
  return {
    server,
    dir,
    socketPath,
    stop: async () => {
      try {
        await server.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a Debian xenstore-* tool (or anything) against the given socket. */
export function runTool(socketPath: string, file: string, args: string[]): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { env: { ...process.env, XENSTORED_PATH: socketPath }, timeout: 10_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export function isAlive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** A minimal raw xs_wire client: one request at a time plus a queue of watch events. */
export class RawClient {
  private readonly decoder = new FrameDecoder();
  private readonly replies: XsFrame[] = [];
  readonly events: Array<{ path: string; token: string }> = [];
  /** Every reply frame received so far, read or not. */
  repliesReceived = 0;
  private waiters: Array<() => void> = [];
  private nextReqId = 1;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      for (const f of this.decoder.push(d)) {
        if (f.type === XsType.WATCH_EVENT) {
          const [p, t] = f.payload.toString('latin1').split('\0');
          this.events.push({ path: p ?? '', token: t ?? '' });
        } else {
          this.repliesReceived++;
          this.replies.push(f);
        }
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static connect(socketPath: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(socketPath);
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async waitFor<T>(check: () => T | undefined, what: string, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Sends one request and waits for its reply frame. */
  async request(type: number, payload: Buffer | string, txId = 0): Promise<XsFrame> {
    const reqId = this.nextReqId++;
    const body = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
    this.socket.write(encodeFrame({ type, reqId, txId, payload: body }));
    return this.waitFor(() => {
      const i = this.replies.findIndex((r) => r.reqId === reqId);
      return i < 0 ? undefined : this.replies.splice(i, 1)[0];
    }, `reply to request ${reqId}`);
  }

  /** Like request(), but returns the payload or throws Error(errno) on XS_ERROR. */
  async call(type: number, payload: Buffer | string, txId = 0): Promise<Buffer> {
    const f = await this.request(type, payload, txId);
    if (f.type === XsType.ERROR) throw new Error(f.payload.toString('latin1').replace(/\0$/, ''));
    return f.payload;
  }

  /** The errno of a request expected to fail, or 'OK' when it succeeds. */
  async errno(type: number, payload: Buffer | string, txId = 0): Promise<string> {
    const f = await this.request(type, payload, txId);
    return f.type === XsType.ERROR ? f.payload.toString('latin1').replace(/\0$/, '') : 'OK';
  }

  async read(p: string, txId = 0): Promise<string> {
    return (await this.call(XsType.READ, `${p}\0`, txId)).toString('latin1');
  }

  async write(p: string, value: string | Buffer, txId = 0): Promise<void> {
    const v = typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
    await this.call(XsType.WRITE, Buffer.concat([Buffer.from(`${p}\0`, 'latin1'), v]), txId);
  }

  async directory(p: string, txId = 0): Promise<string[]> {
    const s = (await this.call(XsType.DIRECTORY, `${p}\0`, txId)).toString('latin1');
    return s === '' ? [] : s.replace(/\0$/, '').split('\0');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.destroy();
    });
  }
}
