// clone_guest_orchestrator: carries out clone operations that a VM asks for
// by writing its own XenStore area (protocol.ts, docs/xenstore-contract.md).
//
// Everything a guest writes is hostile. Per served domain the orchestrator
// holds one watch on one request node, reads that node alone (never a
// guest-written tree) at most once per `minReadIntervalMs` however many
// events arrive, keeps at most `replyWindow` replies, `queueLength` waiting
// operations and one running, and spends a token per new request. Who asks is
// the domain id of the watched path, resolved through dom0-owned nodes and
// the state store (Policy), never anything the guest wrote.
import type { VmName } from '../../core/paths.js';
import type { XsClient, XsPerm, XsWatch } from '../../xenstore/index.js';
import { isXsErrno } from '../../xenstore/index.js';
import type { DaemonLogger } from '../common/log.js';
import { PassScheduler } from '../common/pass-scheduler.js';
import {
  type GuestOp,
  type GuestRequest,
  PROTOCOL_VERSION,
  ProtocolError,
  REPLY_ROOT,
  REQUEST_NODE,
  type Reply,
  type ReplyState,
  cleanText,
  errorCode,
  isFinal,
  parseRequest,
  replyNodes,
} from './protocol.js';

/** What dom0-owned XenStore says a domain is. */
export interface DomainIdentity {
  readonly domid: number;
  readonly name: string;
  readonly uuid: string;
}

export type Admission =
  | { readonly serve: false; readonly reason: string }
  | {
      readonly serve: true;
      /** The VM whose clone the domain's requests act on (its own name). */
      readonly vm: VmName;
      /** Set when the domain is itself a clone: the VM it is a clone of. */
      readonly cloneOf?: VmName;
      readonly allowedOps: readonly string[];
      readonly allowCloneRequests: boolean;
    };

/** Decides, from configuration and the state store, whether and how a domain is served. */
export interface Policy {
  admit(domain: DomainIdentity): Admission;
}

export interface OperationRequest {
  readonly domid: number;
  readonly vm: VmName;
  /** Set when the requesting domain is itself a clone (and guest_clone_requests allows it). */
  readonly cloneOf?: VmName;
  readonly requestId: string;
  readonly op: GuestOp;
  readonly args: Readonly<Record<string, string>>;
}

export interface OperationOutcome {
  readonly message: string;
  /** The clone's state afterwards: running, active, inactive or none. */
  readonly cloneState: string;
  readonly cloneName?: string;
}

export type Executor = (
  req: OperationRequest,
  progress: (message: string) => void,
) => Promise<OperationOutcome>;

export interface OrchestratorLimits {
  /** A domain's request node is read at most this often, however many events it fires. */
  readonly minReadIntervalMs: number;
  /** Reads of a domain's request node (each may write an answer) at once... */
  readonly readBurst: number;
  /** ...and then one every this many ms; spent before the read, so a guest past it costs nothing. */
  readonly readRefillMs: number;
  /** New requests a domain may make at once... */
  readonly requestBurst: number;
  /** ...and then one every this many ms. */
  readonly requestRefillMs: number;
  /** Operations waiting behind the running one, per VM. */
  readonly queueLength: number;
  /** Replies kept per domain (the oldest finished one goes first). */
  readonly replyWindow: number;
  /** Operations running at once over all VMs. */
  readonly maxConcurrentOps: number;
  /** Domains and their configuration are re-checked this often (and on @introduceDomain/@releaseDomain). */
  readonly scanIntervalMs: number;
}

export const DEFAULT_LIMITS: OrchestratorLimits = {
  minReadIntervalMs: 50,
  readBurst: 20,
  readRefillMs: 250,
  requestBurst: 10,
  requestRefillMs: 2000,
  queueLength: 2,
  replyWindow: 16,
  maxConcurrentOps: 4,
  scanIntervalMs: 2000,
};

export interface OrchestratorOptions {
  readonly xs: XsClient;
  readonly log: DaemonLogger;
  readonly policy: Policy;
  readonly execute: Executor;
  readonly limits?: Partial<OrchestratorLimits>;
  readonly now?: () => number;
}

const home = (domid: number) => `/local/domain/${domid}`;
const REQUEST_ID = /^[A-Za-z0-9_-]{1,40}$/;
const DOMID = /^[1-9][0-9]{0,4}$/;
const MAX_DOMID = 32751;
const WARN_EVERY_MS = 10_000;

/** The domain's reply root vanished under a reply being written. */
class DomainGone extends Error {}

interface Job {
  readonly request: GuestRequest;
  readonly vm: VmName;
  readonly cloneOf: VmName | undefined;
}

/** A token bucket: `burst` at once, then one per `refillMs`. */
class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly burst: number,
    private readonly refillMs: number,
    now: number,
  ) {
    this.tokens = burst;
    this.at = now;
  }

  take(now: number): boolean {
    this.refill(now);
    if (this.tokens === 0) return false;
    this.tokens--;
    return true;
  }

  /** ms until take() can succeed. */
  msUntilToken(now: number): number {
    this.refill(now);
    return this.tokens > 0 ? 0 : this.at + this.refillMs - now;
  }

  private refill(now: number): void {
    const refill = Math.floor((now - this.at) / this.refillMs);
    if (refill > 0) {
      this.tokens = Math.min(this.burst, this.tokens + refill);
      this.at = this.tokens === this.burst ? now : this.at + refill * this.refillMs;
    }
  }
}

class ServedDomain {
  watch: XsWatch | undefined;
  active = true;
  dirty = false;
  reading = false;
  timer: NodeJS.Timeout | undefined;
  lastReadAt = 0;
  /** Reads of the request node so far. */
  readCount = 0;
  /** The last request value handled: rewriting the same bytes costs nothing. */
  lastRaw: Buffer | undefined;
  readonly replies = new Map<string, ReplyState>();
  readonly queue: Job[] = [];
  running: Job | undefined;
  /** Per warning: when its last line was logged and how many were left out since. */
  readonly warned = new Map<string, { at: number; omitted: number }>();

  constructor(
    readonly identity: DomainIdentity,
    /** New requests. */
    readonly bucket: TokenBucket,
    /** Reads of the request node. */
    readonly reads: TokenBucket,
  ) {}

  get replyRoot(): string {
    return `${home(this.identity.domid)}/${REPLY_ROOT}`;
  }
}

export interface OrchestratorStats {
  readonly domains: number;
  readonly replies: number;
  readonly queued: number;
  readonly running: number;
  /** Reads of request nodes so far, over the domains served now. */
  readonly reads: number;
}

export class GuestOrchestrator {
  private readonly limits: OrchestratorLimits;
  private readonly now: () => number;
  private readonly domains = new Map<number, ServedDomain>();
  private readonly scans: PassScheduler;
  private readonly domainWatches: XsWatch[] = [];
  private scanTimer: NodeJS.Timeout | undefined;
  private slotsInUse = 0;
  private readonly slotWaiters: (() => void)[] = [];
  private readonly runningOps = new Set<Promise<void>>();
  private stopped = false;

  constructor(private readonly o: OrchestratorOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...o.limits };
    this.now = o.now ?? Date.now;
    this.scans = new PassScheduler({
      pass: () => this.scan(),
      onError: (err, retryMs) => o.log.warn('domain scan failed', { error: err, retryMs }),
      retryMinMs: 200,
      retryMaxMs: 5000,
    });
  }

  async start(): Promise<void> {
    for (const special of ['@introduceDomain', '@releaseDomain']) {
      const watch = await this.o.xs.watch(special);
      this.domainWatches.push(watch);
      void this.consume(watch, () => this.scans.markFull());
    }
    this.scanTimer = setInterval(() => this.scans.markFull(), this.limits.scanIntervalMs);
    this.scanTimer.unref();
    await this.scans.idle();
  }

  /** Stops taking requests; resolves once the running operations have ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.scanTimer);
    await this.scans.stop();
    for (const w of this.domainWatches.splice(0)) await w.close().catch(() => {});
    for (const d of this.domains.values()) {
      d.active = false;
      clearTimeout(d.timer);
      d.queue.length = 0;
      await d.watch?.close().catch(() => {});
    }
    for (const wake of this.slotWaiters.splice(0)) wake();
    await Promise.allSettled([...this.runningOps]);
  }

  /** Resolves once a scan pass is done (tests). */
  async rescan(): Promise<void> {
    this.scans.markFull();
    await this.scans.idle();
  }

  get stats(): OrchestratorStats {
    let replies = 0;
    let queued = 0;
    let running = 0;
    let reads = 0;
    for (const d of this.domains.values()) {
      reads += d.readCount;
      replies += d.replies.size;
      queued += d.queue.length;
      if (d.running) running++;
    }
    return { domains: this.domains.size, replies, queued, running, reads };
  }

  /** The domain ids served now. */
  served(): number[] {
    return [...this.domains.keys()];
  }

  // === Domains ============================================================

  private async scan(): Promise<void> {
    if (this.stopped) return;
    const xs = this.o.xs;
    let listed: string[];
    try {
      listed = await xs.directory('/local/domain');
    } catch (err) {
      if (isXsErrno(err, 'ENOENT')) listed = [];
      else throw err;
    }
    const present = new Set<number>();
    for (const entry of listed) {
      if (!DOMID.test(entry) || Number(entry) > MAX_DOMID) continue;
      const domid = Number(entry);
      const identity = await this.identify(domid);
      if (!identity) continue;
      present.add(domid);
      const known = this.domains.get(domid);
      if (known && known.identity.uuid !== identity.uuid) {
        // A domain id reused by another domain: nothing of the old one applies.
        await this.drop(known, 'domain id reused');
      }
      let admission: Admission;
      try {
        admission = this.o.policy.admit(identity);
      } catch (err) {
        admission = { serve: false, reason: `policy failed: ${(err as Error).message}` };
        this.o.log.warn('cannot decide whether to serve a domain', { domid, error: err });
      }
      const served = this.domains.get(domid);
      if (admission.serve && !served) await this.serve(identity);
      else if (!admission.serve && served) await this.retire(served, admission.reason);
    }
    for (const d of [...this.domains.values()]) {
      if (!present.has(d.identity.domid)) await this.drop(d, 'domain gone');
    }
  }

  /** Name and UUID from the nodes the toolstack writes in dom0's name (guest read-only). */
  private async identify(domid: number): Promise<DomainIdentity | undefined> {
    const [name, vmPath] = await Promise.all([
      this.o.xs.tryRead(`${home(domid)}/name`).catch(() => undefined),
      this.o.xs.tryRead(`${home(domid)}/vm`).catch(() => undefined),
    ]);
    const uuid = vmPath?.match(/^\/vm\/([0-9a-fA-F-]{36})$/)?.[1];
    if (name === undefined || uuid === undefined) return undefined;
    return { domid, name, uuid: uuid.toLowerCase() };
  }

  private async serve(identity: DomainIdentity): Promise<void> {
    const { domid } = identity;
    const d = new ServedDomain(
      identity,
      new TokenBucket(this.limits.requestBurst, this.limits.requestRefillMs, this.now()),
      new TokenBucket(this.limits.readBurst, this.limits.readRefillMs, this.now()),
    );
    const perms: XsPerm[] = [
      { domid: 0, access: 'none' },
      { domid, access: 'read' },
    ];
    const existing = await this.o.xs.transaction(async (tx) => {
      // Never create the domain's home: it may have just gone.
      if ((await tx.tryRead(`${home(domid)}/vm`)) === undefined) return undefined;
      await tx.mkdir(d.replyRoot);
      await tx.setPerms(d.replyRoot, perms);
      await tx.write(`${d.replyRoot}/protocol`, PROTOCOL_VERSION);
      try {
        return await tx.directory(`${d.replyRoot}/reply`);
      } catch (err) {
        if (isXsErrno(err, 'ENOENT')) return [];
        throw err;
      }
    });
    if (existing === undefined) return;
    this.domains.set(domid, d);
    // Replies of an earlier run of the orchestrator (ours, dom0-owned): keep the
    // final ones for idempotency; an unfinished one's process is gone.
    for (const id of existing) {
      const state = REQUEST_ID.test(id)
        ? await this.o.xs.tryRead(`${d.replyRoot}/reply/${id}/state`)
        : undefined;
      if (state === 'ok' || state === 'error') d.replies.set(id, state);
      else if (state === 'accepted' || state === 'progress') {
        const op = (await this.o.xs.tryRead(`${d.replyRoot}/reply/${id}/op`)) ?? 'unknown';
        d.replies.set(id, 'error');
        await this.writeReply(d, id, {
          state: 'error',
          op: cleanText(op, 16),
          code: 'INTERRUPTED',
          message: 'the orchestrator restarted while this operation ran; ask for status',
        });
      } else await this.o.xs.rm(`${d.replyRoot}/reply/${id}`).catch(() => {});
    }
    for (const old of this.evictReplies(d)) {
      await this.o.xs.rm(`${d.replyRoot}/reply/${old}`).catch(() => {});
    }
    this.o.log.info('serving domain', { domid, vm: identity.name, uuid: identity.uuid });
    d.watch = await this.o.xs.watch(`${home(domid)}/${REQUEST_NODE}`);
    void this.consume(d.watch, () => this.markDirty(d));
  }

  private async drop(d: ServedDomain, reason: string): Promise<void> {
    if (this.domains.get(d.identity.domid) === d) this.domains.delete(d.identity.domid);
    d.active = false;
    clearTimeout(d.timer);
    d.queue.length = 0;
    await d.watch?.close().catch(() => {});
    this.o.log.info('not serving domain', {
      domid: d.identity.domid,
      vm: d.identity.name,
      reason,
    });
  }

  /** Stops serving a domain that stays, and removes its reply node: clients see it is off. */
  private async retire(d: ServedDomain, reason: string): Promise<void> {
    await this.drop(d, reason);
    await this.o.xs.rm(d.replyRoot).catch(() => {});
  }

  private async consume(watch: XsWatch, onItem: () => void): Promise<void> {
    try {
      for await (const _ of watch) onItem();
    } catch (err) {
      if (!this.stopped) this.o.log.warn('watch ended', { path: watch.path, error: err });
    }
  }

  // === Requests ===========================================================

  private markDirty(d: ServedDomain): void {
    d.dirty = true;
    if (d.timer || d.reading || !d.active) return;
    const now = this.now();
    const wait = Math.max(
      0,
      d.lastReadAt + this.limits.minReadIntervalMs - now,
      d.reads.msUntilToken(now),
    );
    d.timer = setTimeout(() => {
      d.timer = undefined;
      void this.readRequest(d);
    }, wait);
  }

  private async readRequest(d: ServedDomain): Promise<void> {
    if (!d.active) return;
    // Before any XenStore read or state-store work: a guest past its budget costs a timer.
    if (!d.reads.take(this.now())) {
      this.markDirty(d);
      return;
    }
    d.reading = true;
    d.dirty = false;
    d.lastReadAt = this.now();
    try {
      await this.handle(d);
    } catch (err) {
      this.warnSummarized(d, 'request not handled', { error: err });
    } finally {
      d.reading = false;
      if (d.dirty) this.markDirty(d);
    }
  }

  private async handle(d: ServedDomain): Promise<void> {
    const { domid } = d.identity;
    let raw: Buffer;
    d.readCount++;
    try {
      raw = await this.o.xs.readBuffer(`${home(domid)}/${REQUEST_NODE}`);
    } catch (err) {
      if (isXsErrno(err, 'ENOENT')) return;
      throw err;
    }
    if (d.lastRaw?.equals(raw)) return;
    d.lastRaw = raw;
    let request: GuestRequest;
    try {
      request = parseRequest(raw);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      if (err.id === undefined) {
        this.refused(d, err.code, err.message);
        await this.writeNodes(d, { rejected: cleanText(`${err.code} ${err.message}`) });
      } else if (!d.replies.has(err.id)) {
        await this.refuse(d, err.id, 'unknown', err.code, err.message);
      }
      return;
    }
    // Idempotent per id: a request seen before is never acted on again.
    if (d.replies.has(request.id)) return;
    const { id, op } = request;
    if (!d.bucket.take(this.now())) {
      await this.refuse(d, id, op, 'RATE_LIMITED', 'too many requests; wait and use a new id');
      return;
    }
    // Decided now, from the current configuration and state store.
    let admission: Admission;
    try {
      admission = this.o.policy.admit(d.identity);
    } catch (err) {
      // A broken configuration file: the guest learns why nothing happens.
      await this.refuse(d, id, op, errorCode(err), (err as Error).message);
      return;
    }
    if (!admission.serve) {
      await this.retire(d, admission.reason);
      return;
    }
    if (admission.cloneOf !== undefined && !admission.allowCloneRequests) {
      await this.refuse(
        d,
        id,
        op,
        'CLONE_REQUEST_REFUSED',
        `this domain is a clone of ${admission.cloneOf}; requests from clones are refused (guest_clone_requests)`,
      );
      return;
    }
    if (!admission.allowedOps.includes(op)) {
      await this.refuse(
        d,
        id,
        op,
        'OP_NOT_ALLOWED',
        `${op} is not allowed for this VM (guest_allowed_operations: ${admission.allowedOps.join(', ') || 'none'})`,
      );
      return;
    }
    const ahead = d.queue.length + (d.running ? 1 : 0);
    if (ahead > this.limits.queueLength) {
      await this.refuse(d, id, op, 'BUSY', `${ahead} operations of this VM are ahead; try later`);
      return;
    }
    await this.record(d, id, {
      state: 'accepted',
      op,
      message: ahead === 0 ? 'accepted' : `accepted; ${ahead} operation(s) ahead`,
    });
    this.o.log.info('request accepted', { domid, vm: admission.vm, id, op, args: request.args });
    d.queue.push({ request, vm: admission.vm, cloneOf: admission.cloneOf });
    this.pump(d);
  }

  private pump(d: ServedDomain): void {
    if (d.running || d.queue.length === 0 || !d.active || this.stopped) return;
    const job = d.queue.shift()!;
    d.running = job;
    const run = this.run(d, job).finally(() => {
      d.running = undefined;
      this.runningOps.delete(run);
      this.pump(d);
    });
    this.runningOps.add(run);
  }

  private async run(d: ServedDomain, job: Job): Promise<void> {
    const { id, op, args } = job.request;
    const domid = d.identity.domid;
    await this.acquireSlot();
    try {
      if (this.stopped) return;
      let lastProgress = Promise.resolve();
      const outcome = await this.o.execute(
        {
          domid,
          vm: job.vm,
          requestId: id,
          op,
          args,
          ...(job.cloneOf === undefined ? {} : { cloneOf: job.cloneOf }),
        },
        (message) => {
          // The lifecycle's steps, not guest input: a handful per operation.
          this.o.log.info('request progress', { domid, vm: job.vm, id, op, message });
          lastProgress = this.record(d, id, { state: 'progress', op, message });
        },
      );
      await lastProgress;
      // A clone's domain may have come or gone, and the state store now says
      // whose clone it is: domains are looked at again before the ok, so a
      // client in a fresh clone is answered (served or refused) at once.
      if (op !== 'status') await this.rescan();
      await this.record(d, id, {
        state: 'ok',
        op,
        message: outcome.message,
        cloneState: outcome.cloneState,
        ...(outcome.cloneName === undefined ? {} : { cloneName: outcome.cloneName }),
      });
      this.o.log.info('request done', { domid, vm: job.vm, id, op, result: outcome.message });
    } catch (err) {
      const code = errorCode(err);
      const message = (err as Error)?.message ?? String(err);
      await this.record(d, id, { state: 'error', op, code, message });
      this.o.log.warn('request failed', { domid, vm: job.vm, id, op, code, error: message });
    } finally {
      this.releaseSlot();
    }
  }

  private async acquireSlot(): Promise<void> {
    while (this.slotsInUse >= this.limits.maxConcurrentOps && !this.stopped) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
    this.slotsInUse++;
  }

  private releaseSlot(): void {
    this.slotsInUse--;
    this.slotWaiters.shift()?.();
  }

  // === Replies ============================================================

  private async refuse(
    d: ServedDomain,
    id: string,
    op: string,
    code: string,
    message: string,
  ): Promise<void> {
    this.refused(d, code, message, id);
    await this.record(d, id, { state: 'error', op, code, message });
  }

  private refused(d: ServedDomain, code: string, message: string, id?: string): void {
    this.warnSummarized(d, 'request refused', { id, code, reason: message });
  }

  /**
   * Logs a warning about what a domain did at most once per WARN_EVERY_MS,
   * with how many were left out since the last line: a flooding guest cannot
   * flood the log.
   */
  private warnSummarized(d: ServedDomain, msg: string, fields: Record<string, unknown>): void {
    const now = this.now();
    const last = d.warned.get(msg);
    if (last && now - last.at < WARN_EVERY_MS) {
      last.omitted++;
      return;
    }
    this.o.log.warn(msg, {
      domid: d.identity.domid,
      vm: d.identity.name,
      ...fields,
      omittedSinceLastLine: last?.omitted ?? 0,
    });
    d.warned.set(msg, { at: now, omitted: 0 });
  }

  /**
   * Writes a reply and remembers its id; a new id pushes the oldest finished
   * replies out of the window, in the same transaction.
   */
  private async record(d: ServedDomain, id: string, reply: Reply): Promise<void> {
    const isNew = !d.replies.has(id);
    d.replies.set(id, reply.state);
    const evicted = isNew ? this.evictReplies(d) : [];
    await this.writeReply(d, id, reply, evicted);
  }

  private async writeReply(
    d: ServedDomain,
    id: string,
    reply: Reply,
    evicted: readonly string[] = [],
  ): Promise<void> {
    const nodes: Record<string, string> = {};
    for (const [k, v] of Object.entries(replyNodes(reply))) nodes[`reply/${id}/${k}`] = v;
    await this.writeNodes(d, nodes, [`reply/${id}`, ...evicted.map((old) => `reply/${old}`)]);
  }

  /**
   * Writes nodes under the domain's reply root in one transaction, after
   * removing the subtrees `remove`; nothing if the root is gone (a write must
   * never re-create the home of a domain that has just been destroyed).
   */
  private async writeNodes(
    d: ServedDomain,
    nodes: Record<string, string>,
    remove: readonly string[] = [],
  ): Promise<void> {
    if (!d.active) return;
    try {
      await this.o.xs.transaction(async (tx) => {
        // One round trip: everything is sent at once (xenstored answers a
        // connection's requests in order); a transaction whose domain turned
        // out to be gone is aborted, so none of it lands.
        const [protocol] = await Promise.all([
          tx.tryRead(`${d.replyRoot}/protocol`),
          ...remove.map((sub) =>
            tx.rm(`${d.replyRoot}/${sub}`).catch((err: unknown) => {
              if (!isXsErrno(err, 'ENOENT')) throw err;
            }),
          ),
          ...Object.entries(nodes).map(([k, v]) => tx.write(`${d.replyRoot}/${k}`, v)),
        ]);
        if (protocol === undefined) throw new DomainGone();
      });
    } catch (err) {
      if (!(err instanceof DomainGone)) {
        this.warnSummarized(d, 'reply not written', { error: err });
      }
    }
  }

  /** Forgets the oldest finished replies beyond the window; returns their ids. */
  private evictReplies(d: ServedDomain): string[] {
    const evicted: string[] = [];
    for (const [id, state] of d.replies) {
      if (d.replies.size <= this.limits.replyWindow) break;
      if (!isFinal(state)) continue;
      d.replies.delete(id);
      evicted.push(id);
    }
    return evicted;
  }
}
