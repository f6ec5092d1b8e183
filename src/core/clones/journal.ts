/**
 * Journaled steps: each step is written to the state store with its intent
 * and its undo BEFORE it acts, and completed after; on a failure (or after a
 * crash, by recovery) the journal is unwound from the undo records alone.
 */
import type { StateStore } from '../state/store.js';
import type { Json, OperationRecord } from '../state/types.js';

/** An undo action, as stored in the journal (plain JSON). */
export type UndoAction =
  | { readonly action: 'rm-file'; readonly path: string }
  | { readonly action: 'unpause'; readonly name: string; readonly uuid: string | null }
  | {
      /** A domain a dead live save helper left suspended: `helper --resume`. */
      readonly action: 'resume-suspended';
      readonly name: string;
      readonly uuid: string | null;
      readonly helper: string;
    }
  | { readonly action: 'remove-snapshot'; readonly plan: Json }
  | { readonly action: 'destroy-domain'; readonly name: string; readonly uuid: string }
  | { readonly action: 'unpublish'; readonly vm: string }
  | { readonly action: 'republish'; readonly publication: Json }
  | { readonly action: 'delete-clone-record'; readonly vm: string }
  | { readonly action: 'restore-clone-record'; readonly record: Json };

/**
 * Crash injection for tests: ZYNCLONE_CRASH_AT=<step> makes the process
 * SIGKILL itself right after journaling that step (before it acts);
 * ZYNCLONE_CRASH_AFTER=<step> right after it acted, before it is completed.
 * A step matches by its full name or by the part before `:`.
 */
export interface CrashPoints {
  readonly at?: string | undefined;
  readonly after?: string | undefined;
  /** In-process tests: the step fails (throws) right after it is journaled, before it acts. */
  readonly fail?: string | undefined;
}

export function crashPointsFromEnv(env: NodeJS.ProcessEnv = process.env): CrashPoints {
  return { at: env.ZYNCLONE_CRASH_AT || undefined, after: env.ZYNCLONE_CRASH_AFTER || undefined };
}

function matches(point: string | undefined, step: string): boolean {
  return point !== undefined && (point === step || point === step.split(':')[0]);
}

function die(): never {
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL is delivered before this line runs; the loop only satisfies the type.
  for (;;) {}
}

/** `U`: the undo actions its steps record (plain JSON); the lifecycle's by default. */
export class JournaledOperation<U = UndoAction> {
  constructor(
    readonly store: StateStore,
    public op: OperationRecord,
    private readonly crash: CrashPoints = {},
  ) {}

  get id(): number {
    return this.op.id;
  }

  /** Journals `name`, runs `act`, completes the step with `result(value)`. */
  async step<T>(
    name: string,
    intent: Json,
    undo: U | readonly U[] | null,
    act: () => Promise<T>,
    result: (value: T) => Json = () => null,
  ): Promise<T> {
    const undoJson = (undo === null ? null : Array.isArray(undo) ? undo : [undo]) as Json;
    const step = this.store.journalStep(this.op.id, name, intent, undoJson);
    if (matches(this.crash.at, name)) die();
    let value: T;
    try {
      if (matches(this.crash.fail, name)) throw new Error(`injected failure at step ${name}`);
      value = await act();
    } catch (err) {
      this.store.failStep(this.op.id, step.seq, (err as Error).message ?? String(err));
      throw err;
    }
    if (matches(this.crash.after, name)) die();
    this.store.completeStep(this.op.id, step.seq, result(value));
    return value;
  }

  /**
   * A crash point inside a step (ZYNCLONE_CRASH_AFTER=<name>), for moments
   * no step boundary reaches, e.g. the original paused inside pause-snapshot.
   */
  checkpoint(name: string): void {
    if (matches(this.crash.after, name)) die();
  }

  refresh(): OperationRecord {
    this.op = this.store.getOperation(this.op.id) ?? this.op;
    return this.op;
  }
}
