import { run } from '../../process/index.js';

export { firstLines } from '../../process/index.js';

export interface CommandResult {
  /** Exit status (1 when a signal ended the tool). */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs one storage tool (lvm, qemu-img, filefrag) through the project's runner.
 * Resolves with the exit status instead of throwing on a non-zero one, so
 * callers can read lvm's "not found" answers; rejects with RunError
 * RUN_NOT_FOUND when the tool is not installed, RUN_TIMEOUT when it hangs.
 */
export type CommandRunner = (argv: readonly string[]) => Promise<CommandResult>;

/** Storage tools only create, inspect and remove snapshots; none copies data. */
const STORAGE_TOOL_TIMEOUT_MS = 300_000;

export const runCommand: CommandRunner = async (argv) => {
  const res = await run(argv, {
    check: false,
    timeoutMs: STORAGE_TOOL_TIMEOUT_MS,
    // lvm warns about every inherited descriptor otherwise; C locale keeps messages parseable.
    env: { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1', LC_ALL: 'C' },
  });
  return { code: res.status ?? 1, stdout: res.stdout, stderr: res.stderr };
};
