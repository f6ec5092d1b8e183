/**
 * The live view: follows the state store (PRAGMA data_version, as
 * clone_monitor does), XenStore (ZynClone's tree, domains coming and going)
 * and `xl list`, keeps one picture of every clone, VM and daemon, and tells
 * subscribers what changed. A change in the store reaches subscribers after
 * one poll interval plus one pass over the store; a domain's state after one
 * `xl list`.
 */
import type { ProgressEvent } from '../core/clones/lifecycle.js';
import { configuredVms } from '../core/config/index.js';
import type { CloneKind } from '../core/config/schema.js';
import type { CloneState, OperationRecord } from '../core/state/types.js';
import { ChangeProbe } from '../daemons/clone-monitor/change-probe.js';
import { PassScheduler } from '../daemons/common/pass-scheduler.js';
import type { XlListEntry } from '../xen/index.js';
import type { XsWatch } from '../xenstore/index.js';
import type { CoreHost } from './host.js';

export interface OperationView {
  readonly id: number;
  readonly kind: string;
  readonly requestedBy: string;
  readonly startedAt: string;
  readonly steps: readonly { name: string; status: string }[];
}

export interface CloneView {
  readonly vm: string;
  readonly clone: {
    readonly cloneName: string;
    readonly state: CloneState;
    readonly kind: CloneKind;
    readonly cloneDomid: number | null;
    readonly cloneUuid: string | null;
    readonly requestedBy: string;
    readonly createdAt: string;
    readonly updatedAt: string;
  } | null;
  /** The lockdown generation published for the VM and the net monitor's ack of it. */
  readonly lockdown: {
    readonly generation: number | null;
    readonly ack: number | null;
    readonly acknowledged: boolean;
  };
  readonly domain: {
    readonly domid: number;
    readonly state: string;
    readonly paused: boolean;
  } | null;
  readonly operation: OperationView | null;
}

export interface VmView {
  readonly name: string;
  readonly domid: number | null;
  readonly state: string | null;
}

export interface DaemonView {
  readonly name: string;
  readonly version: string | null;
  readonly pid: string | null;
  /** Epoch ms of the last beat. */
  readonly heartbeat: number | null;
  readonly heartbeatMs: number | null;
}

export interface Snapshot {
  readonly clones: CloneView[];
  readonly vms: VmView[];
  readonly daemons: DaemonView[];
}

export type LiveEvent =
  | { type: 'clone'; data: CloneView }
  /** `vm` has neither a clone nor a running operation any more. */
  | { type: 'clone-gone'; data: { vm: string } }
  | { type: 'vms'; data: VmView[] }
  | { type: 'daemons'; data: DaemonView[] }
  | { type: 'progress'; data: ProgressEvent & { vm: string; operation: string } };

export type Subscriber = (event: LiveEvent) => void;

const ZC = '/tool/zynclone';
const VM_RE = /^\/tool\/zynclone\/vm\/([^/]+)/;
const ACK_RE = /^\/tool\/zynclone\/net\/ack\/([^/]+)$/;
const DAEMON_RE = /^\/tool\/zynclone\/daemons\/([^/]+)/;

/** How often the state store is asked whether it changed. */
const STORE_POLL_MS = 20;
/** How often `xl list` runs when nothing else asked for it. */
const DOMAIN_POLL_MS = 2000;

export interface LiveFeedOptions {
  /** Called once for every operation seen finishing (metrics). */
  readonly onOperationFinished?: (op: OperationRecord) => void;
  readonly onError?: (what: string, err: unknown) => void;
}

function opView(op: OperationRecord): OperationView {
  return {
    id: op.id,
    kind: op.kind,
    requestedBy: op.requestedBy,
    startedAt: new Date(op.startedAt).toISOString(),
    steps: op.steps.map((s) => ({ name: s.name, status: s.status })),
  };
}

function numOrNull(text: string | undefined): number | null {
  if (text === undefined) return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

export class LiveFeed {
  private readonly subscribers = new Set<Subscriber>();
  private clones = new Map<string, CloneView>();
  private vms: VmView[] = [];
  private daemons: DaemonView[] = [];
  private domains: XlListEntry[] = [];
  private readonly generation = new Map<string, number>();
  private readonly ack = new Map<string, number>();
  private readonly watches: XsWatch[] = [];
  private readonly loops: Promise<void>[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly passes: PassScheduler;
  private probe: ChangeProbe | undefined;
  private domainsRunning: Promise<void> | undefined;
  private domainsAgain = false;
  private seenOpId = 0;
  private readonly runningOps = new Set<number>();
  private stopped = false;

  constructor(
    private readonly host: CoreHost,
    private readonly o: LiveFeedOptions = {},
  ) {
    this.passes = new PassScheduler({
      pass: async () => this.storePass(),
      onError: (err) => this.o.onError?.('live view pass failed', err),
      retryMinMs: 100,
      retryMaxMs: 5000,
    });
  }

  async start(): Promise<void> {
    this.seenOpId = this.host.store.listOperations({ limit: 1 })[0]?.id ?? 0;
    for (const op of this.host.store.pendingOperations()) this.runningOps.add(op.id);
    this.probe = new ChangeProbe(this.host.paths);
    this.timers.push(
      setInterval(() => this.pollStore(), STORE_POLL_MS),
      setInterval(() => void this.refreshDomains(), DOMAIN_POLL_MS),
    );
    await this.followXenstoreOrRetry();
    await this.refreshDomains();
    this.passes.markFull();
    await this.passes.idle();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.all(this.watches.map((w) => w.close().catch(() => {})));
    await Promise.all(this.loops);
    await this.passes.stop();
    await this.domainsRunning;
    this.probe?.close();
    this.subscribers.clear();
  }

  snapshot(): Snapshot {
    return { clones: [...this.clones.values()], vms: this.vms, daemons: this.daemons };
  }

  /** Adds a subscriber; returns its removal. */
  subscribe(fn: Subscriber): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Progress of an operation this server runs, for every page. */
  publishProgress(vm: string, operation: string, e: ProgressEvent): void {
    this.emit({ type: 'progress', data: { ...e, vm, operation } });
  }

  /** Passes now (after an operation of this server), without waiting for the poll. */
  async refresh(): Promise<void> {
    this.passes.markFull();
    await this.passes.idle();
    await this.refreshDomains();
  }

  private emit(event: LiveEvent): void {
    for (const fn of this.subscribers) {
      try {
        fn(event);
      } catch (err) {
        this.o.onError?.('a live view subscriber failed', err);
      }
    }
  }

  private pollStore(): void {
    if (this.stopped || !this.probe) return;
    try {
      const c = this.probe.poll();
      if (c.store) {
        this.passes.markFull();
        void this.refreshDomains();
      }
    } catch (err) {
      this.o.onError?.('cannot poll the state store', err);
    }
  }

  /** Until XenStore answers, the view follows the store and xl only, and tries again every 5 s. */
  private async followXenstoreOrRetry(): Promise<void> {
    try {
      await this.followXenstore();
    } catch (err) {
      this.o.onError?.('cannot follow XenStore; trying again in 5 s', err);
      const retry = setTimeout(() => {
        if (!this.stopped) void this.followXenstoreOrRetry();
      }, 5000);
      this.timers.push(retry);
    }
  }

  private async followXenstore(): Promise<void> {
    const xs = await this.host.xs();
    const reread = async (values: Map<string, number>, vm: string, path: string) => {
      const n = numOrNull(await xs.tryRead(path).catch(() => undefined));
      if (n === null) values.delete(vm);
      else values.set(vm, n);
      this.passes.markDirty(vm);
    };
    const onZc = async (path: string) => {
      const vm = VM_RE.exec(path)?.[1];
      const acked = ACK_RE.exec(path)?.[1];
      // Any change under vm/$VM, its removal included, may be a new generation.
      if (vm !== undefined) await reread(this.generation, vm, `${ZC}/vm/${vm}/generation`);
      else if (acked !== undefined) await reread(this.ack, acked, path);
      else if (DAEMON_RE.test(path)) await this.readDaemons();
      else if (path === ZC || path === `${ZC}/vm` || path === `${ZC}/net/ack`) await this.readAll();
    };
    await this.follow(ZC, onZc, () => this.readAll());
    for (const special of ['@introduceDomain', '@releaseDomain']) {
      await this.follow(special, async () => this.refreshDomains());
    }
    await this.readAll();
  }

  private async follow(
    path: string,
    onEvent: (path: string) => Promise<void>,
    onResync?: () => Promise<void>,
  ): Promise<void> {
    const w = await (await this.host.xs()).watch(path);
    this.watches.push(w);
    this.loops.push(
      (async () => {
        for await (const item of w) {
          if (this.stopped) break;
          try {
            if (item.kind === 'resync') await onResync?.();
            else await onEvent(item.path);
          } catch (err) {
            this.o.onError?.(`cannot follow ${path}`, err);
          }
        }
      })(),
    );
  }

  private async readAll(): Promise<void> {
    const xs = await this.host.xs();
    const list = (p: string) => xs.directory(p).catch(() => [] as string[]);
    this.generation.clear();
    this.ack.clear();
    for (const vm of await list(`${ZC}/vm`)) {
      const g = numOrNull(await xs.tryRead(`${ZC}/vm/${vm}/generation`));
      if (g !== null) this.generation.set(vm, g);
    }
    for (const vm of await list(`${ZC}/net/ack`)) {
      const a = numOrNull(await xs.tryRead(`${ZC}/net/ack/${vm}`));
      if (a !== null) this.ack.set(vm, a);
    }
    await this.readDaemons();
    this.passes.markFull();
  }

  private async readDaemons(): Promise<void> {
    const xs = await this.host.xs();
    const names = await xs.directory(`${ZC}/daemons`).catch(() => [] as string[]);
    const daemons: DaemonView[] = [];
    for (const name of names.sort()) {
      const read = (leaf: string) =>
        xs.tryRead(`${ZC}/daemons/${name}/${leaf}`).catch(() => undefined);
      daemons.push({
        name,
        version: (await read('version')) ?? null,
        pid: (await read('pid')) ?? null,
        heartbeat: numOrNull(await read('heartbeat')),
        heartbeatMs: numOrNull(await read('heartbeat-ms')),
      });
    }
    if (JSON.stringify(daemons) !== JSON.stringify(this.daemons)) {
      this.daemons = daemons;
      this.emit({ type: 'daemons', data: daemons });
    }
  }

  /** Runs `xl list` (one at a time; a request during a run runs once more after it). */
  private refreshDomains(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.domainsRunning) {
      this.domainsAgain = true;
      return this.domainsRunning;
    }
    this.domainsRunning = (async () => {
      do {
        this.domainsAgain = false;
        try {
          this.domains = await this.host.xl.list();
        } catch (err) {
          this.o.onError?.('xl list failed', err);
        }
        this.passes.markFull();
      } while (this.domainsAgain && !this.stopped);
    })().finally(() => {
      this.domainsRunning = undefined;
    });
    return this.domainsRunning;
  }

  private storePass(): void {
    const store = this.host.store;
    const clones = store.listClones();
    const pending = store.pendingOperations();
    this.noteFinishedOperations(pending);
    const opByVm = new Map(pending.map((op) => [op.vm, op]));
    const byName = new Map(this.domains.map((d) => [d.name, d]));

    const next = new Map<string, CloneView>();
    const vmsWithClone = new Set([...clones.map((c) => c.vm), ...opByVm.keys()]);
    const cloneByVm = new Map(clones.map((c) => [c.vm, c]));
    for (const vm of [...vmsWithClone].sort()) {
      const c = cloneByVm.get(vm);
      const op = opByVm.get(vm);
      const d = c ? byName.get(c.cloneName) : undefined;
      const generation = this.generation.get(vm) ?? null;
      const ack = this.ack.get(vm) ?? null;
      next.set(vm, {
        vm,
        clone: c
          ? {
              cloneName: c.cloneName,
              state: c.state,
              kind: c.kind,
              cloneDomid: c.cloneDomid,
              cloneUuid: c.cloneUuid,
              requestedBy: c.requestedBy,
              createdAt: new Date(c.createdAt).toISOString(),
              updatedAt: new Date(c.updatedAt).toISOString(),
            }
          : null,
        lockdown: {
          generation,
          ack,
          acknowledged: generation !== null && ack !== null && ack >= generation,
        },
        domain: d ? { domid: d.domid, state: d.state, paused: d.flags.paused } : null,
        operation: op ? opView(op) : null,
      });
    }
    for (const [vm, view] of next) {
      const before = this.clones.get(vm);
      if (!before || JSON.stringify(before) !== JSON.stringify(view)) {
        this.emit({ type: 'clone', data: view });
      }
    }
    for (const vm of this.clones.keys()) {
      if (!next.has(vm)) this.emit({ type: 'clone-gone', data: { vm } });
    }
    this.clones = next;

    const cloneNames = new Set(clones.map((c) => c.cloneName));
    const vms = new Map<string, VmView>();
    for (const name of configuredVms(this.host.paths))
      vms.set(name, { name, domid: null, state: null });
    for (const d of this.domains) {
      if (d.domid === 0 || cloneNames.has(d.name)) continue;
      vms.set(d.name, { name: d.name, domid: d.domid, state: d.state });
    }
    for (const vm of vmsWithClone)
      if (!vms.has(vm)) vms.set(vm, { name: vm, domid: null, state: null });
    const vmList = [...vms.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (JSON.stringify(vmList) !== JSON.stringify(this.vms)) {
      this.vms = vmList;
      this.emit({ type: 'vms', data: vmList });
    }
  }

  /** Operations that ended since the last pass (by this server or any vmclone). */
  private noteFinishedOperations(pending: readonly OperationRecord[]): void {
    const store = this.host.store;
    const stillRunning = new Set(pending.map((op) => op.id));
    const ended: number[] = [...this.runningOps].filter((id) => !stillRunning.has(id));
    const newest = store.listOperations({ limit: 1 })[0]?.id ?? 0;
    for (let id = this.seenOpId + 1; id <= newest; id++) {
      if (!stillRunning.has(id)) ended.push(id);
    }
    this.seenOpId = Math.max(this.seenOpId, newest);
    this.runningOps.clear();
    for (const id of stillRunning) this.runningOps.add(id);
    for (const id of ended) {
      const op = store.getOperation(id);
      if (op && op.finishedAt !== null) this.o.onOperationFinished?.(op);
    }
  }
}
