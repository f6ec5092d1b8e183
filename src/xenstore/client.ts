// XenStore client: many requests in flight matched by req_id, watch events
// routed by type before req_id, a registry of watches that survives
// reconnects, and transactions with a bounded EAGAIN retry helper.
import { EventEmitter } from 'node:events';
import {
  XsArgumentError,
  XsConnectionError,
  XsProtocolError,
  XsRemoteError,
  XsTimeoutError,
  XsTransactionStateError,
} from './errors.js';
import { XsOpsBase } from './ops-base.js';
import {
  type XsRequest,
  build,
  parseBool,
  parseTxId,
  parseWatchEvent,
  replyString,
} from './requests.js';
import {
  DEFAULT_XENBUS_PATH,
  type XsTransport,
  type XsTransportKind,
  defaultSocketPath,
  openSocketTransport,
  openXenbusTransport,
} from './transport.js';
import type { TxId, XsStatus, XsTransaction, XsWatch } from './types.js';
import { WatchHandle, WatchRegistry } from './watch-registry.js';
import {
  FrameDecoder,
  FrameTooLargeError,
  type XsFrame,
  XsType,
  encodeFrame,
  xsTypeName,
} from './wire.js';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

const silentLogger: Logger = { debug() {}, warn() {} };

export interface XsReconnectOptions {
  /** Upper bound of the backoff between two connection attempts (default 2000). */
  maxDelayMs?: number;
  /** First backoff step (default 25). */
  initialDelayMs?: number;
}

export interface XsClientOptions {
  /** Socket path (socket, auto) or device path (xenbus). */
  path?: string;
  /** 'auto' tries the xenstored socket, then /dev/xen/xenbus, like libxenstore. */
  transport?: 'socket' | 'xenbus' | 'auto';
  /** Device 'auto' falls back to (default /dev/xen/xenbus). */
  xenbusPath?: string;
  /** Reconnect when xenstored goes away (default true). */
  reconnect?: boolean | XsReconnectOptions;
  /** Deadline of one request, waiting for a connection included; 0 = none (default 30000). */
  requestTimeoutMs?: number;
  logger?: Logger;
}

export interface XsTransactionOptions {
  /** How many times the whole transaction may run (default 8). */
  attempts?: number;
}

type Job = {
  req: XsRequest;
  txId: number;
  /** Set for transaction requests: the connection generation the transaction belongs to. */
  generation: number | undefined;
  done(err: Error | undefined, payload?: Buffer, generation?: number): void;
  timer?: NodeJS.Timeout;
  reqId?: number;
  conn?: Connection;
  settled?: boolean;
};

type Connection = {
  transport: XsTransport;
  decoder: FrameDecoder;
  pending: Map<number, Job>;
  /** req_ids whose waiter timed out: their late replies are expected and dropped. */
  abandoned: Set<number>;
};

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_ATTEMPTS = 8;

function settle(job: Job, err: Error | undefined, payload?: Buffer, generation?: number): void {
  if (job.settled) return;
  job.settled = true;
  if (job.timer) clearTimeout(job.timer);
  job.done(err, payload, generation);
}

export class XsClient extends XsOpsBase {
  private readonly events = new EventEmitter();
  private readonly registry = new WatchRegistry();
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly reconnect: Required<XsReconnectOptions> | undefined;
  private readonly tokenPrefix =
    `zc${process.pid.toString(36)}.${Math.random().toString(36).slice(2, 7)}.`;
  private tokenSeq = 0;
  private currentStatus: XsStatus = 'connecting';
  private conn: Connection | undefined;
  private kind: XsTransportKind | undefined;
  /** Bumped on every disconnect (and watch reset): transactions of older generations are gone. */
  private generation = 0;
  private nextReqId = 1;
  private waiting: Job[] = [];
  private reconnectAttempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closing = false;

  private constructor(private readonly opts: XsClientOptions) {
    super();
    this.logger = opts.logger ?? silentLogger;
    this.timeoutMs = opts.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    const rc = opts.reconnect ?? true;
    this.reconnect =
      rc === false
        ? undefined
        : {
            maxDelayMs: (rc === true ? undefined : rc.maxDelayMs) ?? 2000,
            initialDelayMs: (rc === true ? undefined : rc.initialDelayMs) ?? 25,
          };
  }

  /** Connects once; a failure to connect at first is reported, not retried. */
  static async connect(opts: XsClientOptions = {}): Promise<XsClient> {
    const client = new XsClient(opts);
    const transport = await client.openTransport();
    client.attach(transport);
    client.setStatus('ready');
    return client;
  }

  /** A client over a transport opened by the caller; it cannot reconnect by itself. */
  static fromTransport(transport: XsTransport, opts: XsClientOptions = {}): XsClient {
    const client = new XsClient({ ...opts, reconnect: false });
    client.attach(transport);
    client.setStatus('ready');
    return client;
  }

  get status(): XsStatus {
    return this.currentStatus;
  }

  /** Which transport the current (or last) connection uses. */
  get transportKind(): XsTransportKind | undefined {
    return this.kind;
  }

  on(event: 'status', listener: (status: XsStatus) => void): this {
    this.events.on(event, listener);
    return this;
  }

  off(event: 'status', listener: (status: XsStatus) => void): this {
    this.events.off(event, listener);
    return this;
  }

  /** Resolves when the client is (again) ready; rejects once it is closed. */
  whenReady(): Promise<void> {
    if (this.currentStatus === 'ready') return Promise.resolve();
    if (this.currentStatus === 'closed') {
      return Promise.reject(new XsConnectionError('the xenstore client is closed'));
    }
    return new Promise((resolve, reject) => {
      const onStatus = (s: XsStatus) => {
        if (s === 'ready') resolve();
        else if (s === 'closed') reject(new XsConnectionError('the xenstore client is closed'));
        else return;
        this.off('status', onStatus);
      };
      this.on('status', onStatus);
    });
  }

  // === Watches =============================================================

  /**
   * Registers a watch. xenstored fires it once right after registration, so
   * the first item is usually an event for `path` itself. After a reconnect
   * the watch yields `{ kind: 'resync' }`: events may have been missed.
   */
  async watch(path: string, token?: string): Promise<XsWatch & WatchHandle> {
    const tok = token ?? `${this.tokenPrefix}${++this.tokenSeq}`;
    const req = build.watch(path, tok);
    if (this.registry.has(tok)) {
      throw new XsArgumentError(`xenstore watch ${path}: token '${tok}' is already in use`);
    }
    const handle = new WatchHandle(path, tok, (w) => this.unwatch(w));
    // In the registry before the request goes out: the initial event follows the reply closely.
    this.registry.add(handle);
    try {
      await this.call(req, 0, undefined, () => {
        handle.registered = true;
      });
    } catch (err) {
      this.registry.remove(handle);
      throw err;
    }
    return handle;
  }

  private async unwatch(w: WatchHandle): Promise<void> {
    const known = this.registry.remove(w);
    if (!known || !w.registered || !this.conn || this.closing) return;
    try {
      await this.call(build.unwatch(w.path, w.token), 0, undefined);
    } catch (err) {
      // Gone already (reset, reconnect race): the watch is off either way.
      if (err instanceof XsRemoteError && err.errno === 'ENOENT') return;
      if (err instanceof XsConnectionError) return;
      throw err;
    }
  }

  /** XS_RESET_WATCHES: xenstored drops all our watches and transactions; our iterators end. */
  async resetWatches(): Promise<void> {
    await this.call(build.resetWatches(), 0, undefined, () => {
      // With the reply, before any later frame: events after it belong to no watch of ours.
      this.registry.clear();
      this.generation++;
    });
  }

  // === Transactions ========================================================

  async startTransaction(): Promise<XsTransactionHandle> {
    let gen = 0;
    const payload = await this.call(build.transactionStart(), 0, undefined, (_p, g) => {
      gen = g;
    });
    return new XsTransactionHandle(this, parseTxId(payload) as TxId, gen);
  }

  /**
   * Runs `fn` in a transaction and commits; when xenstored answers EAGAIN (a
   * conflicting write), runs it again after a jittered backoff, at most
   * `attempts` times in all. `fn` must therefore be safe to repeat.
   */
  async transaction<T>(
    fn: (tx: XsTransactionHandle) => Promise<T>,
    opts: XsTransactionOptions = {},
  ): Promise<T> {
    const attempts = opts.attempts ?? DEFAULT_ATTEMPTS;
    if (!Number.isInteger(attempts) || attempts < 1) {
      throw new XsArgumentError(
        `xenstore transaction: attempts must be a positive integer, got ${attempts}`,
      );
    }
    for (let attempt = 1; ; attempt++) {
      const tx = await this.startTransaction();
      let result: T;
      try {
        result = await fn(tx);
      } catch (err) {
        await tx.abort().catch(() => {});
        if (isEagain(err) && attempt < attempts) {
          await backoff(attempt);
          continue;
        }
        throw err;
      }
      try {
        await tx.commit();
        return result;
      } catch (err) {
        if (isEagain(err) && attempt < attempts) {
          this.logger.debug('xenstore transaction conflict, retrying', { attempt, txId: tx.id });
          await backoff(attempt);
          continue;
        }
        throw err;
      }
    }
  }

  // === Domains =============================================================

  async getDomainPath(domid: number): Promise<string> {
    return replyString(await this.run(() => build.getDomainPath(domid)));
  }

  async isDomainIntroduced(domid: number): Promise<boolean> {
    return parseBool(await this.run(() => build.isDomainIntroduced(domid)), 'is-domain-introduced');
  }

  async introduce(domid: number, mfn: number | bigint, port: number): Promise<void> {
    await this.run(() => build.introduce(domid, mfn, port));
  }

  async release(domid: number): Promise<void> {
    await this.run(() => build.release(domid));
  }

  // === Lifecycle ===========================================================

  /** Closes the connection; outstanding requests fail with XsConnectionError, watches end. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const err = new XsConnectionError('the xenstore client was closed');
    const conn = this.conn;
    this.conn = undefined;
    conn?.transport.close();
    if (conn) for (const job of conn.pending.values()) settle(job, err);
    for (const job of this.waiting.splice(0)) settle(job, err);
    this.registry.clear();
    this.setStatus('closed');
  }

  // === Internals ===========================================================

  protected exec(req: XsRequest): Promise<Buffer> {
    return this.call(req, 0, undefined);
  }

  /** @internal used by XsTransactionHandle. */
  txExec(req: XsRequest, txId: number, generation: number): Promise<Buffer> {
    return this.call(req, txId, generation);
  }

  /** @internal */
  get currentGeneration(): number {
    return this.generation;
  }

  /** `onReply` runs synchronously with the reply frame, before any later frame is handled. */
  private call(
    req: XsRequest,
    txId: number,
    generation: number | undefined,
    onReply?: (payload: Buffer, generation: number) => void,
  ): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.submit({
        req,
        txId,
        generation,
        done: (err, payload, gen) => {
          if (err) {
            reject(err);
            return;
          }
          onReply?.(payload!, gen!);
          resolve(payload!);
        },
      });
    });
  }

  private submit(job: Job): void {
    if (this.closing) {
      settle(job, new XsConnectionError(`xenstore ${job.req.op}: the client is closed`));
      return;
    }
    if (job.generation !== undefined && job.generation !== this.generation) {
      settle(
        job,
        new XsConnectionError(
          `xenstore ${job.req.op}: transaction ${job.txId} is gone (the connection to xenstored dropped, or watches were reset)`,
        ),
      );
      return;
    }
    if (this.timeoutMs > 0) {
      job.timer = setTimeout(() => this.expire(job), this.timeoutMs);
      job.timer.unref?.();
    }
    if (this.conn && this.currentStatus === 'ready') this.dispatch(this.conn, job);
    else this.waiting.push(job);
  }

  private expire(job: Job): void {
    const i = this.waiting.indexOf(job);
    if (i >= 0) this.waiting.splice(i, 1);
    if (job.conn && job.reqId !== undefined && job.conn.pending.get(job.reqId) === job) {
      job.conn.pending.delete(job.reqId);
      job.conn.abandoned.add(job.reqId);
    }
    const err =
      i >= 0 && this.currentStatus !== 'ready'
        ? new XsConnectionError(
            `xenstore ${job.req.op}: not connected to xenstored after ${this.timeoutMs} ms`,
          )
        : new XsTimeoutError(job.req.op, this.timeoutMs);
    settle(job, err);
  }

  private dispatch(conn: Connection, job: Job): void {
    let id = this.nextReqId;
    while (conn.pending.has(id) || conn.abandoned.has(id) || id === 0) id = (id + 1) >>> 0;
    this.nextReqId = (id + 1) >>> 0;
    job.reqId = id;
    job.conn = conn;
    conn.pending.set(id, job);
    conn.transport.send(
      encodeFrame({ type: job.req.type, reqId: id, txId: job.txId, payload: job.req.payload }),
    );
  }

  private async openTransport(): Promise<XsTransport> {
    const mode = this.kind ?? this.opts.transport ?? 'auto';
    if (mode === 'socket') return openSocketTransport(this.opts.path ?? defaultSocketPath());
    if (mode === 'xenbus') {
      return openXenbusTransport(this.opts.path ?? this.opts.xenbusPath ?? DEFAULT_XENBUS_PATH);
    }
    try {
      return await openSocketTransport(this.opts.path ?? defaultSocketPath());
    } catch (sockErr) {
      try {
        return await openXenbusTransport(this.opts.xenbusPath ?? DEFAULT_XENBUS_PATH);
      } catch (busErr) {
        throw new XsConnectionError(
          `cannot reach xenstored: ${(sockErr as Error).message}; ${(busErr as Error).message}`,
          { cause: sockErr },
        );
      }
    }
  }

  private attach(transport: XsTransport): void {
    const conn: Connection = {
      transport,
      decoder: new FrameDecoder(),
      pending: new Map(),
      abandoned: new Set(),
    };
    this.conn = conn;
    this.kind = transport.kind;
    transport.start({
      data: (chunk) => this.onData(conn, chunk),
      closed: (err) =>
        this.dropConnection(
          conn,
          new XsConnectionError(
            `xenstored closed the connection (${transport.kind} ${transport.path})${err ? `: ${err.message}` : ''}`,
            err ? { cause: err } : undefined,
          ),
        ),
    });
    this.logger.debug('xenstore connected', { transport: transport.kind, path: transport.path });
  }

  private onData(conn: Connection, chunk: Buffer): void {
    let frames: XsFrame[];
    try {
      frames = conn.decoder.push(chunk);
    } catch (err) {
      const msg = err instanceof FrameTooLargeError ? err.message : String(err);
      this.dropConnection(conn, new XsProtocolError(msg));
      return;
    }
    for (const frame of frames) {
      if (this.conn !== conn) return;
      this.onFrame(conn, frame);
    }
  }

  private onFrame(conn: Connection, frame: XsFrame): void {
    // Watch events carry req_id 0 and may interleave with anything: route by type first.
    if (frame.type === XsType.WATCH_EVENT) {
      let ev: { path: string; token: string };
      try {
        ev = parseWatchEvent(frame.payload);
      } catch (err) {
        this.dropConnection(conn, err as XsProtocolError);
        return;
      }
      if (!this.registry.deliver(ev.path, ev.token)) {
        this.logger.debug('xenstore watch event for an unknown token dropped', ev);
      }
      return;
    }
    const job = conn.pending.get(frame.reqId);
    if (!job) {
      if (conn.abandoned.delete(frame.reqId)) return;
      this.dropConnection(
        conn,
        new XsProtocolError(
          `xenstore reply ${typeLabel(frame.type)} with req_id ${frame.reqId} matches no request`,
        ),
      );
      return;
    }
    if (frame.type === XsType.ERROR) {
      conn.pending.delete(frame.reqId);
      settle(job, new XsRemoteError(replyString(frame.payload), job.req.op, job.req.path));
      return;
    }
    if (frame.type !== job.req.type) {
      this.dropConnection(
        conn,
        new XsProtocolError(
          `xenstore ${job.req.op}: reply type ${typeLabel(frame.type)} is neither ${typeLabel(job.req.type)} nor ERROR`,
        ),
      );
      return;
    }
    conn.pending.delete(frame.reqId);
    // Not conn's own: a watch reset also retires transactions while the socket stays.
    settle(job, undefined, frame.payload, this.generation);
  }

  /** Framing in doubt or peer gone: this connection is finished; every waiter on it learns why. */
  private dropConnection(conn: Connection, err: Error): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    conn.transport.close();
    this.generation++;
    const jobs = [...conn.pending.values()];
    conn.pending.clear();
    for (const job of jobs) settle(job, err);
    // Requests queued for a transaction are now bound to a dead generation.
    for (const job of this.waiting.filter((j) => j.generation !== undefined)) {
      this.waiting.splice(this.waiting.indexOf(job), 1);
      settle(
        job,
        new XsConnectionError(`xenstore ${job.req.op}: transaction ${job.txId} was lost`),
      );
    }
    if (this.closing) return;
    if (!this.reconnect) {
      this.logger.warn('xenstore connection lost', { error: err.message });
      this.shutdown(err);
      return;
    }
    this.logger.warn('xenstore connection lost, reconnecting', { error: err.message });
    this.setStatus('reconnecting');
    this.scheduleReconnect();
  }

  private shutdown(err: Error): void {
    this.closing = true;
    for (const job of this.waiting.splice(0)) settle(job, err);
    this.registry.clear(err);
    this.setStatus('closed');
  }

  private scheduleReconnect(): void {
    const rc = this.reconnect!;
    const step = Math.min(rc.maxDelayMs, rc.initialDelayMs * 2 ** this.reconnectAttempt);
    this.reconnectAttempt++;
    const delay = step / 2 + Math.random() * (step / 2);
    this.reconnectTimer = setTimeout(() => void this.tryReconnect(), delay);
  }

  private async tryReconnect(): Promise<void> {
    this.reconnectTimer = undefined;
    let transport: XsTransport;
    try {
      transport = await this.openTransport();
    } catch (err) {
      if (this.closing) return;
      this.logger.debug('xenstore reconnect failed', { error: (err as Error).message });
      this.scheduleReconnect();
      return;
    }
    if (this.closing) {
      transport.close();
      return;
    }
    this.reconnectAttempt = 0;
    this.attach(transport);
    const conn = this.conn!;
    for (const w of this.registry.all()) {
      if (!w.registered) continue; // its own WATCH request is still queued
      const job: Job = {
        req: build.watch(w.path, w.token),
        txId: 0,
        generation: undefined,
        done: (err) => {
          if (err) {
            this.logger.warn('xenstore watch could not be registered again', {
              path: w.path,
              error: err.message,
            });
            if (!(err instanceof XsConnectionError)) this.registry.remove(w, err);
            return;
          }
          // Synchronously with the reply, so the resync comes before the initial event.
          w.push({ kind: 'resync' });
        },
      };
      if (this.timeoutMs > 0) {
        job.timer = setTimeout(() => this.expire(job), this.timeoutMs);
        job.timer.unref?.();
      }
      this.dispatch(conn, job);
    }
    this.setStatus('ready');
    for (const job of this.waiting.splice(0)) {
      if (this.conn !== conn) {
        this.waiting.push(job);
        continue;
      }
      this.dispatch(conn, job);
    }
  }

  private setStatus(status: XsStatus): void {
    if (this.currentStatus === status) return;
    this.currentStatus = status;
    this.events.emit('status', status);
  }
}

export class XsTransactionHandle extends XsOpsBase implements XsTransaction {
  private state: 'open' | 'committed' | 'aborted' = 'open';

  constructor(
    private readonly client: XsClient,
    readonly id: TxId,
    private readonly generation: number,
  ) {
    super();
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  protected exec(req: XsRequest): Promise<Buffer> {
    if (this.state !== 'open') {
      return Promise.reject(
        new XsTransactionStateError(
          `xenstore ${req.op}: transaction ${this.id} is already ${this.state}`,
        ),
      );
    }
    return this.client.txExec(req, this.id, this.generation);
  }

  /** Commits; EAGAIN (XsRemoteError) means another writer won and the work must be redone. */
  async commit(): Promise<void> {
    const req = build.transactionEnd(true);
    const done = this.exec(req);
    this.state = 'committed';
    await done;
  }

  /** Abandons the transaction; a no-op once it is finished or lost. */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    if (this.client.currentGeneration !== this.generation) return;
    try {
      await this.client.txExec(build.transactionEnd(false), this.id, this.generation);
    } catch (err) {
      if (err instanceof XsConnectionError || err instanceof XsRemoteError) return;
      throw err;
    }
  }
}

function isEagain(err: unknown): boolean {
  return err instanceof XsRemoteError && err.errno === 'EAGAIN';
}

function backoff(attempt: number): Promise<void> {
  const cap = Math.min(250, 5 * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, Math.random() * cap));
}

function typeLabel(type: number): string {
  return xsTypeName(type) ?? `#${type}`;
}
