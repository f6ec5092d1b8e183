import { execFile } from 'node:child_process';

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs one external tool with an argv array (never a shell string). Resolves
 * with the exit status instead of throwing on a non-zero one, so callers can
 * read lvm's "not found" answers; rejects only when the tool cannot be started
 * (ENOENT: not installed).
 */
export type CommandRunner = (argv: readonly string[]) => Promise<CommandResult>;

export const runCommand: CommandRunner = (argv) =>
  new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) {
      reject(new Error('empty argv'));
      return;
    }
    execFile(
      cmd,
      args,
      {
        maxBuffer: 16 * 1024 * 1024,
        // lvm warns about every inherited descriptor otherwise; C locale keeps messages parseable.
        env: { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1', LC_ALL: 'C' },
      },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
          reject(err);
          return;
        }
        const code = err ? Number((err as { code?: unknown }).code ?? 1) : 0;
        resolve({ code: Number.isFinite(code) ? code : 1, stdout, stderr });
      },
    );
  });

/** One line of a tool's stderr, shortened, for error messages. */
export function firstLines(text: string, max = 3): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(0, max)
    .join('; ');
}
