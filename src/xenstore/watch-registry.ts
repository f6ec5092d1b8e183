// Watches outlive the connection: the registry is owned by the client, not by
// a socket, so a reconnect can register every watch again (as ioredis does for
// its subscriptions) and tell each user that events may have been missed.
import type { WatchItem, XsWatch } from './types.js';

/** Past this many undelivered items a watch's backlog collapses into one resync. */
export const WATCH_QUEUE_MAX = 1024;

type Waiter = {
  resolve(r: IteratorResult<WatchItem>): void;
  reject(err: Error): void;
};

export class WatchHandle implements XsWatch, AsyncIterator<WatchItem> {
  /** True once xenstored has accepted the watch on the current connection. */
  registered = false;
  private queue: WatchItem[] = [];
  private waiters: Waiter[] = [];
  private ended = false;
  private failure: Error | undefined;

  constructor(
    readonly path: string,
    readonly token: string,
    private readonly onClose: (w: WatchHandle) => Promise<void>,
  ) {}

  get closed(): boolean {
    return this.ended;
  }

  /** Items queued and not yet taken; for tests and diagnostics. */
  get backlog(): number {
    return this.queue.length;
  }

  push(item: WatchItem): void {
    if (this.ended) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.resolve({ value: item, done: false });
      return;
    }
    if (this.queue.length >= WATCH_QUEUE_MAX) {
      // A consumer this far behind must re-read anyway; keep memory bounded.
      this.queue = [{ kind: 'resync' }];
      return;
    }
    this.queue.push(item);
  }

  /** Drops queued items and finishes the iterator; `err` makes pending and later next() reject. */
  end(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = err;
    this.queue = [];
    for (const w of this.waiters.splice(0)) {
      if (err) w.reject(err);
      else w.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<WatchItem>> {
    const item = this.queue.shift();
    if (item) return Promise.resolve({ value: item, done: false });
    if (this.ended) {
      return this.failure
        ? Promise.reject(this.failure)
        : Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Leaving a for-await loop unregisters the watch. */
  async return(): Promise<IteratorResult<WatchItem>> {
    await this.close();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchItem> {
    return this;
  }

  close(): Promise<void> {
    return this.onClose(this);
  }
}

export class WatchRegistry {
  private readonly byToken = new Map<string, WatchHandle>();

  has(token: string): boolean {
    return this.byToken.has(token);
  }

  add(watch: WatchHandle): void {
    this.byToken.set(watch.token, watch);
  }

  /** Removes the watch, purging its queued events, and ends its iterator. */
  remove(watch: WatchHandle, err?: Error): boolean {
    const known = this.byToken.get(watch.token) === watch;
    if (known) this.byToken.delete(watch.token);
    watch.end(err);
    return known;
  }

  /** Routes an XS_WATCH_EVENT by token; events for unknown tokens (already unwatched) are dropped. */
  deliver(path: string, token: string): boolean {
    const watch = this.byToken.get(token);
    if (!watch) return false;
    watch.push({ kind: 'event', path, token });
    return true;
  }

  all(): WatchHandle[] {
    return [...this.byToken.values()];
  }

  clear(err?: Error): void {
    for (const w of this.all()) this.remove(w, err);
  }

  get size(): number {
    return this.byToken.size;
  }
}
