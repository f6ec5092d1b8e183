import type { Socket } from 'node:net';
import {
  FrameDecoder,
  FrameTooLargeError,
  type XsFrame,
  encodeFrame,
} from '../../xenstore/wire.js';
import type { TxView } from './tree.js';
import type { Watch } from './watches.js';

export type FrameHandler = (conn: Connection, frame: XsFrame) => void | Promise<void>;

let nextConnectionId = 1;

/**
 * One client socket. Requests are handled strictly in arrival order: a handler
 * that must wait (INTRODUCE opens a socket) holds back the frames behind it.
 */
export class Connection {
  readonly id = nextConnectionId++;
  readonly watches: Watch[] = [];
  readonly transactions = new Map<number, TxView>();
  private nextTxId = 1;
  private readonly decoder = new FrameDecoder();
  private readonly queue: XsFrame[] = [];
  private busy = false;
  private closed = false;

  constructor(
    readonly socket: Socket,
    readonly domid: number,
    readonly privileged: boolean,
    private readonly handler: FrameHandler,
    private readonly onClose: (conn: Connection, reason: string) => void,
  ) {
    socket.on('data', (data: Buffer) => this.receive(data));
    socket.on('error', () => this.close('socket error'));
    socket.on('close', () => this.close('peer closed'));
  }

  get isClosed(): boolean {
    return this.closed;
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
    this.queue.length = 0;
    this.watches.length = 0;
    this.transactions.clear();
    this.socket.destroy();
    this.onClose(this, reason);
  }

  private receive(data: Buffer): void {
    if (this.closed) return;
    try {
      this.queue.push(...this.decoder.push(data));
    } catch (err) {
      // Framing is lost: like xenstored, drop only this client.
      this.close(err instanceof FrameTooLargeError ? err.message : String(err));
      return;
    }
    this.pump();
  }

  private pump(): void {
    while (!this.busy && !this.closed && this.queue.length > 0) {
      const frame = this.queue.shift()!;
      const pending = this.handler(this, frame);
      if (pending) {
        this.busy = true;
        pending.finally(() => {
          this.busy = false;
          this.pump();
        });
      }
    }
  }
}
