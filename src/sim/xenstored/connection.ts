import type { Socket } from 'node:net';
import {
  FrameDecoder,
  FrameTooLargeError,
  type XsFrame,
  XsType,
  encodeFrame,
} from '../../xenstore/wire.js';
import type { TxView } from './tree.js';
import type { Watch } from './watches.js';

export interface ConnectionLimits {
  /**
   * Requests read but not yet answered; at this many the socket is not read
   * (C xenstored's quota-outstanding: the guest's writes wait in its ring).
   */
  readonly outstandingRequests: number;
  /**
   * Watch events held for a client that does not read them (beyond what the
   * socket itself buffers); further events are dropped and counted.
   */
  readonly queuedWatchEvents: number;
}

let nextConnectionId = 1;

/**
 * One client socket. Its requests are handled strictly in arrival order, one
 * per turn (`Turns`): a handler that must wait (INTRODUCE opens a socket)
 * holds back the frames behind it.
 */
export class Connection {
  readonly id = nextConnectionId++;
  readonly watches: Watch[] = [];
  readonly transactions = new Map<number, TxView>();
  /** Watch events dropped because the client left them unread. */
  droppedWatchEvents = 0;
  private nextTxId = 1;
  private readonly decoder = new FrameDecoder();
  private readonly inbox: XsFrame[] = [];
  private busy = false;
  private closed = false;
  /** Events written since the socket's buffer filled up (reset when it drains). */
  private eventsBeyondBuffer = 0;
  /** No request is handled before this (performance.now()): the domain's write rate limit. */
  private heldUntil = 0;
  private holdTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: Socket,
    readonly domid: number,
    readonly privileged: boolean,
    private readonly limits: ConnectionLimits,
    private readonly turns: Turns,
    private readonly onClose: (conn: Connection, reason: string) => void,
  ) {
    socket.on('data', (data: Buffer) => this.receive(data));
    socket.on('drain', () => {
      this.eventsBeyondBuffer = 0;
      this.flowControl();
      if (this.ready) turns.wake(this);
    });
    socket.on('error', () => this.close('socket error'));
    socket.on('close', () => this.close('peer closed'));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Requests read from the socket and not yet handled. */
  get queuedRequests(): number {
    return this.inbox.length;
  }

  /** Has a request to handle now: not closed, not waiting, its client reading its replies. */
  get ready(): boolean {
    return (
      !this.closed &&
      !this.busy &&
      this.inbox.length > 0 &&
      !this.socket.writableNeedDrain &&
      (this.heldUntil === 0 || performance.now() >= this.heldUntil)
    );
  }

  /** Handles none of this connection's requests before `until` (performance.now()). */
  holdUntil(until: number): void {
    this.heldUntil = until;
    clearTimeout(this.holdTimer);
    this.holdTimer = setTimeout(
      () => {
        this.heldUntil = 0;
        if (this.ready) this.turns.wake(this);
      },
      Math.ceil(until - performance.now()),
    );
  }

  allocTxId(): number {
    while (this.nextTxId === 0 || this.transactions.has(this.nextTxId)) {
      this.nextTxId = (this.nextTxId + 1) >>> 0;
    }
    const id = this.nextTxId;
    this.nextTxId = (this.nextTxId + 1) >>> 0;
    return id;
  }

  send(frame: XsFrame): void {
    if (this.closed) return;
    if (frame.type === XsType.WATCH_EVENT && this.socket.writableNeedDrain) {
      // The client is not reading: its events may not pile up in our memory
      // (XSA-326). Replies are bounded already, since no request of this
      // connection is handled until the socket drains.
      if (this.eventsBeyondBuffer >= this.limits.queuedWatchEvents) {
        this.droppedWatchEvents++;
        return;
      }
      this.eventsBeyondBuffer++;
    }
    // The replies and watch events of one tick leave in one writev, not one
    // syscall each.
    if (this.socket.writableCorked === 0) {
      this.socket.cork();
      process.nextTick(() => this.socket.uncork());
    }
    this.socket.write(encodeFrame(frame));
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.holdTimer);
    this.inbox.length = 0;
    this.watches.length = 0;
    this.transactions.clear();
    this.socket.destroy();
    this.onClose(this, reason);
  }

  /**
   * Handles this connection's next request (the caller checked `ready`).
   * Returns a promise while an asynchronous handler runs.
   */
  serveOne(handler: FrameHandler): Promise<void> | undefined {
    const frame = this.inbox.shift()!;
    this.flowControl();
    const pending = handler(this, frame);
    if (!pending) return undefined;
    this.busy = true;
    return pending.finally(() => {
      this.busy = false;
    });
  }

  private receive(data: Buffer): void {
    if (this.closed) return;
    try {
      for (const frame of this.decoder.push(data)) this.inbox.push(frame);
    } catch (err) {
      // Framing is lost: like xenstored, drop only this client.
      this.close(err instanceof FrameTooLargeError ? err.message : String(err));
      return;
    }
    this.flowControl();
    if (this.ready) this.turns.wake(this);
  }

  /** Stops reading the socket while this connection has enough requests waiting. */
  private flowControl(): void {
    if (this.closed) return;
    if (this.inbox.length >= this.limits.outstandingRequests) this.socket.pause();
    else if (this.socket.isPaused()) this.socket.resume();
  }
}

export type FrameHandler = (conn: Connection, frame: XsFrame) => void | Promise<void>;

/**
 * C xenstored's main loop: connections are served in turn, one request of
 * each ready connection per pass, and the sockets are read between passes.
 * A connection that sends a thousand requests at once gets one answered per
 * pass like everybody else, so it cannot hold back another connection's
 * request for longer than one pass.
 */
export class Turns {
  /** In turn order: a connection served goes to the back. */
  private readonly waiting = new Set<Connection>();
  private passScheduled = false;

  constructor(private readonly handler: FrameHandler) {}

  wake(conn: Connection): void {
    this.waiting.add(conn);
    this.schedule();
  }

  private schedule(): void {
    if (this.passScheduled || this.waiting.size === 0) return;
    this.passScheduled = true;
    // setImmediate, not a microtask: the sockets are read before the next pass.
    setImmediate(() => this.pass());
  }

  private pass(): void {
    this.passScheduled = false;
    const turn = [...this.waiting];
    this.waiting.clear();
    for (const conn of turn) {
      if (!conn.ready) continue;
      const pending = conn.serveOne(this.handler);
      if (pending) {
        void pending.then(() => {
          if (conn.ready) this.wake(conn);
        });
      } else if (conn.ready) {
        this.waiting.add(conn);
      }
    }
    this.schedule();
  }
}
