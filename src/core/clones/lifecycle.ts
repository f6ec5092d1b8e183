/**
 * The clone lifecycle (DESIGN.md sections 3-5): create, start, stop,
 * activate, deactivate, remove, and crash recovery. Every transition is one
 * operation in the state store's journal (one per VM at a time: VM_BUSY), and
 * every step is journaled with its undo before it acts.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type XlDriver, type XlListEntry, parseVif, vmUuid } from '../../xen/index.js';
import { type EffectiveConfig, cloneNameFor, effectiveConfig } from '../config/config.js';
import { writeFileAtomic } from '../config/index.js';
import type { CloneKind, ZyncloneConfig } from '../config/schema.js';
import { type VmName, type ZynclonePaths, validateVmName } from '../paths.js';
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
  type SnapshotRecord,
  execute as executeSnapshot,
  parseSnapshotPlan,
  remove as removeSnapshot,
} from '../storage/index.js';
import { assertDisksFree } from '../volumes/attachments.js';
import { VolumeSwitcher } from '../volumes/switch.js';
import { ensureIsolationBridge, refuseProductionBridge } from './bridge.js';
import { CloneError } from './errors.js';
import { type CrashPoints, JournaledOperation, type UndoAction } from './journal.js';
import { type LiveSaver, helperLiveSaver } from './live-save.js';
import {
  type CloneLockdown,
  type LiveDomains,
  cloneLockdown,
  configOrError,
  currentLockdown,
  liveDomains,
  lockedCloneConfig,
} from './lockdown.js';
import {
  type MemoryCopy,
  copyMemoryLive,
  describeLiveCopy,
  liveHelperChoice,
} from './memory-copy.js';
import {
  type CloneMeta,
  cloneConfigFile,
  cloneMetaFile,
  clonesDir,
  readCloneMeta,
  writeCloneMeta,
} from './meta.js';
import { findOriginalConfig, planDiskSnapshots, remusProbe } from './original.js';
import { type UndoContext, domainUuid, rollBack, runUndo } from './undo.js';

export { remusProbe };
import {
  type ClonePlan,
  XL_DEFAULT_BRIDGE,
  originalVifsOf,
  parseOriginalConfig,
  planClone,
  replicationIn,
  shortIdFor,
} from './plan.js';
import { type PublishClient, publishVm, unpublishVm, waitForAck } from './publish.js';

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
  /** Runs the live save helper at a path; tests may replace it. */
  readonly liveSaver?: (helper: string) => LiveSaver;
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
  /** Memory clones: live pre-copy or xl save -p, and why. */
  readonly memoryCopy?: MemoryCopy;
  /** From the operation's start until the clone was ready, in ms. */
  readonly totalMs: number;
  readonly warnings: readonly string[];
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
  /** Why the state changed without an operation (the domain went away outside ZynClone). */
  readonly note: string | undefined;
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
    return clonesDir(this.o.paths);
  }

  cloneConfigFile(cloneName: string): string {
    return cloneConfigFile(this.o.paths, cloneName);
  }

  private readMeta(cloneName: string): CloneMeta {
    return readCloneMeta(this.o.paths, cloneName);
  }

  /** The original's xl config file: explicit, or the usual places under the root. */
  findOriginalConfig(vm: string, explicit?: string): string {
    return findOriginalConfig(this.o.paths, vm, explicit);
  }

  // ---- xl helpers --------------------------------------------------------

  /** UUID, vif MACs and vif names of a running domain, from one `xl list -l`. */
  private async runningDetails(name: string): Promise<{
    uuid: string | undefined;
    macs: Map<number, string>;
    nics: { devid: number; vifname: string | undefined }[];
  }> {
    const macs = new Map<number, string>();
    try {
      const [d] = await this.xl.listLong(name);
      const nics = (d?.nics ?? []).map((nic, i) => {
        if (nic.mac !== undefined) macs.set(nic.devid ?? i, nic.mac);
        return { devid: nic.devid ?? i, vifname: nic.vifname };
      });
      return { uuid: d?.uuid, macs, nics };
    } catch (err) {
      if ((err as { code?: string }).code === 'XL_NO_SUCH_DOMAIN') {
        return { uuid: undefined, macs, nics: [] };
      }
      throw err;
    }
  }

  // ---- undo (undo.ts) ---------------------------------------------------

  private undoContext(): UndoContext {
    return {
      xl: this.xl,
      store: this.store,
      xs: () => this.xs(),
      liveSaver: this.o.liveSaver,
    };
  }

  private undoAction(u: UndoAction): Promise<void> {
    return runUndo(this.undoContext(), u);
  }

  private rollBack(op: OperationRecord, reason: string): Promise<void> {
    return rollBack(this.undoContext(), op, reason);
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
  async recover(
    /** Operations this process adopted before and failed to recover: tried again. */
    retry: readonly number[] = [],
  ): Promise<RecoveryReport[]> {
    const reports: RecoveryReport[] = [];
    const again = retry.flatMap((id) => {
      const op = this.store.getOperation(id);
      return op?.status === 'running' ? [op] : [];
    });
    for (const stale of [...this.store.staleOperations(), ...again]) {
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
    try {
      await this.reconcile();
    } catch (err) {
      // Never in the way of a command: the next one (or clone_monitor) tries again.
      this.emit('warn', `cannot compare the clones with the live domains: ${errText(err)}`);
    }
    return reports;
  }

  /**
   * A clone recorded running whose domain is gone (`xl destroy` behind
   * ZynClone's back, or its guest powered off) is active now: its lockdowns
   * stay, and it can be started again. Runs with recover(), i.e. before every
   * vmclone command and in clone_monitor. Returns the notes it left.
   */
  async reconcile(): Promise<string[]> {
    const running = this.store.listClones().filter((c) => c.state === 'running');
    if (running.length === 0) return [];
    // Listed after the records were read: a clone recorded running by then has its domain.
    const names = new Set((await this.xl.list()).map((d) => d.name));
    const notes: string[] = [];
    for (const c of running) {
      if (names.has(c.cloneName) || this.store.runningOperation(c.vm) !== undefined) continue;
      const now = this.store.getClone(c.vm);
      if (now?.state !== 'running' || now.updatedAt !== c.updatedAt) continue;
      const note = `clone ${c.cloneName} was running but its domain is gone (destroyed or shut down outside ZynClone); it is active now: vmclone start ${c.vm} boots it again`;
      this.store.updateClone(c.vm, { state: 'active', cloneDomid: null });
      this.store.recordAudit({
        who: this.o.requestedBy,
        action: 'reconcile',
        vm: c.vm,
        outcome: 'active',
        detail: { note },
      });
      this.emit('warn', note);
      notes.push(note);
      try {
        const meta = this.readMeta(c.cloneName);
        await publishVm(await this.xs(), (await this.lockdownOf(meta, 'active')).publication);
      } catch (err) {
        // clone_monitor publishes it from the store; say why this could not.
        this.emit('warn', `could not publish the clone of ${c.vm} as active: ${errText(err)}`);
      }
    }
    return notes;
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

  // ---- lockdown ----------------------------------------------------------

  /** The clone's lockdown in `state` as the configuration and the domains demand now. */
  private lockdownOf(meta: CloneMeta, state: CloneState): Promise<CloneLockdown> {
    return currentLockdown(this.o, meta, state);
  }

  private ackTimeout(vm: string): number {
    return effectiveConfig(vm, this.o.paths).values.lockdown_ack_timeout_ms;
  }

  /**
   * Creates the clone's domain paused (its xl config already holds
   * `lockdown`'s bridges), publishes `lockdown` with the clone's domid, waits
   * for the net monitor's ack of exactly that generation, then unpauses it.
   * Returns the domid.
   */
  private async bootClone(
    op: JournaledOperation,
    meta: CloneMeta,
    lockdown: CloneLockdown,
    boot: () => Promise<number>,
    bootStep: 'create-domain' | 'restore-domain',
  ): Promise<number> {
    if (
      (this.o.manageBridge ?? this.o.paths.root === '/') &&
      lockdown.cloneVifs.some((v) => v.masked)
    ) {
      await ensureIsolationBridge(lockdown.isolationBridge, lockdown.clonePrefix);
    }
    // vmclone refuses a second writer before Xen would (its check misses qdisk and same-UUID domains).
    const configFile = this.cloneConfigFile(meta.cloneName);
    await assertDisksFree(await this.xs(), readFileSync(configFile, 'utf8'), configFile);
    const domid = await op.step(
      bootStep,
      { name: meta.cloneName, uuid: meta.cloneUuid, config: this.cloneConfigFile(meta.cloneName) },
      { action: 'destroy-domain', name: meta.cloneName, uuid: meta.cloneUuid },
      () =>
        this.timed(
          `${bootStep === 'restore-domain' ? 'restoring' : 'creating'} clone domain ${meta.cloneName} (paused)`,
          boot,
        ),
      (d) => ({ domid: d }),
    );
    const pub = { ...lockdown.publication, cloneDomid: domid };
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

  async create(name: string, opts: CreateOptions = {}): Promise<CreateResult> {
    const vm = validateVmName(name);
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
    vm: VmName,
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
    refuseProductionBridge(cfg.isolation_bridge, {
      vm,
      clonePrefix: cfg.clone_vif_prefix,
      productionBridges: originalVifsOf(original, { all: true }).map((v) => v.bridge),
    });
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
    const plans = await planDiskSnapshots(original, cfg, {
      kind: storageKind(kind),
      originalState,
      cloneName,
      backend: storageBackend(cfg),
      destDir: this.o.paths.resolve(cfg.storage_dir),
    });
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
      version: 2,
      vm,
      cloneName,
      cloneUuid,
      kind,
      originalConfigFile: originalFile,
      cloneVifs: plan.cloneVifs.map((v) => ({
        devid: v.devid,
        name: v.name,
        productionSpec: v.productionSpec,
      })),
      originalVifs: plan.originalVifs.map((v) => ({ devid: v.devid, vifname: v.vifname ?? null })),
      consoleType: plan.console.type,
      ...(kind === 'memory' && !o.start ? { saveImage: saveFile } : {}),
    };
    const state: CloneState = o.start ? 'running' : 'active';
    const live: LiveDomains =
      originalDomain === undefined
        ? {}
        : { original: { domid: Number(originalDomain.domid), nics: running?.nics ?? [] } };
    const lockdown = cloneLockdown(vm, cloneName, meta, state, cfg, live);
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
    const metaFile = cloneMetaFile(this.o.paths, cloneName);
    await op.step(
      'write-config',
      { configFile, metaFile },
      [
        { action: 'rm-file', path: configFile },
        { action: 'rm-file', path: metaFile },
      ],
      async () => {
        mkdirSync(this.clonesDir, { recursive: true });
        writeFileAtomic(configFile, lockedCloneConfig(plan.configText, configFile, lockdown));
        writeCloneMeta(this.o.paths, meta);
      },
    );

    // Snapshot the disks (inside the original's pause for online and memory clones).
    let originalPauseMs: number | undefined;
    let originalPauseInnerMs: number | undefined;
    let memoryCopy: MemoryCopy | undefined;
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
            if (wePause) {
              await this.xl.pause(vm);
              op.checkpoint('paused');
            }
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
      const choice = liveHelperChoice(cfg, this.o.paths);
      const live =
        'helper' in choice
          ? await copyMemoryLive(op, {
              vm,
              uuid: originalUuidOrNull,
              saveFile,
              helper: choice.helper,
              saver: (this.o.liveSaver ?? helperLiveSaver)(choice.helper),
              snapshot: () => snapAll('paused'),
              disks: plans.length,
              snapshotUndo,
              timed: (message, fn) => this.timed(message, fn),
            })
          : choice;
      if ('records' in live) {
        records = live.records;
        originalPauseMs = live.pauseMs;
        memoryCopy = live.copy;
        this.emit('info', describeLiveCopy(vm, live.pauseMs, live.copy));
      } else {
        this.emit('info', `no live memory copy: ${live.fallback}; using xl save -p`);
        memoryCopy = {
          method: 'save-pause',
          fallback: live.fallback,
          copyMs: null,
          rounds: null,
          finalRoundPages: null,
        };
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
        this.emit('info', `${vm} was paused for ${originalPauseMs!.toFixed(1)} ms (xl save -p)`);
      }
      await op.step('publish', { generation: 'next' }, { action: 'unpublish', vm }, async () =>
        publishVm(await this.xs(), lockdown.publication),
      );
      let domid: number | undefined;
      if (o.start) {
        domid = await this.bootClone(
          op,
          meta,
          lockdown,
          () => this.xl.restore(saveFile, { paused: true, cfgPath: configFile }),
          'restore-domain',
        );
        await op.step('remove-save-image', { saveFile }, null, async () =>
          rmSync(saveFile, { force: true }),
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
      return memoryCopy === undefined ? result : { ...result, memoryCopy };
    }

    await op.step('publish', { generation: 'next', state }, { action: 'unpublish', vm }, async () =>
      publishVm(await this.xs(), lockdown.publication),
    );
    let domid: number | undefined;
    if (o.start) {
      domid = await this.bootClone(
        op,
        meta,
        lockdown,
        () => this.xl.create(configFile, { paused: true }),
        'create-domain',
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
      const live = await liveDomains(this.xl, vm, cur.cloneName);
      if (live.cloneDomid !== undefined) {
        throw new CloneError('CLONE_EXISTS', `a domain named ${cur.cloneName} already exists`);
      }
      // A clone never boots on an old lockdown: an unreadable configuration stops here.
      const config = configOrError(vm, this.o.paths);
      if (config instanceof Error) throw config;
      refuseProductionBridge(config.isolation_bridge, {
        vm,
        clonePrefix: config.clone_vif_prefix,
        productionBridges: meta.cloneVifs.map(
          (v) => parseVif(v.productionSpec).bridge ?? XL_DEFAULT_BRIDGE,
        ),
      });
      const lockdown = cloneLockdown(vm, cur.cloneName, meta, 'running', config, live);
      const before = cloneLockdown(vm, cur.cloneName, meta, cur.state, config, live).publication;
      const configFile = this.cloneConfigFile(cur.cloneName);
      await op.step(
        'write-config',
        {
          configFile,
          vifs: lockdown.cloneVifs.map((v) => ({ devid: v.devid, bridge: v.bridge })),
        },
        null,
        async () =>
          writeFileAtomic(
            configFile,
            lockedCloneConfig(readFileSync(configFile, 'utf8'), configFile, lockdown),
          ),
      );
      await op.step(
        'publish',
        { state: 'running' },
        { action: 'republish', publication: before as unknown as Json },
        async () => publishVm(await this.xs(), lockdown.publication),
      );
      const image =
        meta.saveImage !== undefined && existsSync(meta.saveImage) ? meta.saveImage : undefined;
      const domid = await this.bootClone(
        op,
        meta,
        lockdown,
        () =>
          image === undefined
            ? this.xl.create(configFile, { paused: true })
            : this.xl.restore(image, { paused: true, cfgPath: configFile }),
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
        const pub = (await this.lockdownOf(meta, 'active')).publication;
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
    const uuid = await domainUuid(this.xl, meta.cloneName);
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
        const pub = (await this.lockdownOf(meta, target)).publication;
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
        const metaFile = cloneMetaFile(this.o.paths, c.cloneName);
        // A damaged metadata file must not keep the clone from being removed.
        let meta: CloneMeta | undefined;
        try {
          meta = this.readMeta(c.cloneName);
        } catch {
          meta = undefined;
        }
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
          this.cloneConfigFile(c.cloneName),
          metaFile,
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
    const [last] = this.store.auditLog({ vm, limit: 1 });
    const note =
      clone !== undefined && last?.action === 'reconcile'
        ? String((last.detail as { note?: unknown } | null)?.note ?? '')
        : undefined;
    return {
      vm,
      clone,
      note,
      domain: d ? { domid: d.domid, state: d.state, paused: d.flags.paused } : undefined,
      originalDomain: orig ? { domid: orig.domid, state: orig.state } : undefined,
      generation,
      ack,
      running: this.store.runningOperation(vm),
      configFile: clone ? this.cloneConfigFile(clone.cloneName) : undefined,
    };
  }
}
