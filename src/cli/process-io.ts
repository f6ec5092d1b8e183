/**
 * vmclone's own stdin, stdout and stderr. Output is written synchronously to
 * the file descriptors: process.stdout and process.stderr are streams whose
 * creation alone loads Node's stream modules, a tenth of the start-up of
 * `node -e 0` (`npm run bench -- cli`), to write a few lines that Node writes
 * synchronously to files, pipes and terminals anyway. stdin and `isTTY` are
 * looked up only when a command asks (a confirmation, progress lines).
 */
import { writeSync } from 'node:fs';

/** Where vmclone writes text: a process's stdout or stderr, or a stream in tests. */
export interface CliOutput {
  write(text: string | Uint8Array): unknown;
  readonly isTTY?: boolean;
}

/**
 * Writes to `fd` (1 or 2: the process's stdout or stderr). EPIPE (`vmclone
 * list | head`): the reader is gone, so the process ends with the status it
 * has, as it did with a stream's error event. EAGAIN (a descriptor another
 * process made non-blocking, and full): what is left, and every later write,
 * goes through `stream` (by default Node's process.stdout or process.stderr,
 * which waits for room), so nothing is lost or reordered.
 */
export function fdOutput(
  fd: number,
  stream: () => { write(chunk: Uint8Array): unknown } = () =>
    fd === 2 ? process.stderr : process.stdout,
): CliOutput {
  let fallback: { write(chunk: Uint8Array): unknown } | undefined;
  let tty: boolean | undefined;
  return {
    get isTTY() {
      tty ??= process.getBuiltinModule('node:tty').isatty(fd);
      return tty;
    },
    write(text) {
      let rest = typeof text === 'string' ? Buffer.from(text) : text;
      while (fallback === undefined && rest.length > 0) {
        try {
          rest = rest.subarray(writeSync(fd, rest));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'EPIPE') process.exit(process.exitCode ?? 0);
          if (code !== 'EAGAIN') throw err;
          fallback = stream();
        }
      }
      if (fallback !== undefined && rest.length > 0) fallback.write(rest);
      return true;
    },
  };
}
