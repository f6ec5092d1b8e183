/**
 * The clone lifecycle (DESIGN.md sections 3-5): create, start, stop,
 * activate, deactivate, remove, and crash recovery. Every transition is one
 * operation in the state store's journal (one per VM at a time: VM_BUSY), and
 * every step is journaled with its undo before it acts.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type XlDriver, type XlListEntry, vmUuid } from '../../xen/index.js';
import { type EffectiveConfig, cloneNameFor, effectiveConfig } from '../config/config.js';
import { writeFileAtomic } from '../config/index.js';
import type { CloneKind, ZyncloneConfig } from '../config/schema.js';
import { type ZynclonePaths, validateVmName } from '../paths.js';
import type { StateStore } from '../state/store.js';
import type {
  CloneRecord,
  CloneState,
  Json,
  OperationKind,
  OperationRecord,
  Requester,
} from '../state/types.js';
import {
  type BackendChoice,
  type SnapshotPlan,
  type SnapshotRecord,
  type DiskSpec as StorageDisk,
  execute as executeSnapshot,
  parseSnapshotPlan,
  planSnapshot,
  remove as removeSnapshot,
} from '../storage/index.js';
import { assertDisksFree } from '../volumes/attachments.js';
import { VolumeSwitcher } from '../volumes/switch.js';
import { ensureIsolationBridge } from './bridge.js';
import { CloneError } from './errors.js';
import { type CrashPoints, JournaledOperation, type UndoAction } from './journal.js';
import {
  type ClonePlan,
  classifyDisks,
  parseOriginalConfig,
  planClone,
  replicationIn,
  shortIdFor,
} from './plan.js';
import {
  type PublishClient,
  type VmPublication,
  publishVm,
  unpublishVm,
  waitForAck,
} from './publish.js';

export interface ProgressEvent {
  readonly kind: 'step' | 'done' | 'info' | 'warn' | 'progress';
  readonly message: string;
  /** Milliseconds the step took (kind done). */
  readonly ms?: number;
  /** Bytes done and in all (kind progress, e.g. a full copy). */
  readonly done?: number;
  readonly total?: number;
}

export interface LifecycleOptions {
  readonly paths: ZynclonePaths;
  readonly store: StateStore;
  readonly xl: XlDriver;
  /** Connects to XenStore on first use. */
  readonly xs: () => Promise<PublishClient>;
  readonly requestedBy: Requester;
  readonly progress?: (event: ProgressEvent) => void;
  readonly crash?: CrashPoints;
  /**
   * Create the isolation bridge when missing and check it has no uplink.
   * Default: on a real host (root `/`) only; under another root the
   * simulator's network domain makes its bridges itself.
   */
  readonly manageBridge?: boolean;
  /** Reads /proc to detect Remus replication of a VM; tests may replace it. */
  readonly replicationProbe?: (vm: string) => string | undefined;
}

export interface CreateOptions {
  readonly kind?: CloneKind;
  /** Default from config start_on_create. */
  readonly start?: boolean;
  /** The original's xl config file; default <root>/etc/xen/<vm>.cfg (or <vm>, auto/<vm>.cfg). */
  readonly configFile?: string;
}

export interface CreateResult {
  readonly clone: CloneRecord;
  readonly plan: ClonePlan;
  /**
   * How long the original was paused (online and memory clones), in ms: from
   * the pause command's return to the unpause command's return.
   */
  readonly originalPauseMs?: number;
  /** The part of the pause spent between the two xl commands (snapshotting), in ms. */
  readonly originalPauseInnerMs?: number;
  /** From the operation's start until the clone was ready, in ms. */
  readonly totalMs: number;
  readonly warnings: readonly string[];
}

/** Kept next to the clone's xl config: what later transitions publish. */
interface CloneMeta {
  readonly version: 1;
  readonly vm: string;
  readonly cloneName: string;
  readonly cloneUuid: string;
  readonly kind: CloneKind;
  readonly configFile: string;
  readonly originalConfigFile: string;
  readonly cloneVifMask: string;
  readonly originalVifMask: string;
  readonly cloneVifs: readonly { devid: number; name: string; masked: boolean }[];
  readonly originalVifs: readonly { devid: number; vifname: string | null; masked: boolean }[];
  readonly console: { type: 'vnc' | 'spice' | 'none'; enabled: boolean };
  /**
   * A memory clone made with --no-start keeps its memory image here until its
   * first start restores it; later starts cold-boot from the disks.
   */
  readonly saveImage?: string;
}

export interface CloneStatus {
  readonly vm: string;
  readonly clone: CloneRecord | undefined;
  /** The clone's domain as xl lists it now. */
  readonly domain: { domid: number; state: string; paused: boolean } | undefined;
  readonly originalDomain: { domid: number; state: string } | undefined;
  readonly generation: number | undefined;
  readonly ack: number | undefined;
  readonly running: OperationRecord | undefined;
  readonly configFile: string | undefined;
}

export interface RecoveryReport {
  readonly opId: number;
  readonly vm: string;
  readonly kind: OperationKind;
  readonly outcome: 'rolled-back' | 'finished' | 'failed';
  readonly error?: string;
}

const ROLL_BACK: readonly OperationKind[] = ['create', 'start'];

function storageKind(kind: CloneKind): 'offline' | 'online-disk' | 'online-memory' {
  return kind === 'offline' ? 'offline' : kind === 'online' ? 'online-disk' : 'online-memory';
}

function storageBackend(cfg: ZyncloneConfig): BackendChoice {
  return cfg.storage_backend === 'lvm-snapshot' ? 'lvm-classic' : cfg.storage_backend;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function now(): number {
  return performance.now();
}

/** Remus runs as `xl remus <vm> <host>`: look for such a process. */
export function remusProbe(vm: string): string | undefined {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = argv.findIndex((a, j) => a === 'remus' && j > 0 && /(^|\/)xl$/.test(argv[j - 1]!));
    if (i > 0 && argv.slice(i + 1).includes(vm)) {
      return `xl remus (pid ${pid}) replicates it`;
    }
  }
  return undefined;
}

export class CloneLifecycle {
  private xsClient: PublishClient | undefined;

  constructor(private readonly o: LifecycleOptions) {}

  private get store(): StateStore {
    return this.o.store;
  }

  private get xl(): XlDriver {
    return this.o.xl;
  }

  private async xs(): Promise<PublishClient> {
    this.xsClient ??= await this.o.xs();
    return this.xsClient;
  }

  private emit(kind: ProgressEvent['kind'], message: string, ms?: number): void {
    this.o.progress?.(ms === undefined ? { kind, message } : { kind, message, ms });
  }

  /** Runs `fn` as one progress step. */
  private async timed<T>(message: string, fn: () => Promise<T>): Promise<T> {
    this.emit('step', message);
    const t = now();
    const v = await fn();
    this.emit('done', message, now() - t);
    return v;
  }

  // ---- files -------------------------------------------------------------

  get clonesDir(): string {
    return join(this.o.paths.stateDir, 'clones');
  }

  cloneConfigFile(cloneName: string): string {
    return join(this.clonesDir, `${cloneName}.cfg`);
  }

  private metaFile(cloneName: string): string {
    return join(this.clonesDir, `${cloneName}.json`);
  }

  private readMeta(cloneName: string): CloneMeta {
    const file = this.metaFile(cloneName);
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as CloneMeta;
    } catch (err) {
      throw new CloneError(
        'CLONE_CONFIG',
        `cannot read the clone's metadata ${file}: ${errText(err)}; remove the clone and create it again`,
        { cause: err },
      );
    }
  }

  /** The original's xl config file: explicit, or the usual places under the root. */
  findOriginalConfig(vm: string, explicit?: string): string {
    if (explicit !== undefined) {
      if (!existsSync(explicit)) {
        throw new CloneError('CLONE_CONFIG', `xl config file ${explicit} of ${vm} does not exist`);
      }
      return explicit;
    }
    const etc = this.o.paths.resolve('/etc/xen');
    const candidates = [join(etc, `${vm}.cfg`), join(etc, vm), join(etc, 'auto', `${vm}.cfg`)];
    const found = candidates.find((f) => existsSync(f) && statSync(f).isFile());
    if (found === undefined) {
      throw new CloneError(
        'CLONE_CONFIG',
        `no xl config file for VM ${vm} (looked for ${candidates.join(', ')}); pass --config FILE`,
      );
    }
    return found;
  }

  // ---- xl helpers --------------------------------------------------------

  private async findDomain(name: string): Promise<XlListEntry | undefined> {
    const all = await this.xl.list();
    return all.find((d) => d.name === name);
  }

  private async domainUuid(name: string): Promise<string | undefined> {
    try {
      const [d] = await this.xl.listLong(name);
      return d?.uuid;
    } catch (err) {
      if ((err as { code?: string }).code === 'XL_NO_SUCH_DOMAIN') return undefined;
      throw err;
    }
  }

  /** UUID and vif MACs of a running domain, from one `xl list -l`. */
  private async runningDetails(
    name: string,
  ): Promise<{ uuid: string | undefined; macs: Map<number, string> }> {
    const macs = new Map<number, string>();
    try {
      const [d] = await this.xl.listLong(name);
      for (const [i, nic] of (d?.nics ?? []).entries()) {
        if (nic.mac !== undefined) macs.set(nic.devid ?? i, nic.mac);
      }
      return { uuid: d?.uuid, macs };
    } catch (err) {
      if ((err as { code?: string }).code === 'XL_NO_SUCH_DOMAIN') return { uuid: undefined, macs };
      throw err;
    }
  }

  // ---- undo --------------------------------------------------------------

  private async undoAction(u: UndoAction): Promise<void> {
    switch (u.action) {
      case 'rm-file':
        rmSync(u.path, { force: true });
        return;
      case 'unpause': {
        const d = await this.findDomain(u.name);
        if (d === undefined || !d.flags.paused) return;
        if (u.uuid !== null && (await this.domainUuid(u.name)) !== u.uuid) return;
        await this.xl.unpause(u.name);
        return;
      }
      case 'remove-snapshot':
        await removeSnapshot(parseSnapshotPlan(u.plan));
        return;
      case 'destroy-domain': {
        const uuid = await this.domainUuid(u.name);
        // Never destroy a domain we did not make (same name, other UUID).
        if (uuid === undefined || uuid !== u.uuid) return;
        await this.xl.destroy(u.name);
        return;
      }
      case 'unpublish':
        await unpublishVm(await this.xs(), u.vm);
        return;
      case 'republish':
        await publishVm(await this.xs(), u.publication as unknown as VmPublication);
        return;
      case 'delete-clone-record':
        this.store.deleteClone(u.vm);
        return;
      case 'restore-clone-record': {
        const r = u.record as unknown as CloneRecord;
        this.store.putClone({
          vm: r.vm,
          cloneName: r.cloneName,
          cloneUuid: r.cloneUuid,
          cloneDomid: r.cloneDomid,
          state: r.state,
          kind: r.kind,
          sourceUuid: r.sourceUuid,
          snapshots: r.snapshots,
          requestedBy: r.requestedBy,
        });
        return;
      }
    }
  }

  /** Undoes every step of `op` that may have acted, newest first, and ends it rolled back. */
  private async rollBack(op: OperationRecord, reason: string): Promise<void> {
    const fresh = this.store.getOperation(op.id) ?? op;
    for (const step of [...fresh.steps].reverse()) {
      if (step.status === 'undone' || step.undo === null) continue;
      const actions = (Array.isArray(step.undo)
        ? step.undo
        : [step.undo]) as unknown as UndoAction[];
      for (const a of [...actions].reverse()) await this.undoAction(a);
      this.store.undoStep(op.id, step.seq);
    }
    this.store.finishOperation(op.id, 'rolled-back', reason.slice(0, 4000));
  }

  /**
   * Begins an operation on `vm`, runs `body`; on failure rolls back (create,
   * start) and rethrows. The failure of the rollback itself is reported too.
   */
  private async operate<T>(
    vm: string,
    kind: OperationKind,
    params: Json,
    body: (op: JournaledOperation) => Promise<T>,
    existing?: OperationRecord,
  ): Promise<T> {
    const op = new JournaledOperation(
      this.store,
      existing ?? this.store.beginOperation(vm, kind, { requestedBy: this.o.requestedBy, params }),
      this.o.crash,
    );
    try {
      const v = await body(op);
      this.store.finishOperation(op.id, 'done');
      return v;
    } catch (err) {
      try {
        if (ROLL_BACK.includes(kind)) {
          if (op.refresh().steps.length > 0) {
            this.emit('warn', `${kind} of ${vm} failed (${errText(err)}); rolling back`);
          }
          await this.rollBack(op.op, errText(err));
        } else {
          this.store.finishOperation(op.id, 'failed', errText(err));
        }
      } catch (undoErr) {
        const failed = new CloneError(
          'CLONE_FAILED',
          `${kind} of ${vm} failed: ${errText(err)}; and undoing it failed too: ${errText(undoErr)} ` +
            '(the operation stays pending: the next vmclone command retries the rollback)',
          { cause: err },
        );
        throw failed;
      }
      throw err;
    }
  }

  // ---- recovery ----------------------------------------------------------

  /**
   * Adopts every operation whose owner died and finishes it (stop, activate,
   * deactivate, remove: their steps are safe to repeat) or rolls it back
   * (create, start). Called at the start of every vmclone command.
   */
  async recover(): Promise<RecoveryReport[]> {
    const reports: RecoveryReport[] = [];
    for (const stale of this.store.staleOperations()) {
      if (stale.kind === 'switch-volume') continue; // VolumeSwitcher.recover's
      let op: OperationRecord;
      try {
        op = this.store.adoptOperation(stale.id);
      } catch (err) {
        if ((err as { code?: string }).code === 'VM_BUSY') continue; // another process recovers it
        throw err;
      }
      this.emit(
        'info',
        `recovering operation ${op.id} (${op.kind} of ${op.vm}) left by a dead process`,
      );
      try {
        if (ROLL_BACK.includes(op.kind)) {
          await this.rollBack(op, `rolled back after its process (pid ${stale.owner.pid}) died`);
          reports.push({ opId: op.id, vm: op.vm, kind: op.kind, outcome: 'rolled-back' });
        } else {
          await this.redo(op);
          reports.push({ opId: op.id, vm: op.vm, kind: op.kind, outcome: 'finished' });
        }
      } catch (err) {
        reports.push({
          opId: op.id,
          vm: op.vm,
          kind: op.kind,
          outcome: 'failed',
          error: errText(err),
        });
      }
    }
    return reports;
  }

  private async redo(op: OperationRecord): Promise<void> {
    // Steps the dead owner journaled but never completed are repeated below
    // (each is safe to repeat); mark them as interrupted so the journal says so.
    for (const s of op.steps) {
      if (s.status === 'journaled') {
        this.store.failStep(op.id, s.seq, 'interrupted: its process died; repeated by recovery');
      }
    }
    switch (op.kind) {
      case 'remove':
        await this.remove(op.vm, op);
        return;
      case 'stop':
        await this.stop(op.vm, { force: true }, op);
        return;
      case 'activate':
        await this.setLockdownState(op.vm, 'activate', op);
        return;
      case 'deactivate':
        await this.setLockdownState(op.vm, 'deactivate', op);
        return;
      default:
        await this.rollBack(op, 'unexpected operation kind');
    }
  }

  // ---- publication -------------------------------------------------------

  private async publication(
    meta: CloneMeta,
    state: CloneState,
    cloneDomid: number | undefined,
    /** The original's domid when the caller knows it (null: not running); else looked up. */
    originalDomid?: number | null,
  ): Promise<VmPublication> {
    const original =
      originalDomid === undefined
        ? await this.findDomain(meta.vm)
        : originalDomid === null
          ? undefined
          : { domid: originalDomid };
    return {
      vm: meta.vm,
      state,
      cloneName: meta.cloneName,
      cloneDomid,
      originalDomid: original?.domid,
      cloneVifMask: meta.cloneVifMask,
      originalVifMask: meta.originalVifMask,
      cloneVifs: meta.cloneVifs,
      // A vif of a shut-down original has no backend name yet (unless its config
      // names it); clone_monitor republishes when the original starts.
      originalVifs: meta.originalVifs.flatMap((v) => {
        const name = v.vifname ?? (original ? `vif${original.domid}.${v.devid}` : undefined);
        return name === undefined ? [] : [{ devid: v.devid, name, masked: v.masked }];
      }),
      console: meta.console,
    };
  }

  private ackTimeout(vm: string): number {
    return effectiveConfig(vm, this.o.paths).values.lockdown_ack_timeout_ms;
  }

  /**
   * Creates the clone's domain paused, publishes its domid, waits for the net
   * monitor's ack of that generation, then unpauses it. Returns the domid.
   */
  private async bootClone(
    op: JournaledOperation,
    meta: CloneMeta,
    boot: () => Promise<number>,
    bootStep: string,
    originalDomid?: number | null,
  ): Promise<number> {
    if (
      (this.o.manageBridge ?? this.o.paths.root === '/') &&
      meta.cloneVifs.some((v) => v.masked)
    ) {
      const cfg = effectiveConfig(meta.vm, this.o.paths).values;
      await ensureIsolationBridge(cfg.isolation_bridge, cfg.clone_vif_prefix);
    }
    // vmclone refuses a second writer before Xen would (its check misses qdisk and same-UUID domains).
    await assertDisksFree(await this.xs(), readFileSync(meta.configFile, 'utf8'), meta.configFile);
    const domid = await op.step(
      bootStep,
      { name: meta.cloneName, uuid: meta.cloneUuid, config: meta.configFile },
      { action: 'destroy-domain', name: meta.cloneName, uuid: meta.cloneUuid },
      () =>
        this.timed(
          `${bootStep === 'restore-domain' ? 'restoring' : 'creating'} clone domain ${meta.cloneName} (paused)`,
          boot,
        ),
      (d) => ({ domid: d }),
    );
    const pub = await this.publication(meta, 'running', domid, originalDomid);
    const generation = await op.step(
      'publish-domid',
      { generation: 'next', domid },
      null,
      async () => publishVm(await this.xs(), pub),
    );
    const timeout = this.ackTimeout(meta.vm);
    await op.step('wait-ack', { generation, timeoutMs: timeout }, null, () =>
      this.timed(
        `waiting for the network monitor to acknowledge lockdown generation ${generation}`,
        async () => waitForAck(await this.xs(), meta.vm, generation, timeout),
      ),
    );
    await op.step('unpause-clone', { name: meta.cloneName, domid }, null, () =>
      this.timed(`unpausing clone ${meta.cloneName}`, () => this.xl.unpause(meta.cloneName)),
    );
    return domid;
  }

  // ---- create ------------------------------------------------------------

  async create(vm: string, opts: CreateOptions = {}): Promise<CreateResult> {
    validateVmName(vm);
    const eff = effectiveConfig(vm, this.o.paths);
    const cfg = eff.values;
    const kind = opts.kind ?? cfg.clone_kind;
    const start = opts.start ?? cfg.start_on_create;
    const cloneName = cloneNameFor(vm, cfg.clone_name_pattern);
    const params = { kind, start, cloneName } as Json;
    return this.operate(vm, 'create', params, (op) =>
      this.createIn(op, vm, eff, { kind, start, cloneName, configFile: opts.configFile }),
    );
  }

  private async createIn(
    op: JournaledOperation,
    vm: string,
    eff: EffectiveConfig,
    o: { kind: CloneKind; start: boolean; cloneName: string; configFile: string | undefined },
  ): Promise<CreateResult> {
    const t0 = now();
    const cfg = eff.values;
    const warnings: string[] = [];
    const { cloneName } = o;
    let { kind } = o;

    // Refusals first: nothing has been done yet.
    const existing = this.store.getClone(vm);
    if (existing !== undefined) {
      throw new CloneError(
        'CLONE_EXISTS',
        `VM ${vm} already has a clone, ${existing.cloneName} (${existing.state}); remove it first`,
      );
    }
    const taken = this.store.getCloneByName(cloneName);
    if (taken !== undefined) {
      throw new CloneError(
        'CLONE_EXISTS',
        `clone name ${cloneName} is used by the clone of ${taken.vm}`,
      );
    }
    // One `xl list` for every question about domains here: each xl run costs.
    const domains = await this.xl.list();
    if (domains.some((d) => d.name === cloneName)) {
      throw new CloneError(
        'CLONE_EXISTS',
        `a domain named ${cloneName} already exists; remove it or change clone_name_pattern`,
      );
    }
    const originalDomain = domains.find((d) => d.name === vm);
    let originalFile: string;
    try {
      originalFile = this.findOriginalConfig(vm, o.configFile);
    } catch (err) {
      if (originalDomain === undefined) {
        throw new CloneError(
          'VM_NOT_FOUND',
          `VM ${vm} does not exist: no such domain, and ${errText(err)}`,
        );
      }
      throw err;
    }
    const original = parseOriginalConfig(readFileSync(originalFile, 'utf8'), originalFile);
    const originalState =
      originalDomain === undefined ? 'stopped' : originalDomain.flags.paused ? 'paused' : 'running';
    if (kind === 'offline' && originalState !== 'stopped') {
      throw new CloneError(
        'CLONE_REFUSED',
        `an offline clone needs ${vm} shut down, but it is ${originalState}; shut it down first, or use --online or --memory`,
      );
    }
    if (kind === 'memory' && originalState === 'stopped') {
      throw new CloneError(
        'CLONE_REFUSED',
        `a memory clone needs ${vm} running, but it is shut down`,
      );
    }
    if (kind === 'online' && originalState === 'stopped') {
      this.emit('info', `${vm} is shut down: its disks are snapshotted as for an offline clone`);
      kind = 'offline';
    }
    if (kind === 'memory') {
      const why = replicationIn(original) ?? (this.o.replicationProbe ?? remusProbe)(vm);
      if (why !== undefined) {
        throw new CloneError(
          'CLONE_REFUSED',
          `${vm} is under continuous replication (${why}): a memory clone would pause and fork a replicated VM; use --online`,
        );
      }
    }
    const running = originalDomain ? await this.runningDetails(vm) : undefined;
    const originalUuid =
      running?.uuid ??
      (() => {
        try {
          return original.getString('uuid');
        } catch {
          return undefined;
        }
      })();

    // A new UUID whose vif id does not collide with another clone's.
    const others = new Set(
      this.store
        .listClones()
        .map((c) => (c.cloneUuid ? shortIdFor(c.cloneUuid, cfg.clone_vif_prefix) : '')),
    );
    let cloneUuid = randomUUID();
    while (others.has(shortIdFor(cloneUuid, cfg.clone_vif_prefix)) || cloneUuid === originalUuid) {
      cloneUuid = randomUUID();
    }
    vmUuid(cloneUuid);

    // Snapshot plans: all slow probing happens here, before any pause.
    const destDir = this.o.paths.resolve(cfg.storage_dir);
    mkdirSync(destDir, { recursive: true });
    const toSnapshot = classifyDisks(original, cfg).filter((d) => d.action === 'snapshot');
    const plans: SnapshotPlan[] = [];
    for (const d of toSnapshot) {
      const target = d.spec.target!;
      let isBlock = false;
      try {
        isBlock = statSync(target).isBlockDevice();
      } catch {
        // planSnapshot reports a missing source.
      }
      const disk: StorageDisk = {
        target,
        format: (d.spec.format ?? 'raw') as StorageDisk['format'],
        vdev: d.spec.vdev!,
        kind: isBlock ? 'phy' : 'file',
      };
      plans.push(
        await planSnapshot(disk, {
          kind: storageKind(kind),
          originalState,
          cloneName,
          backend: storageBackend(cfg),
          destDir,
        }),
      );
    }
    const plan = planClone({
      vm,
      original,
      config: cfg,
      kind,
      cloneName,
      cloneUuid,
      ...(originalUuid === undefined ? {} : { originalUuid }),
      snapshots: plans.map((p) => ({ vdev: p.vdev, dest: p.dest, format: p.format })),
      runningMacs: running?.macs ?? new Map(),
    });
    warnings.push(...plan.warnings);
    for (const w of plan.warnings) this.emit('warn', w);
    if (plan.removedPeripherals.length > 0) {
      this.emit(
        'info',
        `peripheral lockdown: removed ${plan.removedPeripherals.join(', ')} from the clone`,
      );
    }

    const configFile = this.cloneConfigFile(cloneName);
    const saveFile = join(this.o.paths.resolve(cfg.save_image_dir), `${cloneName}.save`);
    const meta: CloneMeta = {
      version: 1,
      vm,
      cloneName,
      cloneUuid,
      kind,
      configFile,
      originalConfigFile: originalFile,
      cloneVifMask: plan.cloneVifMask,
      originalVifMask: plan.originalVifMask,
      cloneVifs: plan.cloneVifs.map((v) => ({ devid: v.devid, name: v.name, masked: v.masked })),
      originalVifs: plan.originalVifs.map((v) => ({
        devid: v.devid,
        vifname: v.vifname ?? null,
        masked: v.masked,
      })),
      console: plan.console,
      ...(kind === 'memory' && !o.start ? { saveImage: saveFile } : {}),
    };
    await op.step(
      'plan',
      {
        kind,
        cloneName,
        cloneUuid,
        originalConfig: originalFile,
        originalState,
        snapshots: plans as unknown as Json,
        removedPeripherals: [...plan.removedPeripherals],
      },
      null,
      async () => {},
    );
    await op.step(
      'write-config',
      { configFile, metaFile: this.metaFile(cloneName) },
      [
        { action: 'rm-file', path: configFile },
        { action: 'rm-file', path: this.metaFile(cloneName) },
      ],
      async () => {
        mkdirSync(this.clonesDir, { recursive: true });
        writeFileAtomic(configFile, plan.configText);
        writeFileAtomic(this.metaFile(cloneName), `${JSON.stringify(meta, null, 2)}\n`);
      },
    );

    // Snapshot the disks (inside the original's pause for online and memory clones).
    let originalPauseMs: number | undefined;
    let originalPauseInnerMs: number | undefined;
    let records: SnapshotRecord[] = [];
    const snapshotUndo: UndoAction[] = plans.map((p) => ({
      action: 'remove-snapshot',
      plan: p as unknown as Json,
    }));
    const snapAll = async (state: 'stopped' | 'paused') => {
      const done: SnapshotRecord[] = [];
      for (const p of plans) {
        done.push(
          await executeSnapshot(p, {
            originalState: state,
            onProgress: (pr) =>
              this.o.progress?.({
                kind: 'progress',
                message: `copying ${pr.vdev}`,
                done: pr.bytesDone,
                total: pr.bytesTotal,
              }),
          }),
        );
      }
      return done;
    };
    const originalUuidOrNull = originalUuid ?? null;
    if (kind === 'offline') {
      records = await op.step(
        'snapshot',
        { disks: plans.length },
        snapshotUndo,
        () => this.timed(`snapshotting ${plans.length} disk(s) of ${vm}`, () => snapAll('stopped')),
        (r) => r as unknown as Json,
      );
    } else if (kind === 'online') {
      // One journal write before the pause and none inside it keeps the pause short.
      const wePause = originalState === 'running';
      const undo: UndoAction[] = wePause
        ? [{ action: 'unpause', name: vm, uuid: originalUuidOrNull }, ...snapshotUndo]
        : snapshotUndo;
      records = await op.step(
        'pause-snapshot',
        { pause: wePause, disks: plans.length },
        undo,
        () =>
          this.timed(`pausing ${vm} and snapshotting ${plans.length} disk(s)`, async () => {
            if (wePause) await this.xl.pause(vm);
            const tp = now();
            try {
              return await snapAll('paused');
            } finally {
              if (wePause) {
                originalPauseInnerMs = now() - tp;
                await this.xl.unpause(vm);
                originalPauseMs = now() - tp;
              }
            }
          }),
        (r) => r as unknown as Json,
      );
      if (originalPauseMs !== undefined) {
        this.emit('info', `${vm} was paused for ${originalPauseMs.toFixed(1)} ms`);
      }
    } else {
      mkdirSync(dirname(saveFile), { recursive: true });
      let tp = 0;
      await op.step(
        'save-original',
        { saveFile },
        [
          { action: 'unpause', name: vm, uuid: originalUuidOrNull },
          { action: 'rm-file', path: saveFile },
        ],
        () =>
          this.timed(`saving ${vm}'s memory (xl save -p)`, async () => {
            tp = now();
            await this.xl.save(vm, saveFile, { paused: true });
          }),
      );
      try {
        records = await op.step(
          'snapshot',
          { disks: plans.length },
          snapshotUndo,
          () =>
            this.timed(`snapshotting ${plans.length} disk(s) of ${vm}`, () => snapAll('paused')),
          (r) => r as unknown as Json,
        );
      } finally {
        // The original must never stay paused because the clone failed.
        await op.step('unpause-original', { name: vm }, null, async () => {
          await this.undoAction({ action: 'unpause', name: vm, uuid: originalUuidOrNull });
          originalPauseMs = now() - tp;
        });
      }
      this.emit('info', `${vm} was paused for ${originalPauseMs!.toFixed(1)} ms`);
      const state: CloneState = o.start ? 'running' : 'active';
      const pub = await this.publication(meta, state, undefined, originalDomain?.domid ?? null);
      await op.step('publish', { generation: 'next' }, { action: 'unpublish', vm }, async () =>
        publishVm(await this.xs(), pub),
      );
      let domid: number | undefined;
      if (o.start) {
        domid = await this.bootClone(
          op,
          meta,
          () => this.xl.restore(saveFile, { paused: true, cfgPath: configFile }),
          'restore-domain',
          originalDomain?.domid ?? null,
        );
        await op.step('remove-save-image', { saveFile }, null, async () =>
          rmSync(saveFile, { force: true }),
        );
      }
      return this.finishCreate(
        op,
        meta,
        state,
        domid,
        records,
        originalUuid,
        originalPauseMs,
        t0,
        warnings,
        plan,
      );
    }

    const state: CloneState = o.start ? 'running' : 'active';
    const pub = await this.publication(meta, state, undefined, originalDomain?.domid ?? null);
    await op.step('publish', { generation: 'next', state }, { action: 'unpublish', vm }, async () =>
      publishVm(await this.xs(), pub),
    );
    let domid: number | undefined;
    if (o.start) {
      domid = await this.bootClone(
        op,
        meta,
        () => this.xl.create(configFile, { paused: true }),
        'create-domain',
        originalDomain?.domid ?? null,
      );
    }
    const result = await this.finishCreate(
      op,
      meta,
      state,
      domid,
      records,
      originalUuid,
      originalPauseMs,
      t0,
      warnings,
      plan,
    );
    return originalPauseInnerMs === undefined ? result : { ...result, originalPauseInnerMs };
  }

  private async finishCreate(
    op: JournaledOperation,
    meta: CloneMeta,
    state: CloneState,
    domid: number | undefined,
    records: SnapshotRecord[],
    originalUuid: string | undefined,
    originalPauseMs: number | undefined,
    t0: number,
    warnings: string[],
    plan: ClonePlan,
  ): Promise<CreateResult> {
    const clone = await op.step(
      'record',
      { state, domid: domid ?? null },
      { action: 'delete-clone-record', vm: meta.vm },
      async () =>
        this.store.putClone({
          vm: meta.vm,
          cloneName: meta.cloneName,
          cloneUuid: meta.cloneUuid,
          cloneDomid: domid ?? null,
          state,
          kind: meta.kind,
          sourceUuid: originalUuid ?? '',
          snapshots: records as unknown as Json[],
          requestedBy: this.o.requestedBy,
        }),
    );
    return {
      clone,
      plan,
      ...(originalPauseMs === undefined ? {} : { originalPauseMs }),
      totalMs: now() - t0,
      warnings,
    };
  }

  // ---- transitions -------------------------------------------------------

  private requireClone(vm: string): CloneRecord {
    validateVmName(vm);
    const c = this.store.getClone(vm);
    if (c === undefined) throw new CloneError('CLONE_NOT_FOUND', `VM ${vm} has no clone`);
    return c;
  }

  private refuseState(
    c: CloneRecord,
    what: string,
    allowed: readonly CloneState[],
    hint: string,
  ): void {
    if (!allowed.includes(c.state)) {
      throw new CloneError(
        'CLONE_STATE',
        `cannot ${what} the clone of ${c.vm}: it is ${c.state} (${what} needs ${allowed.join(' or ')}); ${hint}`,
      );
    }
  }

  /** active|inactive -> running: boots the clone paused, waits for the lockdown ack, unpauses. */
  async start(vm: string): Promise<CloneRecord> {
    const c = this.requireClone(vm);
    return this.operate(vm, 'start', { cloneName: c.cloneName }, async (op) => {
      const cur = this.requireClone(vm);
      this.refuseState(cur, 'start', ['active', 'inactive'], 'it is already running');
      const meta = this.readMeta(cur.cloneName);
      if ((await this.findDomain(cur.cloneName)) !== undefined) {
        throw new CloneError('CLONE_EXISTS', `a domain named ${cur.cloneName} already exists`);
      }
      const before = await this.publication(meta, cur.state, undefined);
      const pub = await this.publication(meta, 'running', undefined);
      await op.step(
        'publish',
        { state: 'running' },
        { action: 'republish', publication: before as unknown as Json },
        async () => publishVm(await this.xs(), pub),
      );
      const image =
        meta.saveImage !== undefined && existsSync(meta.saveImage) ? meta.saveImage : undefined;
      const domid = await this.bootClone(
        op,
        meta,
        () =>
          image === undefined
            ? this.xl.create(meta.configFile, { paused: true })
            : this.xl.restore(image, { paused: true, cfgPath: meta.configFile }),
        image === undefined ? 'create-domain' : 'restore-domain',
      );
      if (image !== undefined) {
        // Restored once; from now on the clone cold-boots from its disks.
        await op.step('remove-save-image', { saveFile: image }, null, async () =>
          rmSync(image, { force: true }),
        );
      }
      return op.step(
        'record',
        { state: 'running', domid },
        { action: 'restore-clone-record', record: cur as unknown as Json },
        async () => this.store.updateClone(vm, { state: 'running', cloneDomid: domid }),
      );
    });
  }

  /** running -> active: shuts the clone down (destroys it after `timeoutMs`, at once with force). */
  async stop(
    vm: string,
    opts: { force?: boolean; timeoutMs?: number } = {},
    existing?: OperationRecord,
  ): Promise<CloneRecord> {
    const c = this.requireClone(vm);
    return this.operate(
      vm,
      'stop',
      { force: opts.force ?? false },
      async (op) => {
        const cur = this.requireClone(vm);
        if (existing === undefined) this.refuseState(cur, 'stop', ['running'], 'it is not running');
        const meta = this.readMeta(cur.cloneName);
        await op.step('stop-domain', { name: c.cloneName, force: opts.force ?? false }, null, () =>
          this.timed(`stopping clone ${c.cloneName}`, () => this.stopDomain(meta, opts)),
        );
        const pub = await this.publication(meta, 'active', undefined);
        await op.step('publish', { state: 'active' }, null, async () =>
          publishVm(await this.xs(), pub),
        );
        return op.step('record', { state: 'active' }, null, async () =>
          this.store.updateClone(vm, { state: 'active', cloneDomid: null }),
        );
      },
      existing,
    );
  }

  private async stopDomain(
    meta: CloneMeta,
    opts: { force?: boolean; timeoutMs?: number },
  ): Promise<void> {
    const uuid = await this.domainUuid(meta.cloneName);
    if (uuid === undefined) return;
    if (uuid !== meta.cloneUuid) {
      throw new CloneError(
        'CLONE_STATE',
        `domain ${meta.cloneName} has UUID ${uuid}, not the clone's ${meta.cloneUuid}; not touching it`,
      );
    }
    if (!opts.force) {
      try {
        await this.xl.shutdown(meta.cloneName, { wait: true, timeoutMs: opts.timeoutMs ?? 60_000 });
        return;
      } catch (err) {
        if ((err as { code?: string }).code === 'XL_NO_SUCH_DOMAIN') return;
        this.emit(
          'warn',
          `clean shutdown of ${meta.cloneName} failed (${errText(err)}); destroying it`,
        );
      }
    }
    await this.undoAction({ action: 'destroy-domain', name: meta.cloneName, uuid: meta.cloneUuid });
  }

  async activate(vm: string): Promise<CloneRecord> {
    return this.setLockdownState(vm, 'activate');
  }

  async deactivate(vm: string): Promise<CloneRecord> {
    return this.setLockdownState(vm, 'deactivate');
  }

  /** inactive -> active (lockdowns enforced, acknowledged) and active -> inactive (lifted). */
  private async setLockdownState(
    vm: string,
    what: 'activate' | 'deactivate',
    existing?: OperationRecord,
  ): Promise<CloneRecord> {
    this.requireClone(vm);
    const target: CloneState = what === 'activate' ? 'active' : 'inactive';
    return this.operate(
      vm,
      what,
      {},
      async (op) => {
        const cur = this.requireClone(vm);
        if (existing === undefined) {
          this.refuseState(
            cur,
            what,
            what === 'activate' ? ['inactive'] : ['active'],
            what === 'activate'
              ? 'it is already active or running'
              : cur.state === 'running'
                ? 'stop it first'
                : 'it is already inactive',
          );
        }
        const meta = this.readMeta(cur.cloneName);
        const pub = await this.publication(meta, target, undefined);
        const generation = await op.step('publish', { state: target }, null, async () =>
          publishVm(await this.xs(), pub),
        );
        if (what === 'activate') {
          const timeout = this.ackTimeout(vm);
          await op.step('wait-ack', { generation, timeoutMs: timeout }, null, () =>
            this.timed('waiting for the network monitor to acknowledge the lockdown', async () =>
              waitForAck(await this.xs(), vm, generation, timeout),
            ),
          );
        }
        return op.step('record', { state: target }, null, async () =>
          this.store.updateClone(vm, { state: target, cloneDomid: null }),
        );
      },
      existing,
    );
  }

  /**
   * Removes the clone from any state: its domain, volumes, files and record,
   * and lifts its lockdowns. Safe to repeat; also cleans up after a crash.
   */
  async remove(vm: string, existing?: OperationRecord): Promise<{ removed: boolean }> {
    validateVmName(vm);
    return this.operate(
      vm,
      'remove',
      {},
      async (op) => {
        const c = this.store.getClone(vm);
        if (c === undefined) {
          // Nothing recorded; still lift a lockdown left behind.
          await op.step('unpublish', { vm }, null, async () => unpublishVm(await this.xs(), vm));
          return { removed: false };
        }
        const meta = existsSync(this.metaFile(c.cloneName))
          ? this.readMeta(c.cloneName)
          : undefined;
        await op.step('destroy-domain', { name: c.cloneName }, null, () =>
          this.timed(`destroying clone domain ${c.cloneName}`, async () => {
            if (c.cloneUuid !== null) {
              await this.undoAction({
                action: 'destroy-domain',
                name: c.cloneName,
                uuid: c.cloneUuid,
              });
            }
          }),
        );
        await op.step('unpublish', { vm }, null, async () => unpublishVm(await this.xs(), vm));
        await op.step('return-volumes', { vm }, null, () =>
          new VolumeSwitcher(this.o).returnToOriginal(vm),
        );
        for (const s of c.snapshots) {
          const plan = parseSnapshotPlan(s);
          await op.step(`remove-snapshot:${plan.vdev}`, { dest: plan.dest }, null, () =>
            this.timed(`removing volume ${plan.dest}`, () => removeSnapshot(plan)),
          );
        }
        const files = [
          ...(meta?.saveImage === undefined ? [] : [meta.saveImage]),
          meta?.configFile ?? this.cloneConfigFile(c.cloneName),
          this.metaFile(c.cloneName),
        ];
        await op.step('remove-files', { files }, null, async () => {
          for (const f of files) rmSync(f, { force: true });
        });
        await op.step('delete-record', { vm }, null, async () => this.store.deleteClone(vm));
        return { removed: true };
      },
      existing,
    );
  }

  // ---- reads -------------------------------------------------------------

  list(): CloneRecord[] {
    return this.store.listClones();
  }

  async status(vm: string): Promise<CloneStatus> {
    validateVmName(vm);
    const clone = this.store.getClone(vm);
    const domains = await this.xl.list().catch(() => [] as XlListEntry[]);
    const d = clone ? domains.find((x) => x.name === clone.cloneName) : undefined;
    const orig = domains.find((x) => x.name === vm);
    let generation: number | undefined;
    let ack: number | undefined;
    try {
      const xs = await this.xs();
      const g = await xs.tryRead(`/tool/zynclone/vm/${vm}/generation`);
      const a = await xs.tryRead(`/tool/zynclone/net/ack/${vm}`);
      generation = g === undefined ? undefined : Number(g);
      ack = a === undefined ? undefined : Number(a);
    } catch {
      // XenStore unreachable: status shows what the store knows.
    }
    return {
      vm,
      clone,
      domain: d ? { domid: d.domid, state: d.state, paused: d.flags.paused } : undefined,
      originalDomain: orig ? { domid: orig.domid, state: orig.state } : undefined,
      generation,
      ack,
      running: this.store.runningOperation(vm),
      configFile: clone ? this.cloneConfigFile(clone.cloneName) : undefined,
    };
  }
}
