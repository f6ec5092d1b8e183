// What every ZynClone daemon does around its real work: read its options,
// stop on SIGTERM or SIGINT without undoing what it published, and wait for
// xenstored as long as it takes.
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { XsClient } from '../../xenstore/index.js';
import type { DaemonLogger } from './log.js';

export type DaemonOptions = NonNullable<ParseArgsConfig['options']>;
export type DaemonArgs = Record<string, string | boolean | undefined>;

/**
 * Parses `argv` strictly; `--help` prints the usage. Returns the values, or
 * the exit status when the daemon must not start (0 after --help, 2 on bad usage).
 */
export function parseDaemonArgs(
  daemon: string,
  usage: string,
  argv: string[],
  options: DaemonOptions,
): DaemonArgs | number {
  let values: DaemonArgs;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }) as { values: DaemonArgs });
  } catch (err) {
    process.stderr.write(`zynclone ${daemon}: ${(err as Error).message}\n${usage}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  return values;
}

/** --xenstore, else $XENSTORED_PATH, else xenstored's default socket. */
export function xenstoreSocket(values: DaemonArgs): string {
  return (
    (values.xenstore as string | undefined) ?? process.env.XENSTORED_PATH ?? '/run/xenstored/socket'
  );
}

export interface StopSignal {
  /** Resolves at the first SIGTERM or SIGINT. */
  readonly stopped: Promise<void>;
  readonly stopping: boolean;
}

/** Logs `message` once at the first SIGTERM or SIGINT, and resolves `stopped`. */
export function stopOnSignal(log: DaemonLogger, message: string): StopSignal {
  let stopping = false;
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info(message, { signal });
      resolve();
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
  return {
    stopped,
    get stopping() {
      return stopping;
    },
  };
}

/**
 * Connects to xenstored, retrying with backoff (up to 5 s) until it answers or
 * the daemon is stopped; undefined when stopped first.
 */
export async function connectUntilStopped(
  socket: string,
  log: DaemonLogger,
  stop: StopSignal,
  whileWaiting: string,
): Promise<XsClient | undefined> {
  for (let delay = 100; !stop.stopping; delay = Math.min(delay * 2, 5000)) {
    try {
      return await XsClient.connect({ path: socket, transport: 'socket', logger: log });
    } catch (err) {
      log.warn(whileWaiting, { error: err, retryMs: delay });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((r) => {
          timer = setTimeout(r, delay);
        }),
        stop.stopped,
      ]);
      clearTimeout(timer);
    }
  }
  return undefined;
}
