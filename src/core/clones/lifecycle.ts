/**
 * The clone lifecycle (DESIGN.md sections 3-5): create, start, stop,
 * activate, deactivate, remove, and crash recovery. Every transition is one
 * operation in the state store's journal (one per VM at a time: VM_BUSY),
 * and every step is journaled with its undo before it acts. This class is
 * the one entry point; each operation lives in its own module.
 */
import type { VmName } from '../paths.js';
import type { CloneRecord } from '../state/types.js';
import { LifecycleContext, type LifecycleOptions } from './context.js';
import type { CreateOptions } from './create-plan.js';
import { type CreateResult, createClone } from './create.js';
import { cloneConfigFile } from './meta.js';
import { type RecoveryReport, reconcile, recover } from './recovery.js';
import { removeClone } from './remove.js';
import { startClone } from './start.js';
import { type CloneStatus, cloneStatus } from './status.js';
import { type StopOptions, setLockdownState, stopClone } from './transitions.js';

export type { LifecycleOptions, ProgressEvent } from './context.js';
export type { CreateResult } from './create.js';
export type { CreateOptions } from './create-plan.js';
export type { RecoveryReport } from './recovery.js';
export type { CloneStatus } from './status.js';
export type { StopOptions } from './transitions.js';

export class CloneLifecycle {
  private readonly ctx: LifecycleContext;

  constructor(o: LifecycleOptions) {
    this.ctx = new LifecycleContext(o);
  }

  cloneConfigFile(cloneName: string): string {
    return cloneConfigFile(this.ctx.paths, cloneName);
  }

  create(vm: VmName, opts: CreateOptions = {}): Promise<CreateResult> {
    return createClone(this.ctx, vm, opts);
  }

  /** active|inactive -> running: boots the clone paused, waits for the lockdown ack, unpauses. */
  start(vm: VmName): Promise<CloneRecord> {
    return startClone(this.ctx, vm);
  }

  /** running -> active: shuts the clone down (destroys it after `timeoutMs`, at once with force). */
  stop(vm: VmName, opts: StopOptions = {}): Promise<CloneRecord> {
    return stopClone(this.ctx, vm, opts);
  }

  /** inactive -> active: the lockdowns on the original enforced and acknowledged. */
  activate(vm: VmName): Promise<CloneRecord> {
    return setLockdownState(this.ctx, vm, 'activate');
  }

  /** active -> inactive: the lockdowns on the original lifted. */
  deactivate(vm: VmName): Promise<CloneRecord> {
    return setLockdownState(this.ctx, vm, 'deactivate');
  }

  /**
   * Removes the clone from any state: its domain, volumes, files and record,
   * and lifts its lockdowns. Safe to repeat; also cleans up after a crash.
   */
  remove(vm: VmName): Promise<{ removed: boolean }> {
    return removeClone(this.ctx, vm);
  }

  /**
   * Finishes or rolls back every operation whose owner died, then
   * reconciles. `retry`: operations this process adopted before and failed
   * to recover. Called at the start of every vmclone command.
   */
  recover(retry: readonly number[] = []): Promise<RecoveryReport[]> {
    return recover(this.ctx, retry);
  }

  /** Clones recorded running whose domain is gone become active, with a note. */
  reconcile(): Promise<string[]> {
    return reconcile(this.ctx);
  }

  list(): CloneRecord[] {
    return this.ctx.store.listClones();
  }

  status(vm: VmName): Promise<CloneStatus> {
    return cloneStatus(this.ctx, vm);
  }
}
