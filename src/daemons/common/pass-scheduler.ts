// How both monitors turn a stream of "something changed" into reconcile
// passes: changes are coalesced, one pass runs at a time (a full one, or one
// over the keys marked since the last), and a failed pass is retried as a full
// pass after a delay that doubles up to a bound. A full pass is pending from
// the start.

export interface PassSchedulerOptions {
  pass(full: boolean, dirty: string[]): Promise<void>;
  /** A pass failed; the next one, a full pass, runs in `retryMs`. */
  onError(err: unknown, retryMs: number): void;
  retryMinMs: number;
  retryMaxMs: number;
}

export class PassScheduler {
  private readonly dirty = new Set<string>();
  private fullPending = true;
  private draining: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay: number;
  private stopped = false;

  constructor(private readonly o: PassSchedulerOptions) {
    this.retryDelay = o.retryMinMs;
  }

  markFull(): void {
    this.fullPending = true;
    this.schedule();
  }

  markDirty(key: string): void {
    this.dirty.add(key);
    this.schedule();
  }

  /** Resolves once no pass is running or pending. */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /** No new pass starts; resolves when the running one has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.draining;
  }

  private schedule(): void {
    if (this.stopped || this.draining || this.retryTimer) return;
    if (!this.fullPending && this.dirty.size === 0) return;
    this.draining = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.drain())
      .finally(() => {
        this.draining = undefined;
        // Work that arrived while the last pass was finishing.
        this.schedule();
      });
  }

  private async drain(): Promise<void> {
    while (!this.stopped && (this.fullPending || this.dirty.size > 0)) {
      const full = this.fullPending;
      const dirty = [...this.dirty];
      this.fullPending = false;
      this.dirty.clear();
      try {
        await this.o.pass(full, dirty);
        this.retryDelay = this.o.retryMinMs;
      } catch (err) {
        this.fullPending = true;
        this.o.onError(err, this.retryDelay);
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.schedule();
        }, this.retryDelay);
        this.retryDelay = Math.min(this.o.retryMaxMs, this.retryDelay * 2);
        return;
      }
    }
  }
}
