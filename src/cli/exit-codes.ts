/**
 * vmclone's exit statuses. Scripts may rely on them; they are listed in
 * `vmclone --help` and docs.
 */
export const EXIT = {
  OK: 0,
  /** Anything else went wrong (a step failed and was rolled back, xl failed, ...). */
  FAILURE: 1,
  /** Bad command line: unknown command or option, missing argument, bad value. */
  USAGE: 2,
  /** Another operation runs on the VM (VM_BUSY); retry later. */
  BUSY: 3,
  /** No such VM or clone (VM_NOT_FOUND, CLONE_NOT_FOUND). */
  NOT_FOUND: 4,
  /** Refused: the clone exists already, or the transition or clone kind is not allowed now. */
  REFUSED: 5,
  /** The configuration is invalid (CONFIG_*, CLONE_CONFIG, VIF_MASK_INVALID, VM_NAME_INVALID). */
  CONFIG: 6,
  /** The network monitor did not acknowledge the lockdown in time; the clone was not started. */
  LOCKDOWN_TIMEOUT: 7,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

const BY_CODE: Record<string, ExitCode> = {
  VM_BUSY: EXIT.BUSY,
  VM_NOT_FOUND: EXIT.NOT_FOUND,
  CLONE_NOT_FOUND: EXIT.NOT_FOUND,
  CLONE_EXISTS: EXIT.REFUSED,
  CLONE_NAME_TAKEN: EXIT.REFUSED,
  CLONE_STATE: EXIT.REFUSED,
  CLONE_REFUSED: EXIT.REFUSED,
  STORAGE_COPY_NEEDS_PAUSE: EXIT.REFUSED,
  STORAGE_NO_BACKEND: EXIT.REFUSED,
  STORAGE_REFLINK_UNSUPPORTED: EXIT.REFUSED,
  STORAGE_OVERLAY_UNSAFE: EXIT.REFUSED,
  CONFIG_INVALID: EXIT.CONFIG,
  CONFIG_PARSE: EXIT.CONFIG,
  CONFIG_IO: EXIT.CONFIG,
  CLONE_CONFIG: EXIT.CONFIG,
  VIF_MASK_INVALID: EXIT.CONFIG,
  VM_NAME_INVALID: EXIT.CONFIG,
  LOCKDOWN_TIMEOUT: EXIT.LOCKDOWN_TIMEOUT,
  UPGRADE_TOO_NEW: EXIT.REFUSED,
  STATE_SCHEMA_TOO_NEW: EXIT.REFUSED,
  UPGRADE_LEGACY_INVALID: EXIT.CONFIG,
  LOGS_USAGE: EXIT.USAGE,
};

/** The exit status for an error, from its stable `code`. */
export function exitCodeFor(err: unknown): ExitCode {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? (BY_CODE[code] ?? EXIT.FAILURE) : EXIT.FAILURE;
}

export const EXIT_CODES_HELP = `Exit status:
  0  success
  1  failure (a step failed; a create or start was rolled back)
  2  usage error
  3  busy: another operation runs on this VM
  4  not found: no such VM or clone
  5  refused: clone exists, wrong state, this kind of clone is not allowed,
     or (upgrade) the host holds data of a newer release
  6  invalid configuration
  7  the network monitor did not acknowledge the lockdown in time`;
