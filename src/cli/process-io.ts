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
 * Writes to `fd`. EPIPE (`vmclone list | head`): the reader is gone, so the
 * process ends with the status it has, as it did with a stream's error
 * event. EAGAIN (a descriptor another process made non-blocking): this and
 * every later write go through Node's stream, which waits for room.
 */
export function fdOutput(fd: 1 | 2): CliOutput {
  let stream: NodeJS.WriteStream | undefined;
  let tty: boolean | undefined;
  return {
    get isTTY() {
      tty ??= process.getBuiltinModule('node:tty').isatty(fd);
      return tty;
    },
    write(text) {
      if (stream !== undefined) return stream.write(text);
      let rest = typeof text === 'string' ? Buffer.from(text) : text;
      while (rest.length > 0) {
        try {
          rest = rest.subarray(writeSync(fd, rest));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'EPIPE') process.exit(process.exitCode ?? 0);
          if (code !== 'EAGAIN') throw err;
          stream = fd === 1 ? process.stdout : process.stderr;
          return stream.write(rest);
        }
      }
      return true;
    },
  };
}
