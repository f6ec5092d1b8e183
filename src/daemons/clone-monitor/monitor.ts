import { ensureIsolationBridge } from '../../core/clones/bridge.js';
import { CloneLifecycle, type RecoveryReport } from '../../core/clones/lifecycle.js';
import {
  type CloneLockdown,
  cloneLockdown,
  configOrError,
  liveDomains,
} from '../../core/clones/lockdown.js';
import { type CloneMeta, readCloneMeta } from '../../core/clones/meta.js';
import { XL_DEFAULT_BRIDGE } from '../../core/clones/plan.js';
import { publishVmIf, unpublishVm, vmNode } from '../../core/clones/publish.js';
import type { ZynclonePaths } from '../../core/paths.js';
import type { CloneRecord, StateStore } from '../../core/state/index.js';
import { type XlDriver, parseVif, printVif } from '../../xen/index.js';
import { type XsClient, type XsWatch, isXsErrno } from '../../xenstore/index.js';
import type { DaemonLogger } from '../common/log.js';
// clone_monitor's loop: state store + configuration + xl -> /tool/zynclone/vm
// (docs/xenstore-contract.md), and the frontend half of the vif lockdown.
//
// - The state store is the source of truth: XenStore is rebuilt from it, never
//   the other way round. A VM in XenStore without a clone in the store is
//   unpublished; a VM whose published subtree differs from what the store,
//   the configuration and the running domains imply is published again
//   (publishVm, generation written last).
// - A VM with an operation running is left alone: the lifecycle publishes it
//   and waits for the net monitor's ack of its own generation; the next pass
//   after the operation has finished (the store changed) takes over.
// - Passes run on: start, XenStore reconnects (watch `resync`), state store
//   commits (PRAGMA data_version), configuration file changes, the kick node,
//   domains appearing or going (@introduceDomain/@releaseDomain), and any
//   change under vm/ (a deleted or tampered node is put back).
// - Crash recovery: an operation whose owner (a vmclone process) died is
//   finished or rolled back here, within a poll of the death, with no command
//   typed: a create killed inside the original's pause leaves it paused only
//   that long. This daemon does it because it is the one that always runs in
//   the control domain, next to the state store and xl, which recovery needs;
//   the net and console monitors run in other domains without either.
import { PassScheduler } from '../common/pass-scheduler.js';
import { ChangeProbe } from './change-probe.js';
import {
  expectedLeaves,
  fingerprint,
  matchesPublication,
  publicationKey,
  readLeaves,
} from './published.js';
import { type DomainIds, ZC_ROOT, ensureTree } from './tree.js';

export const VM_ROOT = `${ZC_ROOT}/vm`;
/** Written by vmclone after each operation and config change: a pass runs at once. */
export const KICK_NODE = `${ZC_ROOT}/control/kick`;
export const frontendProblemsNode = (vm: string) => `${vmNode(vm)}/frontend/problems`;

export const DEFAULT_POLL_MS = 200;
/** A domain event is followed by a second pass: xl may list a new domain only a moment later. */
const DOMAIN_FOLLOW_UP_MS = 1000;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

export type BridgeEnsurer = (bridge: string, clonePrefix: string) => Promise<unknown>;

export interface CloneMonitorOptions {
  xs: XsClient;
  store: StateStore;
  paths: ZynclonePaths;
  xl: XlDriver;
  log: DaemonLogger;
  ids: DomainIds;
  /** Interval of the state store and config checks (default 200 ms). */
  pollMs?: number;
  /**
   * Create the isolation bridge before moving a vif onto it, and refuse one
   * with an uplink. Default: on a real host (root `/`); under another root the
   * simulator's network domain makes its bridges itself.
   */
  manageBridge?: boolean;
  ensureBridge?: BridgeEnsurer;
  /**
   * Nodes under daemons/clone-monitor/ (version, pid, heartbeat-ms) written at
   * start and again after XenStore reconnects, since it may have restarted empty.
   */
  identity?: Readonly<Record<string, string>>;
}

interface Desired {
  readonly clone: CloneRecord;
  readonly lockdown: CloneLockdown;
}

export interface PassReport {
  readonly full: boolean;
  readonly published: string[];
  readonly unpublished: string[];
  readonly moved: { vm: string; devid: number; bridge: string }[];
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class CloneMonitor {
  private readonly o: CloneMonitorOptions;
  private readonly pollMs: number;
  private readonly manageBridge: boolean;
  private readonly ensureBridge: BridgeEnsurer;
  private probe: ChangeProbe | undefined;
  private desired = new Map<string, Desired>();
  /** Per VM: the publication key and the subtree fingerprint last seen in agreement. */
  private readonly agreed = new Map<string, { key: string; fp: string }>();
  private readonly problemsWritten = new Map<string, string>();
  private domains = new Map<string, number>();
  private readonly passes: PassScheduler;
  private identityPending = true;
  private followUpTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private readonly watches: XsWatch[] = [];
  private readonly loops: Promise<void>[] = [];
  private stopped = false;
  private readonly passListeners = new Set<(r: PassReport) => void>();
  private readonly lifecycle: CloneLifecycle;
  private recovering: Promise<void> | undefined;
  /** Operations whose recovery failed (this process owns them now): when to try again. */
  private readonly retryAt = new Map<number, number>();

  constructor(opts: CloneMonitorOptions) {
    this.o = opts;
    this.pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
    this.manageBridge = opts.manageBridge ?? opts.paths.root === '/';
    this.ensureBridge = opts.ensureBridge ?? ensureIsolationBridge;
    this.passes = new PassScheduler({
      pass: (full, dirty) => this.pass(full, dirty),
      onError: (err, retryMs) =>
        this.o.log.error('reconcile pass failed; retrying', { error: err, retryMs }),
      retryMinMs: RETRY_MIN_MS,
      retryMaxMs: RETRY_MAX_MS,
    });
    this.lifecycle = new CloneLifecycle({
      paths: opts.paths,
      store: opts.store,
      xl: opts.xl,
      xs: async () => opts.xs,
      requestedBy: 'system:clone-monitor',
      manageBridge: this.manageBridge,
      progress: (e) => {
        if (e.kind === 'warn') opts.log.warn(e.message, {});
        else if (e.kind !== 'progress') opts.log.info(e.message, { kind: e.kind });
      },
    });
  }

  /** Called after every pass. */
  onPass(listener: (r: PassReport) => void): () => void {
    this.passListeners.add(listener);
    return () => this.passListeners.delete(listener);
  }

  async start(): Promise<void> {
    const { xs } = this.o;
    await ensureTree(xs, this.o.ids);
    this.probe = new ChangeProbe(this.o.paths);
    const follow = async (path: string, onEvent: (p: string) => void) => {
      const w = await xs.watch(path);
      this.watches.push(w);
      this.loops.push(this.consume(w, onEvent));
    };
    await follow(VM_ROOT, (p) => {
      const rest = p.startsWith(`${VM_ROOT}/`) ? p.slice(VM_ROOT.length + 1) : '';
      const vm = rest.split('/')[0];
      if (vm) this.passes.markDirty(vm);
      else this.passes.markFull();
    });
    await follow(KICK_NODE, () => this.passes.markFull());
    for (const special of ['@introduceDomain', '@releaseDomain']) {
      await follow(special, () => {
        this.passes.markFull();
        this.followUp();
      });
    }
    this.pollTimer = setInterval(() => this.poll(), this.pollMs);
    this.passes.markFull();
    this.recoverStale();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.followUpTimer) clearTimeout(this.followUpTimer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    await Promise.all(this.watches.map((w) => w.close().catch(() => {})));
    await Promise.all(this.loops);
    await this.recovering;
    await this.passes.stop();
    this.probe?.close();
  }

  /** Asks for a full pass (as the kick node does). */
  requestFullPass(): void {
    this.passes.markFull();
  }

  /** Resolves once no pass is running or pending (tests). */
  idle(): Promise<void> {
    return this.passes.idle();
  }

  /**
   * Finishes or rolls back every operation whose owner died (one recovery
   * at a time; the next poll looks again).
   */
  private recoverStale(): void {
    if (this.stopped || this.recovering !== undefined) return;
    let stale: number;
    try {
      stale = this.o.store.staleOperations().length;
    } catch (err) {
      this.o.log.warn('cannot look for operations left by dead processes', { error: err });
      return;
    }
    const now = Date.now();
    const due = [...this.retryAt].filter(([, at]) => at <= now).map(([id]) => id);
    if (stale === 0 && due.length === 0) return;
    this.recovering = this.lifecycle
      .recover(due)
      .then((reports: RecoveryReport[]) => {
        // Finished meanwhile by someone else: nothing to retry.
        for (const id of due) if (!reports.some((r) => r.opId === id)) this.retryAt.delete(id);
        for (const r of reports) {
          const fields = { vm: r.vm, opId: r.opId, kind: r.kind, outcome: r.outcome };
          if (r.outcome === 'failed') {
            this.retryAt.set(r.opId, Date.now() + RETRY_MAX_MS);
            this.o.log.error('recovery of an operation left by a dead process failed; retrying', {
              ...fields,
              error: r.error,
              retryMs: RETRY_MAX_MS,
            });
          } else {
            this.retryAt.delete(r.opId);
            this.o.log.info('recovered an operation left by a dead process', fields);
          }
        }
      })
      .catch((err) => this.o.log.error('crash recovery failed', { error: err }))
      .finally(() => {
        this.recovering = undefined;
        this.requestFullPass();
      });
  }

  private poll(): void {
    if (this.stopped || !this.probe) return;
    this.recoverStale();
    try {
      const c = this.probe.poll();
      if (c.store || c.config) {
        this.o.log.debug('state store or configuration changed', c);
        this.requestFullPass();
      }
    } catch (err) {
      this.o.log.warn('cannot check the state store for changes', { error: err });
    }
  }

  private followUp(): void {
    if (this.followUpTimer || this.stopped) return;
    this.followUpTimer = setTimeout(() => {
      this.followUpTimer = undefined;
      this.requestFullPass();
    }, DOMAIN_FOLLOW_UP_MS);
  }

  private async consume(watch: XsWatch, onEvent: (path: string) => void): Promise<void> {
    try {
      for await (const item of watch) {
        if (item.kind === 'resync') {
          // XenStore may have restarted empty: permissions and every VM again.
          this.agreed.clear();
          this.problemsWritten.clear();
          this.identityPending = true;
          this.o.log.info('xenstore reconnected: full reconcile', { watch: watch.path });
          this.passes.markFull();
        } else {
          onEvent(item.path);
        }
      }
    } catch (err) {
      if (!this.stopped) this.o.log.error('watch ended', { path: watch.path, error: err });
    }
  }

  private async pass(full: boolean, dirty: string[]): Promise<void> {
    const report: PassReport = { full, published: [], unpublished: [], moved: [] };
    let vms: Set<string>;
    if (full) {
      await ensureTree(this.o.xs, this.o.ids);
      if (this.identityPending) {
        const base = `${ZC_ROOT}/daemons/clone-monitor`;
        const entries = Object.entries(this.o.identity ?? {});
        await Promise.all(entries.map(([k, v]) => this.o.xs.write(`${base}/${k}`, v)));
        this.identityPending = false;
      }
      await this.refreshDesired();
      const published = await this.o.xs.directory(VM_ROOT).catch((err) => {
        if (isXsErrno(err, 'ENOENT')) return [] as string[];
        throw err;
      });
      vms = new Set([...this.desired.keys(), ...published]);
    } else {
      vms = new Set(dirty);
    }
    for (const vm of [...vms].sort()) await this.syncVm(vm, report);
    if (full) {
      for (const d of this.desired.values()) await this.frontend(d, report);
    }
    for (const l of this.passListeners) l(report);
  }

  // ---- what should be published -------------------------------------------

  private async refreshDesired(): Promise<void> {
    try {
      await this.lifecycle.reconcile(); // its notes are logged as progress warnings
    } catch (err) {
      this.o.log.warn('cannot reconcile the state store with the domains', { error: err });
    }
    const clones = this.o.store.listClones();
    try {
      const list = await this.o.xl.list();
      this.domains = new Map(list.map((d) => [d.name, Number(d.domid)]));
    } catch (err) {
      this.o.log.warn('xl list failed; using the domains seen last', { error: err });
    }
    const next = new Map<string, Desired>();
    for (const clone of clones) next.set(clone.vm, await this.desiredFor(clone));
    this.desired = next;
  }

  private async desiredFor(clone: CloneRecord): Promise<Desired> {
    const log = this.o.log.child({ vm: clone.vm });
    let meta: CloneMeta | undefined;
    try {
      meta = readCloneMeta(this.o.paths, clone.cloneName);
    } catch (err) {
      log.error("the clone's metadata is unreadable; its vifs stay dropped", { error: err });
    }
    const config = configOrError(clone.vm, this.o.paths);
    if (config instanceof Error) {
      log.error("the VM's configuration is invalid; every clone vif is masked", { error: config });
    }
    const live = await liveDomains(this.o.xl, clone.vm, clone.cloneName, this.domains);
    return {
      clone,
      lockdown: cloneLockdown(clone.vm, clone.cloneName, meta, clone.state, config, live),
    };
  }

  // ---- XenStore ------------------------------------------------------------

  private async syncVm(vm: string, report: PassReport): Promise<void> {
    const { xs, store, log } = this.o;
    const running = store.runningOperation(vm);
    if (running !== undefined) {
      log.debug('operation running; the lifecycle publishes this VM', { vm, opId: running.id });
      return;
    }
    const base = vmNode(vm);
    const d = this.desired.get(vm);
    if (d === undefined) {
      if (store.getClone(vm) !== undefined) {
        // Created since the last full pass.
        this.passes.markFull();
        return;
      }
      if ((await readLeaves(xs, base, new Set())) !== undefined) {
        await unpublishVm(xs, vm);
        report.unpublished.push(vm);
        log.info('unpublished a VM that has no clone in the state store', { vm });
      }
      this.agreed.delete(vm);
      this.problemsWritten.delete(vm);
      return;
    }
    const actual = (await readLeaves(xs, base)) ?? new Map<string, string>();
    const key = publicationKey(d.lockdown.publication);
    const seen = this.agreed.get(vm);
    const fp = fingerprint(actual);
    if (seen?.key === key && seen.fp === fp) return;
    if (matchesPublication(actual, expectedLeaves(d.lockdown.publication))) {
      this.agreed.set(vm, { key, fp });
      return;
    }
    // Never backwards: an operation may have begun or ended since `d` was
    // computed (it is then newer than `d`), or published meanwhile.
    const now = store.getClone(vm);
    if (
      store.runningOperation(vm) !== undefined ||
      now?.updatedAt !== d.clone.updatedAt ||
      now.state !== d.clone.state ||
      now.cloneDomid !== d.clone.cloneDomid
    ) {
      this.passes.markFull();
      return;
    }
    const generation = await publishVmIf(xs, d.lockdown.publication, actual.get('generation'));
    if (generation === undefined) {
      this.passes.markDirty(vm);
      return;
    }
    const after = (await readLeaves(xs, base)) ?? new Map<string, string>();
    this.agreed.set(vm, { key, fp: fingerprint(after) });
    report.published.push(vm);
    log.info('published', {
      vm,
      generation,
      state: d.lockdown.publication.state,
      cloneDomid: d.lockdown.publication.cloneDomid,
      originalDomid: d.lockdown.publication.originalDomid,
      cloneVifMask: d.lockdown.publication.cloneVifMask,
      originalVifMask: d.lockdown.publication.originalVifMask,
      reason:
        seen === undefined
          ? 'differed from the state store'
          : seen.key !== key
            ? 'changed'
            : 'xenstore was changed',
    });
  }

  // ---- frontend lockdown ---------------------------------------------------

  /**
   * Puts each vif of a running clone on the bridge its mask asks for: masked
   * vifs on the isolation bridge, the others on their production bridge
   * (network-detach + network-attach with the same MAC, vifname and devid).
   */
  private async frontend(d: Desired, report: PassReport): Promise<void> {
    const { xl, log, store } = this.o;
    const { vm } = d.clone;
    if (d.lockdown.publication.cloneDomid === undefined || store.runningOperation(vm) !== undefined)
      return;
    const problems: string[] = [];
    let details: Awaited<ReturnType<XlDriver['listLong']>>[number] | undefined;
    try {
      [details] = await xl.listLong(d.clone.cloneName);
    } catch (err) {
      problems.push(`cannot list the clone's vifs: ${errText(err)}`);
    }
    for (const v of details === undefined ? [] : d.lockdown.cloneVifs) {
      const nic = details!.nics.find((n, i) => (n.devid ?? i) === v.devid);
      if (nic === undefined) continue;
      const { masked, bridge: target } = v;
      const current = nic.bridge ?? XL_DEFAULT_BRIDGE;
      if (current === target) continue;
      const where = masked
        ? `it stays on ${current}; the network domain still drops its frames`
        : `it stays on ${current}`;
      if (details!.type === 'hvm' && nic.nictype !== 'vif') {
        problems.push(
          `vif ${v.devid} is an emulated NIC of an HVM guest and cannot be moved while the clone runs; ${where}`,
        );
        continue;
      }
      if (masked && this.manageBridge) {
        try {
          await this.ensureBridge(target, d.lockdown.clonePrefix);
        } catch (err) {
          problems.push(`vif ${v.devid} not moved: ${errText(err)}; ${where}`);
          continue;
        }
      }
      // Its spec as locked now, with the MAC the running clone has (libxl may have made it up).
      const spec = parseVif(v.spec);
      if (nic.mac !== undefined) spec.mac = nic.mac;
      let text: string;
      try {
        text = printVif(spec);
      } catch (err) {
        problems.push(`vif ${v.devid} not moved: ${errText(err)}; ${where}`);
        continue;
      }
      try {
        await xl.networkDetach(d.clone.cloneName, v.devid);
      } catch (err) {
        problems.push(`vif ${v.devid} could not be detached (${errText(err)}); ${where}`);
        continue;
      }
      try {
        await xl.networkAttach(d.clone.cloneName, text);
      } catch (err) {
        problems.push(
          `vif ${v.devid} was detached from ${current} but could not be attached to ${target} ` +
            `(${errText(err)}); the clone has no vif ${v.devid} now`,
        );
        continue;
      }
      report.moved.push({ vm, devid: v.devid, bridge: target });
      log.info(
        masked
          ? 'clone vif moved to the isolation bridge'
          : 'clone vif moved back to its production bridge',
        { vm, clone: d.clone.cloneName, devid: v.devid, vif: v.name, from: current, to: target },
      );
    }
    for (const p of problems) log.warn('frontend lockdown incomplete', { vm, problem: p });
    await this.writeProblems(vm, problems);
  }

  private async writeProblems(vm: string, problems: string[]): Promise<void> {
    // Bounded: a XenStore value holds at most 4096 bytes.
    const kept = problems.slice(0, 8).map((p) => (p.length > 400 ? `${p.slice(0, 400)}...` : p));
    const text = kept.length === 0 ? '' : JSON.stringify(kept);
    if (this.problemsWritten.get(vm) === text) return;
    const node = frontendProblemsNode(vm);
    if (text === '') {
      await this.o.xs.rm(`${vmNode(vm)}/frontend`).catch((err) => {
        if (!isXsErrno(err, 'ENOENT')) throw err;
      });
    } else {
      await this.o.xs.write(node, text);
    }
    this.problemsWritten.set(vm, text);
  }
}
