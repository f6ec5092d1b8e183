/**
 * The one way ZynClone runs a program: an argv array (never a shell string),
 * a deadline, optionally inside a network namespace, and typed errors. The xl
 * driver, nftables, storage tools and the doctor all run through here.
 */
import { spawn } from 'node:child_process';
import { ZynCloneError } from '../errors/index.js';

export const DEFAULT_TIMEOUT_MS = 30_000;
/** How long a program killed for its timeout may take to be gone before the call rejects anyway. */
const EXIT_AFTER_KILL_MS = 10_000;
export const DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

export interface RunOptions {
  /** Run inside this network namespace (`ip netns exec NAME argv...`). */
  readonly netns?: string;
  /** Killed (SIGKILL) and rejected with RUN_TIMEOUT after this; default 30 s. */
  readonly timeoutMs?: number;
  /** The whole environment of the program; default this process's. */
  readonly env?: NodeJS.ProcessEnv;
  /** Written to the program's stdin, which is then closed; default no stdin. */
  readonly input?: string | Buffer;
  /** stdout and stderr together; more kills the program (RUN_FAILED). Default 16 MiB. */
  readonly maxOutputBytes?: number;
  /**
   * Reject with RUN_FAILED unless the program exits 0 (default). With
   * `false` the result carries any exit status, for tools whose status is an
   * answer (lvs of a missing volume, `ip netns exec` of a missing namespace).
   */
  readonly check?: boolean;
}

export interface RunResult {
  /** What ran, after the namespace prefix. */
  readonly argv: readonly string[];
  /** Exit status; null when a signal ended the program. */
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export type RunErrorCode = 'RUN_NOT_FOUND' | 'RUN_FAILED' | 'RUN_TIMEOUT';

/** A program that could not start, failed, or ran out of time; says which and what it printed. */
export class RunError extends ZynCloneError<RunErrorCode> {
  constructor(
    code: RunErrorCode,
    message: string,
    readonly argv: readonly string[],
    readonly status: number | null,
    readonly stderr: string,
    /** The errno of a program that could not be started (ENOENT, EACCES). */
    readonly errno?: string,
    options?: ErrorOptions,
  ) {
    super(code, message, options);
  }
}

/** `argv` as it runs inside `netns` (or as it is, without one). */
export function inNetns(netns: string | undefined, argv: readonly string[]): string[] {
  return netns === undefined ? [...argv] : ['ip', 'netns', 'exec', netns, ...argv];
}

/** argv for messages: words quoted only when they need it, long ones shortened. */
export function describeArgv(argv: readonly string[]): string {
  return argv
    .map((a) => (a.length > 200 ? `${a.slice(0, 197)}...` : a))
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a)))
    .join(' ');
}

/** Up to `max` non-empty lines of a program's output, joined, for error messages. */
export function firstLines(text: string, max = 3): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(0, max)
    .join('; ');
}

export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const full = inNetns(opts.netns, argv);
  const [cmd, ...args] = full;
  if (cmd === undefined || cmd === '') {
    return Promise.reject(
      new RunError('RUN_NOT_FOUND', 'nothing to run: empty argv', [], null, ''),
    );
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxOutput = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const shown = describeArgv(full);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let settled = false;
    const stderrText = () => Buffer.concat(err).toString('utf8');
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const fail = (
      code: RunErrorCode,
      message: string,
      status: number | null,
      errno?: string,
      cause?: unknown,
    ) =>
      settle(() =>
        reject(
          new RunError(
            code,
            message,
            full,
            status,
            stderrText(),
            errno,
            cause === undefined ? undefined : { cause },
          ),
        ),
      );
    let timedOut = false;
    const failTimeout = () =>
      fail('RUN_TIMEOUT', `${shown} did not finish within ${timeoutMs} ms and was killed`, null);
    const timer = setTimeout(() => {
      // Rejected once the program is really gone, so that the caller's
      // cleanup (e.g. destroying the domain a killed `xl create` made) sees
      // everything it did, never a program still finishing its last call.
      timedOut = true;
      child.once('exit', failTimeout);
      setTimeout(failTimeout, EXIT_AFTER_KILL_MS).unref();
      child.kill('SIGKILL');
    }, timeoutMs);
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxOutput) {
        child.kill('SIGKILL');
        fail('RUN_FAILED', `${shown} printed more than ${maxOutput} bytes and was killed`, null);
        return;
      }
      into.push(chunk);
    };
    child.stdout!.on('data', collect(out));
    child.stderr!.on('data', collect(err));
    child.on('error', (e: NodeJS.ErrnoException) => {
      const missing = e.code === 'ENOENT' || e.code === 'EACCES';
      fail(
        missing ? 'RUN_NOT_FOUND' : 'RUN_FAILED',
        `cannot run ${cmd}: ${e.message}`,
        null,
        e.code,
        e,
      );
    });
    child.on('close', (status, signal) => {
      if (timedOut) {
        failTimeout();
        return;
      }
      const result: RunResult = {
        argv: full,
        status,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: stderrText(),
      };
      if (status === 0 || opts.check === false) {
        settle(() => resolve(result));
        return;
      }
      const how = status === null ? `was killed by ${signal}` : `exited with status ${status}`;
      const said = firstLines(result.stderr);
      fail('RUN_FAILED', `${shown} ${how}${said ? `: ${said}` : ''}`, status);
    });
    if (child.stdin) {
      // A program that exits without reading all of its input is reported by 'close'.
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input);
    }
  });
}
