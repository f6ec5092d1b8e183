import {
  type LockdownPlan,
  type NftSets,
  type VmInput,
  type VmPlan,
  appliedRecord,
  diffSets,
  planLockdown,
} from '../../core/lockdown/nft-plan.js';
import {
  NFT_FAMILIES,
  type NftFamily,
  type NftTableSpec,
  renderCreateScript,
  renderDiffScript,
  renderReconcileScript,
} from '../../core/lockdown/nft-script.js';
import {
  ACK_ROOT,
  APPLIED_ROOT,
  RULESET_GENERATION_NODE,
  VM_ROOT,
  ackNode,
  appliedNode,
  readPublishedVm,
  readPublishedVms,
  vmOfPath,
} from '../../core/xenstore/index.js';
import { type XsClient, type XsWatch, isXsErrno } from '../../xenstore/index.js';
import type { DaemonLogger } from '../common/log.js';
// The net monitor's loop: XenStore `vm/` -> planned sets -> one nftables
// transaction -> acknowledgements in `net/`.
//
// Order of duties, each chosen to fail closed:
// 1. Before XenStore is reached, the table exists (created with empty sets if
//    missing; left untouched if present, so the last lockdown holds).
// 2. A full pass (start, and every watch resync after a reconnect) reads all
//    of `vm/` and rewrites the sets in one transaction.
// 3. A watch event marks its VM dirty; dirty VMs are re-read and only the set
//    differences are applied. Events that arrive while a pass runs are
//    batched into the next one, so bursts coalesce without a timer delay.
// 4. Only after nftables has committed is a generation acknowledged.
// Nothing ever flushes the table; stopping leaves it as it is.
import { PassScheduler } from '../common/pass-scheduler.js';
import type { NftExecutor } from './nft-exec.js';

export interface NetMonitorOptions {
  xs: XsClient;
  nft: NftExecutor;
  spec: NftTableSpec;
  log: DaemonLogger;
}

export interface PassStats {
  full: boolean;
  /** The transaction that ran: 'reconcile', 'diff', or 'none' when the sets were already right. */
  nft: 'reconcile' | 'diff' | 'none';
  nftMs: number;
  totalMs: number;
  acked: number;
}

const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 5000;

/** Which families already hold the table; the rest must be created. */
export async function missingFamilies(nft: NftExecutor, table: string): Promise<NftFamily[]> {
  const { stdout } = await nft.run('list tables');
  const present = new Set(stdout.split('\n').map((l) => l.trim()));
  return NFT_FAMILIES.filter((f) => !present.has(`table ${f} ${table}`));
}

/** Creates the table where it is missing; never touches an existing one. */
export async function ensureTable(nft: NftExecutor, spec: NftTableSpec): Promise<NftFamily[]> {
  const missing = await missingFamilies(nft, spec.table);
  const script = renderCreateScript(spec, missing);
  if (script) await nft.run(script);
  return missing;
}

export class NetMonitor {
  private readonly xs: XsClient;
  private readonly nft: NftExecutor;
  private readonly spec: NftTableSpec;
  private readonly log: DaemonLogger;
  private readonly vms = new Map<string, VmInput>();
  /** What the kernel holds, as far as we know; undefined = unknown, reconcile fully. */
  private applied: NftSets | undefined;
  /** Per VM, the `applied` JSON last written with its ack. */
  private readonly acked = new Map<string, string>();
  private readonly passes: PassScheduler;
  private rulesetGeneration: number | undefined;
  private watch: XsWatch | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;
  private readonly passListeners = new Set<(s: PassStats) => void>();

  constructor(opts: NetMonitorOptions) {
    this.xs = opts.xs;
    this.nft = opts.nft;
    this.spec = opts.spec;
    this.log = opts.log;
    this.passes = new PassScheduler({
      pass: (full, dirty) => this.pass(full, dirty),
      // Keep whatever nftables holds; try again from a full read later.
      onError: (err, retryMs) =>
        this.log.error('lockdown pass failed; keeping the current ruleset and retrying', {
          error: err,
          retryMs,
        }),
      retryMinMs: RETRY_MIN_MS,
      retryMaxMs: RETRY_MAX_MS,
    });
  }

  /** Called after every pass that changed something or acknowledged something. */
  onPass(listener: (s: PassStats) => void): () => void {
    this.passListeners.add(listener);
    return () => this.passListeners.delete(listener);
  }

  async start(): Promise<void> {
    this.watch = await this.xs.watch(VM_ROOT);
    this.loop = this.consume(this.watch);
    this.passes.markFull();
  }

  /** Stops watching; the table stays exactly as last applied. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.watch?.close().catch(() => {});
    await this.loop;
    await this.passes.stop();
  }

  /** Resolves once no pass is running or pending (for tests and benchmarks). */
  idle(): Promise<void> {
    return this.passes.idle();
  }

  private async consume(watch: XsWatch): Promise<void> {
    try {
      for await (const item of watch) {
        if (item.kind === 'resync') {
          this.log.info('xenstore reconnected: full reconcile');
          this.passes.markFull();
        } else {
          const vm = vmOfPath(item.path);
          if (vm === undefined) this.passes.markFull();
          else this.passes.markDirty(vm);
        }
      }
    } catch (err) {
      if (!this.stopped) this.log.error('watch ended', { error: err });
    }
  }

  private async pass(full: boolean, dirty: string[]): Promise<void> {
    const t0 = performance.now();
    if (full) {
      const all = await readPublishedVms(this.xs);
      this.vms.clear();
      for (const vm of all) this.vms.set(vm.vm, vm);
    } else {
      const read = await Promise.all(dirty.map((vm) => readPublishedVm(this.xs, vm)));
      dirty.forEach((name, i) => {
        const vm = read[i];
        if (vm) this.vms.set(name, vm);
        else this.vms.delete(name);
      });
    }
    const plan = planLockdown([...this.vms.values()], { cloneVifPrefix: this.spec.cloneVifPrefix });

    const t1 = performance.now();
    const kind = await this.apply(plan, full);
    const t2 = performance.now();

    if (this.rulesetGeneration === undefined) {
      const raw = await this.xs.tryRead(RULESET_GENERATION_NODE);
      this.rulesetGeneration = raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : 0;
    }
    const writes: Promise<unknown>[] = [];
    if (kind !== 'none') {
      this.rulesetGeneration++;
      // Issued first: whoever sees a new ack sees at least this generation.
      writes.push(this.xs.write(RULESET_GENERATION_NODE, String(this.rulesetGeneration)));
    }
    const acked = this.acknowledge(plan.vms, full, writes);
    if (full) writes.push(this.removeStaleAcks(new Set(this.vms.keys())));
    else {
      for (const name of dirty) if (!this.vms.has(name)) writes.push(this.forget(name));
    }
    await Promise.all(writes);

    for (const vm of plan.vms) {
      if (vm.problems.length > 0) {
        this.log.warn('lockdown request not fully honoured', { vm: vm.vm, problems: vm.problems });
      }
    }
    const stats: PassStats = {
      full,
      nft: kind,
      nftMs: t2 - t1,
      totalMs: performance.now() - t0,
      acked,
    };
    if (kind !== 'none' || acked > 0) {
      this.log.debug('lockdown applied', { ...stats, ruleset: this.rulesetGeneration });
    }
    for (const l of this.passListeners) l(stats);
  }

  private async apply(plan: LockdownPlan, full: boolean): Promise<PassStats['nft']> {
    if (!full && this.applied !== undefined) {
      const script = renderDiffScript(this.spec, diffSets(this.applied, plan.sets));
      if (script === '') return 'none';
      try {
        await this.nft.run(script);
        this.applied = plan.sets;
        return 'diff';
      } catch (err) {
        // Someone changed the sets behind our back (a delete of a missing element fails):
        // the reconcile below puts them right in one transaction.
        this.log.warn('incremental nft update failed; reconciling the whole table', { error: err });
      }
    }
    this.applied = undefined;
    await this.nft.run(renderReconcileScript(this.spec, plan.sets));
    this.applied = plan.sets;
    return 'reconcile';
  }

  /** Queues ack writes for every VM whose applied record changed (all on a full pass). */
  private acknowledge(vms: VmPlan[], full: boolean, writes: Promise<unknown>[]): number {
    let n = 0;
    for (const vm of vms) {
      if (!vm.complete || vm.generation === undefined) continue;
      const json = JSON.stringify(appliedRecord({ ...vm, generation: vm.generation }));
      if (!full && this.acked.get(vm.vm) === json) continue;
      n++;
      // applied before ack, on one connection: a reader of the new ack finds its record.
      writes.push(this.xs.write(appliedNode(vm.vm), json));
      writes.push(
        this.xs.write(ackNode(vm.vm), String(vm.generation)).then(() => {
          this.acked.set(vm.vm, json);
        }),
      );
    }
    return n;
  }

  /**
   * A removed clone's ack must go: a later clone of the same VM may count its
   * generations from 1 again, and an old, higher ack would let it run unlocked.
   */
  private async forget(vm: string): Promise<void> {
    this.acked.delete(vm);
    await Promise.all([
      this.xs.rm(ackNode(vm)).catch(ignoreEnoent),
      this.xs.rm(appliedNode(vm)).catch(ignoreEnoent),
    ]);
  }

  private async removeStaleAcks(live: Set<string>): Promise<void> {
    const listed = await Promise.all(
      [ACK_ROOT, APPLIED_ROOT].map((dir) => this.xs.directory(dir).catch(emptyOnEnoent)),
    );
    const stale = new Set(listed.flat().filter((vm) => !live.has(vm)));
    await Promise.all([...stale].map((vm) => this.forget(vm)));
  }
}

function ignoreEnoent(err: unknown): void {
  if (!isXsErrno(err, 'ENOENT')) throw err;
}

function emptyOnEnoent(err: unknown): string[] {
  if (isXsErrno(err, 'ENOENT')) return [];
  throw err;
}
