// The frame every ZynClone daemon runs in, around its own work: strict
// options (--xenstore, --heartbeat-ms and --help beside its own), a logger,
// SIGTERM or SIGINT stopping it without undoing what it published, xenstored
// awaited as long as it takes, a heartbeat while it serves, and one exit
// status: 0 stopped, 1 failed, 2 bad usage.
import { packageVersion } from '../../cli/version.js';
import type { XsClient } from '../../xenstore/index.js';
import { DEFAULT_HEARTBEAT_MS, startHeartbeat } from './heartbeat.js';
import { type DaemonLogger, createLogger } from './log.js';
import {
  type DaemonArgs,
  type DaemonOptions,
  connectUntilStopped,
  parseDaemonArgs,
  stopOnSignal,
  xenstoreSocket,
} from './process.js';

/** `text` as an integer from `min` to `max`; throws naming the option otherwise. */
export function intOption(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < min || n > max) {
    throw new Error(
      `--${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(text)}`,
    );
  }
  return n;
}

export interface DaemonSpec<T, R> {
  /** As in `zynclone <name>` and `/tool/zynclone/daemons/<name>`. */
  readonly name: string;
  readonly usage: string;
  /** The daemon's own options, beside --xenstore, --heartbeat-ms and --help. */
  readonly options: DaemonOptions;
  /** Checks the options; an Error it throws is a usage error (exit status 2). */
  readonly parse: (values: DaemonArgs) => T;
  /** Fields of the `starting` log line beside the version and the socket. */
  readonly describe?: (options: T) => Record<string, unknown>;
  /** Logged at the first SIGTERM or SIGINT. */
  readonly stopMessage: string;
  /** Logged while xenstored does not answer. */
  readonly waitMessage?: string;
  /**
   * What the daemon needs before XenStore (a state store, its nftables
   * table). When it throws, the daemon exits 1, logging `prepareFailure`.
   */
  readonly prepare?: (options: T, log: DaemonLogger) => Promise<R> | R;
  readonly prepareFailure?: string;
  /**
   * The daemon's work on XenStore. It calls `serving()` once it is up: that
   * starts the heartbeat and resolves when the daemon is told to stop; then it
   * stops its work. When it throws, the daemon exits 1, logging `failure`.
   */
  readonly serve: (run: DaemonRun<T, R>) => Promise<void>;
  readonly failure: string;
  /** Releases what prepare made: after serving, or when stopped before XenStore answered. */
  readonly release?: (prepared: R) => Promise<void> | void;
}

export interface DaemonRun<T, R> {
  readonly xs: XsClient;
  readonly options: T;
  readonly prepared: R;
  readonly log: DaemonLogger;
  readonly version: string;
  readonly heartbeatMs: number;
  readonly serving: () => Promise<void>;
}

export async function runDaemon<T, R = undefined>(
  spec: DaemonSpec<T, R>,
  argv: string[],
): Promise<number> {
  const values = parseDaemonArgs(spec.name, spec.usage, argv, {
    xenstore: { type: 'string' },
    'heartbeat-ms': { type: 'string', default: String(DEFAULT_HEARTBEAT_MS) },
    ...spec.options,
  });
  if (typeof values === 'number') return values;
  let options: T;
  let heartbeatMs: number;
  try {
    heartbeatMs = intOption('heartbeat-ms', values['heartbeat-ms'] as string, 100, 3_600_000);
    options = spec.parse(values);
  } catch (err) {
    process.stderr.write(`zynclone ${spec.name}: ${(err as Error).message}\n`);
    return 2;
  }
  const socket = xenstoreSocket(values);
  const version = packageVersion();
  const log = createLogger(spec.name);
  const stop = stopOnSignal(log, spec.stopMessage);
  log.info('starting', { version, socket, ...spec.describe?.(options) });

  let prepared: R;
  try {
    prepared = (await spec.prepare?.(options, log)) as R;
  } catch (err) {
    log.error(spec.prepareFailure ?? 'cannot start', { error: err });
    return 1;
  }
  try {
    const xs = await connectUntilStopped(
      socket,
      log,
      stop,
      spec.waitMessage ?? 'xenstore unreachable; retrying',
    );
    if (!xs) return 0;
    const serving = async () => {
      const heartbeat = startHeartbeat(xs, spec.name, version, heartbeatMs, log);
      try {
        await stop.stopped;
      } finally {
        heartbeat.stop();
      }
    };
    try {
      await spec.serve({ xs, options, prepared, log, version, heartbeatMs, serving });
    } catch (err) {
      log.error(spec.failure, { error: err });
      return 1;
    } finally {
      await xs.close().catch(() => {});
    }
    return 0;
  } finally {
    await spec.release?.(prepared);
  }
}
