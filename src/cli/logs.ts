/**
 * `vmclone logs [DAEMON]`: a daemon's log, from the systemd journal of its
 * unit (zynclone-DAEMON.service), or from a log file where it runs without
 * systemd. Always argv, never a shell: the daemon name and path come from
 * the command line.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { ZynclonePaths } from '../core/paths.js';
import { ZynCloneError } from '../errors/index.js';
import type { CliOutput } from './process-io.js';

/** Daemon names as the units spell them: zynclone-<name>.service. */
const DAEMON_NAME = /^[a-z][a-z0-9-]{0,39}$/;
/** Where a daemon started without systemd is expected to log (under the root prefix). */
export const LOG_DIR = '/var/log/zynclone';

export class LogsError extends ZynCloneError<'LOGS_USAGE'> {
  constructor(message: string) {
    super('LOGS_USAGE', message);
  }
}

export interface LogsOptions {
  readonly lines: number;
  readonly follow: boolean;
  /** A log file to read instead of the journal. */
  readonly file?: string;
}

/** The command that shows the log: journalctl for the unit(s), or tail for a file. */
export function logsCommand(
  daemon: string | undefined,
  options: LogsOptions,
  paths: ZynclonePaths,
): string[] {
  if (daemon !== undefined && !DAEMON_NAME.test(daemon)) {
    throw new LogsError(
      `invalid daemon name ${JSON.stringify(daemon.slice(0, 60))}: expected e.g. net-monitor, clone-monitor`,
    );
  }
  if (!Number.isSafeInteger(options.lines) || options.lines < 1) {
    throw new LogsError(`--lines must be a positive integer, got ${options.lines}`);
  }
  const n = String(options.lines);
  const follow = options.follow ? ['-F'] : [];
  if (options.file !== undefined) return ['tail', '-n', n, ...follow, '--', options.file];
  if (daemon !== undefined) {
    const file = paths.resolve(`${LOG_DIR}/${daemon}.log`);
    if (existsSync(file)) return ['tail', '-n', n, ...follow, '--', file];
  }
  const unit = daemon === undefined ? 'zynclone-*' : `zynclone-${daemon}.service`;
  return [
    'journalctl',
    '--no-pager',
    '-o',
    'short-iso',
    '-u',
    unit,
    '-n',
    n,
    ...(options.follow ? ['-f'] : []),
  ];
}

/** Runs `argv` with its output on ours; resolves to its exit status. */
export function relay(
  argv: readonly string[],
  io: { stdout: CliOutput; stderr: CliOutput },
): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    // vmclone's own output is written synchronously: a slow reader holds up the child.
    child.stdout.on('data', (chunk: Buffer) => io.stdout.write(chunk));
    child.stderr.on('data', (chunk: Buffer) => io.stderr.write(chunk));
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') {
        reject(
          new LogsError(
            `${argv[0]} is not installed; without systemd, read a daemon's log file with --file PATH`,
          ),
        );
      } else reject(err);
    });
    child.on('close', (code) => resolve(code ?? 1));
  });
}
