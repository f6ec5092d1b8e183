/**
 * The live memory copy of a memory clone: zynclone-livesave (helpers/livesave)
 * copies the original's memory into an xl save image while it runs, suspends
 * it for the last round only and holds it suspended until told to resume, so
 * the disks are snapshotted at the instant of the memory image. Its protocol:
 * one JSON object per line on stdout (`suspended`, then `saved` or `error`),
 * a line on stdin to resume; it resumes by itself when stdin closes or its
 * parent dies.
 */
import { spawn } from 'node:child_process';
import { constants, accessSync } from 'node:fs';
import { run } from '../../process/index.js';
import { CloneError } from './errors.js';

/** What the helper measured once it resumed the original. */
export interface LiveSaveResult {
  /** From libxl's suspend request to the end of the resume; null when not seen. */
  readonly pauseMs: number | null;
  readonly copyMs: number;
  readonly totalMs: number;
  /** libxc's rounds, the final one included, and that one's pages; null when not reported. */
  readonly rounds: number | null;
  readonly finalRoundPages: number | null;
}

/** The original, suspended with its memory image complete. */
export interface HeldSave {
  /** Resumes the original; resolves with the helper's figures. */
  release(): Promise<LiveSaveResult>;
}

/**
 * The helper failed. `suspended` is false when it stopped before the final
 * pause: the original never stopped running. `helperCode` is the helper's
 * own code (NO_LOG_DIRTY, SUSPEND, ...), or HELPER_FAILED (it exited without
 * saying why), HELPER_KILLED (a signal ended it), HELPER_MISSING.
 */
export class LiveSaveFailed extends CloneError {
  constructor(
    readonly helperCode: string,
    message: string,
    readonly suspended: boolean,
  ) {
    super('CLONE_FAILED', message);
  }
}

/** How the lifecycle copies memory live: the helper, or a stand-in in unit tests. */
export interface LiveSaver {
  /** Copies `vm`'s memory into `file` while it runs; resolves once it is held suspended. */
  save(vm: string, file: string): Promise<HeldSave>;
  /** Resumes `vm` if a dead helper left it suspended. */
  resume(vm: string): Promise<void>;
}

/** The helper at `path` if it is there and executable, else undefined. */
export function installedHelper(path: string): string | undefined {
  try {
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}

interface HelperEvent {
  readonly event?: unknown;
  readonly code?: unknown;
  readonly message?: unknown;
  readonly pauseMs?: unknown;
  readonly copyMs?: unknown;
  readonly totalMs?: unknown;
  readonly rounds?: unknown;
  readonly finalRoundPages?: unknown;
}

function parseEvent(line: string): HelperEvent | undefined {
  try {
    const v = JSON.parse(line) as unknown;
    return typeof v === 'object' && v !== null ? (v as HelperEvent) : undefined;
  } catch {
    return undefined;
  }
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const numOrNull = (v: unknown): number | null =>
  typeof v === 'number' && Number.isFinite(v) ? v : null;

/** The live saver that runs zynclone-livesave at `helper`. */
export function helperLiveSaver(helper: string): LiveSaver {
  return {
    save: (vm, file) => holdSave(helper, vm, file),
    async resume(vm) {
      const r = await run([helper, '--resume', vm], { timeoutMs: 60_000, check: false });
      const last = parseEvent(r.stdout.trim().split('\n').at(-1) ?? '');
      // NOT_SUSPENDED: nothing to resume (the domain runs, or is gone).
      if (r.status === 0 || last?.code === 'NOT_SUSPENDED' || last?.code === 'NO_DOMAIN') return;
      throw new CloneError(
        'CLONE_FAILED',
        `cannot resume ${vm}: ${String(last?.message ?? r.stderr.trim())}`,
      );
    },
  };
}

function holdSave(helper: string, vm: string, file: string): Promise<HeldSave> {
  const child = spawn(helper, ['--hold', vm, file], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  // The helper closing its stdin early is not our error: its exit tells.
  child.stdin.on('error', () => {});
  let suspended = false;
  let result: HelperEvent | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  const failure = (why: { code: number | null; signal: NodeJS.Signals | null }) => {
    if (result?.event === 'error') {
      return new LiveSaveFailed(
        String(result.code ?? 'ERROR'),
        `live save of ${vm} failed: ${String(result.message)}`,
        suspended,
      );
    }
    const how = why.signal === null ? `exited with ${why.code}` : `was killed (${why.signal})`;
    const tail = stderr.trim().split('\n').slice(-3).join(' | ');
    return new LiveSaveFailed(
      why.signal === null ? 'HELPER_FAILED' : 'HELPER_KILLED',
      `live save of ${vm} failed: ${helper} ${how}${tail ? `: ${tail}` : ''}`,
      suspended,
    );
  };
  return new Promise<HeldSave>((resolve, reject) => {
    let buf = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const ev = parseEvent(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (ev?.event === 'suspended' && !suspended) {
          suspended = true;
          resolve(held);
        } else if (ev?.event === 'saved' || ev?.event === 'error') {
          result = ev;
        }
      }
    });
    child.once('error', (err) =>
      reject(new LiveSaveFailed('HELPER_MISSING', `cannot run ${helper}: ${err.message}`, false)),
    );
    void exited.then((why) => {
      if (!suspended) reject(failure(why));
    });
    const held: HeldSave = {
      async release() {
        child.stdin.end('\n');
        const why = await exited;
        if (why.code !== 0 || result?.event !== 'saved') throw failure(why);
        return {
          pauseMs: numOrNull(result.pauseMs),
          copyMs: num(result.copyMs),
          totalMs: num(result.totalMs),
          rounds: numOrNull(result.rounds),
          finalRoundPages: numOrNull(result.finalRoundPages),
        };
      },
    };
  });
}
