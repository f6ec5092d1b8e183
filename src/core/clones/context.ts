/**
 * What every lifecycle operation shares: its options, one XenStore
 * connection, progress events, the clone's files, and `operate`, which runs
 * a body as one journaled operation (one per VM at a time: VM_BUSY) and
 * rolls it back (create, start) or fails it (the others) when it throws.
 */
import type { XlDriver } from '../../xen/index.js';
import { effectiveConfig } from '../config/config.js';
import type { VmName, ZynclonePaths } from '../paths.js';
import type { StateStore } from '../state/store.js';
import type {
  CloneRecord,
  CloneState,
  Json,
  OperationKind,
  OperationRecord,
  Requester,
} from '../state/types.js';
import { CloneError } from './errors.js';
import { type CrashPoints, JournaledOperation, type UndoAction } from './journal.js';
import type { LiveSaver } from './live-save.js';
import { type CloneLockdown, currentLockdown } from './lockdown.js';
import { type CloneMeta, cloneConfigFile, readCloneMeta } from './meta.js';
import type { PublishClient } from './publish.js';
import { type UndoContext, rollBack, runUndo } from './undo.js';

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
  /** Waits between attempts at a failing undo action (default UNDO_RETRY_DELAYS_MS); tests shorten them. */
  readonly undoRetryDelaysMs?: readonly number[];
  /** Reads /proc to detect Remus replication of a VM; tests may replace it. */
  readonly replicationProbe?: (vm: string) => string | undefined;
  /** Runs the live save helper at a path; tests may replace it. */
  readonly liveSaver?: (helper: string) => LiveSaver;
}

/** Operations rolled back on failure; the others are finished by recovery. */
export const ROLL_BACK: readonly OperationKind[] = ['create', 'start'];

export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function now(): number {
  return performance.now();
}

export class LifecycleContext {
  private xsClient: PublishClient | undefined;

  constructor(readonly o: LifecycleOptions) {}

  get paths(): ZynclonePaths {
    return this.o.paths;
  }

  get store(): StateStore {
    return this.o.store;
  }

  get xl(): XlDriver {
    return this.o.xl;
  }

  async xs(): Promise<PublishClient> {
    this.xsClient ??= await this.o.xs();
    return this.xsClient;
  }

  emit(kind: ProgressEvent['kind'], message: string, ms?: number): void {
    this.o.progress?.(ms === undefined ? { kind, message } : { kind, message, ms });
  }

  /** Runs `fn` as one progress step. */
  async timed<T>(message: string, fn: () => Promise<T>): Promise<T> {
    this.emit('step', message);
    const t = now();
    const v = await fn();
    this.emit('done', message, now() - t);
    return v;
  }

  cloneConfigFile(cloneName: string): string {
    return cloneConfigFile(this.o.paths, cloneName);
  }

  readMeta(cloneName: string): CloneMeta {
    return readCloneMeta(this.o.paths, cloneName);
  }

  /** The clone's lockdown in `state` as the configuration and the domains demand now. */
  lockdownOf(meta: CloneMeta, state: CloneState): Promise<CloneLockdown> {
    return currentLockdown(this.o, meta, state);
  }

  ackTimeout(vm: VmName): number {
    return effectiveConfig(vm, this.o.paths).values.lockdown_ack_timeout_ms;
  }

  private undoContext(): UndoContext {
    return {
      xl: this.xl,
      store: this.store,
      xs: () => this.xs(),
      undoRetryDelaysMs: this.o.undoRetryDelaysMs,
      liveSaver: this.o.liveSaver,
    };
  }

  undoAction(u: UndoAction): Promise<void> {
    return runUndo(this.undoContext(), u);
  }

  rollBack(op: OperationRecord, reason: string): Promise<void> {
    return rollBack(this.undoContext(), op, reason);
  }

  requireClone(vm: VmName): CloneRecord {
    const c = this.store.getClone(vm);
    if (c === undefined) throw new CloneError('CLONE_NOT_FOUND', `VM ${vm} has no clone`);
    return c;
  }

  refuseState(c: CloneRecord, what: string, allowed: readonly CloneState[], hint: string): void {
    if (!allowed.includes(c.state)) {
      throw new CloneError(
        'CLONE_STATE',
        `cannot ${what} the clone of ${c.vm}: it is ${c.state} (${what} needs ${allowed.join(' or ')}); ${hint}`,
      );
    }
  }

  /**
   * Begins an operation on `vm` (or continues `existing`, adopted by
   * recovery), runs `body`; on failure rolls back (create, start) and
   * rethrows. The failure of the rollback itself is reported too.
   */
  async operate<T>(
    vm: VmName,
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
        // Whoever recovers next finishes it; this process may live on (a daemon).
        this.store.releaseOperation(op.id, `rollback incomplete: ${errText(undoErr)}`);
        throw new CloneError(
          'CLONE_ROLLBACK_PENDING',
          `${kind} of ${vm} failed: ${errText(err)}; and undoing it failed too: ${errText(undoErr)} ` +
            `(operation ${op.id} stays pending and the VM busy: clone_monitor, or the next vmclone command, finishes the rollback)`,
          { cause: err },
        );
      }
      throw err;
    }
  }
}
