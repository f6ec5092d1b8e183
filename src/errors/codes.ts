/**
 * Every error code ZynClone throws, in one table: the exit status `vmclone`
 * ends with and what the code means. docs/errors.md is generated from it
 * (test/errors/codes.test.ts fails while the committed page differs).
 */

/** vmclone's exit statuses; scripts rely on them. */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  BUSY: 3,
  NOT_FOUND: 4,
  REFUSED: 5,
  CONFIG: 6,
  LOCKDOWN_TIMEOUT: 7,
} as const;

export type ExitName = keyof typeof EXIT;
export type ExitStatus = (typeof EXIT)[ExitName];

/** What each exit status tells a script. */
export const EXIT_MEANING: Readonly<Record<ExitName, string>> = {
  OK: 'success',
  FAILURE: 'failure (a step failed; a create or start was rolled back)',
  USAGE: 'usage error',
  BUSY: 'busy: another operation runs on this VM',
  NOT_FOUND: 'not found: no such VM or clone',
  REFUSED: 'refused: clone exists, wrong state, or this kind of clone is not allowed',
  CONFIG: 'invalid configuration',
  LOCKDOWN_TIMEOUT: 'the network monitor did not acknowledge the lockdown in time',
};

export interface ErrorCodeSpec {
  /** The layer that throws it (the docs group codes by it). */
  readonly layer: 'xenstore' | 'xen' | 'core' | 'daemons';
  readonly exit: ExitName;
  readonly meaning: string;
}

/** xenstored's errno names (xsd_errors), namespaced XS_<errno> so they never read as fs errnos. */
const XS_ERRNOS = {
  XS_EINVAL:
    'xenstored refused the request as invalid (bad path, bad value, bad permissions list).',
  XS_EACCES: 'The connection may not read or write that node.',
  XS_EEXIST: 'The node or watch exists already.',
  XS_EISDIR: 'The path names a directory where xenstored wanted a leaf.',
  XS_ENOENT: 'No such node (or transaction, or watch).',
  XS_ENOMEM: 'xenstored is out of memory.',
  XS_ENOSPC: 'A xenstored quota (nodes, size, watches, transactions) is exhausted.',
  XS_EIO: 'xenstored failed internally.',
  XS_ENOTEMPTY: 'The node still has children.',
  XS_ENOSYS: 'xenstored does not know the request type.',
  XS_EROFS: 'xenstored is read-only.',
  XS_EBUSY: 'xenstored is busy (a transaction is already open on this connection, ...).',
  XS_EAGAIN: 'A transaction conflicted with another write; run it again.',
  XS_EISCONN: 'The domain is already introduced.',
  XS_E2BIG: 'The request or reply is larger than xenstored allows.',
  XS_EPERM: 'The operation is not permitted to this connection.',
  XS_EQUOTA: 'An oxenstored quota is exhausted.',
  XS_EUNKNOWN: 'xenstored answered with an errno name this client does not know (kept in `errno`).',
} as const;

const xsErrnos = Object.fromEntries(
  Object.entries(XS_ERRNOS).map(([code, meaning]) => [
    code,
    { layer: 'xenstore', exit: 'FAILURE', meaning },
  ]),
) as Record<keyof typeof XS_ERRNOS, ErrorCodeSpec>;

const fail = (layer: ErrorCodeSpec['layer'], meaning: string) =>
  ({ layer, exit: 'FAILURE', meaning }) as const;
const as = (layer: ErrorCodeSpec['layer'], exit: ExitName, meaning: string) =>
  ({ layer, exit, meaning }) as const;

export const ERROR_CODES = {
  ...xsErrnos,
  XS_LIMIT: fail('xenstore', 'A request would break the protocol limits; refused before sending.'),
  XS_CONNECTION: fail('xenstore', 'The XenStore connection closed or never opened.'),
  XS_PROTOCOL: fail('xenstore', 'The peer sent bytes that are not a well-formed xs_wire frame.'),
  XS_FRAME_TOO_LARGE: fail('xenstore', 'A frame header announced a payload over 4096 bytes.'),
  XS_TIMEOUT: fail('xenstore', 'A XenStore request got no answer within its deadline.'),
  XS_INVALID_ARGUMENT: fail(
    'xenstore',
    'An argument the protocol cannot carry (NUL in a path, bad domid).',
  ),
  XS_TX_FINISHED: fail(
    'xenstore',
    'A transaction used after commit or abort, or lost with its connection.',
  ),

  XL_CONFIG_SYNTAX: fail('xen', 'An xl domain config file that xl itself would refuse.'),
  XL_CONFIG_KEY: fail('xen', 'A key name that xl would refuse in a domain config.'),
  XL_CONFIG_TYPE: fail('xen', 'An xl config key has a value of the wrong type.'),
  XL_CONFIG_VALUE: fail('xen', 'An xl config key has a value xl would refuse.'),
  XL_VIF_SPEC: fail('xen', "A vif spec string that xl's parser would refuse."),
  XL_DISK_SPEC: fail('xen', "A disk spec string that xl's parser would refuse."),
  XL_NO_SUCH_DOMAIN: fail('xen', 'xl knows no domain of that name or id.'),
  XL_DUPLICATE_NAME: fail('xen', 'A domain of that name exists already.'),
  XL_BAD_CONFIG: fail('xen', 'xl refused the domain config.'),
  XL_BAD_SAVEFILE: fail('xen', 'A save image that xl cannot restore.'),
  XL_TIMEOUT: fail('xen', 'An xl command did not finish in time and was killed.'),
  XL_NOT_FOUND: fail('xen', 'The xl program is not installed or not executable.'),
  XL_PARSE: fail('xen', 'Output of xl (or a XenStore node) does not have the documented shape.'),
  XL_FAILED: fail('xen', 'An xl command failed; the message carries its stderr.'),
  XEN_WAIT_TIMEOUT: fail('xen', 'A wait on XenStore state did not finish in time.'),
  XEN_BAD_DOMID: fail('xen', 'A value that should be a domain id is not one.'),
  XEN_BAD_UUID: fail('xen', 'A value that should be a UUID is not one.'),
  XEN_BAD_STATE: fail('xen', 'A value that should be a xenbus state is not one.'),
  XEN_BAD_VDEV: fail(
    'xen',
    'A value that should be a virtual device name (xvda, hda, ...) is not one.',
  ),

  RUN_NOT_FOUND: fail('core', 'A program to run is not installed or not executable.'),
  RUN_FAILED: fail(
    'core',
    'A program exited with a failure status; the message carries its stderr.',
  ),
  RUN_TIMEOUT: fail('core', 'A program did not finish in time and was killed.'),

  ROOT_INVALID: fail('core', 'ZYNCLONE_ROOT (or a configured path) is not a usable absolute path.'),
  VM_NAME_INVALID: as('core', 'CONFIG', 'Not a usable VM name (letters, digits, ".", "_", "-").'),
  CONFIG_INVALID: as(
    'core',
    'CONFIG',
    'A value, a key or the shape of a configuration file breaks the schema.',
  ),
  CONFIG_PARSE: as(
    'core',
    'CONFIG',
    'A configuration file is not valid JSON, gives a key twice, or is a malformed generated file.',
  ),
  CONFIG_IO: as('core', 'CONFIG', 'A configuration file could not be read or written.'),
  VIF_MASK_INVALID: as(
    'core',
    'CONFIG',
    'A vif mask is not `all`, `none` or a list of device ids 0..63.',
  ),
  NFT_SCRIPT_INVALID: fail(
    'core',
    'An nftables table name or vif prefix that cannot be written safely.',
  ),

  STATE_OPEN: fail('core', 'The state database cannot be opened or is not ours.'),
  STATE_SCHEMA_TOO_NEW: as(
    'core',
    'REFUSED',
    'The state database was written by a newer ZynClone.',
  ),
  STATE_LOCKED: fail('core', 'Another process held the state database lock too long.'),
  STATE_INVALID: fail('core', 'A value handed to the state store is malformed.'),
  OPERATION_NOT_FOUND: fail('core', 'No operation with that id in the journal.'),
  OPERATION_NOT_RUNNING: fail('core', 'The operation already finished.'),
  OPERATION_NOT_OWNED: fail('core', 'The operation belongs to another process.'),
  OPERATION_STEPS_OPEN: fail(
    'core',
    'An operation was to finish while a journaled step has no outcome.',
  ),
  STEP_NOT_FOUND: fail('core', 'No such step in the operation journal.'),
  VM_BUSY: as('core', 'BUSY', 'Another operation runs on the VM; retry later.'),

  VM_NOT_FOUND: as('core', 'NOT_FOUND', 'No domain or xl config file for the VM.'),
  CLONE_NOT_FOUND: as('core', 'NOT_FOUND', 'The VM has no clone.'),
  CLONE_EXISTS: as(
    'core',
    'REFUSED',
    'The VM already has a clone, or a domain has the clone name.',
  ),
  CLONE_NAME_TAKEN: as('core', 'REFUSED', "The clone name is taken by another VM's clone."),
  CLONE_STATE: as(
    'core',
    'REFUSED',
    "The transition is not allowed from the clone's current state.",
  ),
  CLONE_REFUSED: as(
    'core',
    'REFUSED',
    'ZynClone refuses this clone (continuous replication, wrong original state, ...).',
  ),
  CLONE_CONFIG: as('core', 'CONFIG', "The original's xl config cannot be used to build a clone."),
  ISOLATION_BRIDGE: as(
    'core',
    'CONFIG',
    'The isolation bridge cannot be made, or is a production bridge (it carries a non-clone vif or has an uplink).',
  ),
  LOCKDOWN_TIMEOUT: as(
    'core',
    'LOCKDOWN_TIMEOUT',
    'The net monitor did not acknowledge the lockdown in time; the clone stays paused.',
  ),
  CLONE_FAILED: fail('core', 'A step failed; the operation was rolled back.'),

  VOLUME_NOT_SHARED: as(
    'core',
    'NOT_FOUND',
    "The device is not one of the VM's shared volumes (config `shared_volumes`).",
  ),
  VOLUME_REFUSED: as(
    'core',
    'REFUSED',
    'The switch is not allowed now (read-only mode, already there, no clone).',
  ),
  VOLUME_TWO_WRITERS: as(
    'core',
    'REFUSED',
    'The attach would give the volume a second writer (or a reader next to a writer).',
  ),
  VOLUME_GUEST_REFUSED: as(
    'core',
    'REFUSED',
    'The holding guest did not let go of the volume (it is mounted or open inside).',
  ),
  VOLUME_SWITCH_FAILED: fail('core', 'A step of the volume switch failed; it was rolled back.'),

  UPGRADE_TOO_NEW: as(
    'core',
    'REFUSED',
    'Something on the host was written by a newer ZynClone; nothing was changed.',
  ),
  UPGRADE_LEGACY_INVALID: as(
    'core',
    'CONFIG',
    'Legacy guest files that cannot be imported as they are; nothing was changed.',
  ),
  UPGRADE_FAILED: fail('core', 'A part cannot be read or migrated.'),
  CLI_USAGE: as(
    'core',
    'USAGE',
    'The vmclone command line has an unknown command or option, lacks an argument, or gives a value an option does not take.',
  ),
  LOGS_USAGE: as('core', 'USAGE', 'vmclone logs was given a daemon name or option it cannot use.'),

  CONSOLE_NOT_RUNNING: as('core', 'REFUSED', 'The VM has no clone, or its clone does not run.'),
  CONSOLE_DISABLED: as('core', 'REFUSED', 'console_enabled is false for the VM.'),
  CONSOLE_SPICE: as(
    'core',
    'REFUSED',
    "The clone's only console is SPICE, which the web console cannot show.",
  ),
  CONSOLE_NO_VNC: as(
    'core',
    'REFUSED',
    'The clone has no VNC server (no console/vnc-port in XenStore).',
  ),
  CONSOLE_MONITOR_DOWN: fail(
    'core',
    'clone_console_monitor has not published its URL, or its heartbeat is stale.',
  ),
  CONSOLE_TICKET_LIMIT: as('core', 'BUSY', 'Too many unexpired console tickets are outstanding.'),
  CONSOLE_TICKET_MALFORMED: fail(
    'core',
    'A console ticket node in XenStore is not what the issuer writes.',
  ),

  STORAGE_INVALID_DISK: fail('core', 'A disk spec handed to storage is malformed.'),
  STORAGE_SOURCE_MISSING: fail(
    'core',
    "The original's disk file or volume does not exist or cannot be read.",
  ),
  STORAGE_DEST_EXISTS: fail(
    'core',
    "The snapshot's destination exists already; ZynClone never overwrites.",
  ),
  STORAGE_DEST_UNWRITABLE: fail('core', 'The destination directory cannot be written.'),
  STORAGE_REFLINK_UNSUPPORTED: as(
    'core',
    'REFUSED',
    'A reflink was asked for where the filesystem cannot share extents.',
  ),
  STORAGE_COPY_NEEDS_PAUSE: as(
    'core',
    'REFUSED',
    'A full copy is needed but the running original will not be paused for it.',
  ),
  STORAGE_OVERLAY_UNSAFE: as(
    'core',
    'REFUSED',
    'A qcow2 overlay was asked for while its backing file may still be written.',
  ),
  STORAGE_BACKING_RELATIVE: fail(
    'core',
    "A qcow2 image's backing file is relative and would not resolve.",
  ),
  STORAGE_LVM_FAILED: fail(
    'core',
    'An LVM command is missing or failed, or its report could not be parsed.',
  ),
  STORAGE_TOOL_MISSING: fail('core', 'A needed tool (qemu-img, lvm) is not installed.'),
  STORAGE_QEMU_IMG_FAILED: fail('core', 'A qemu-img command failed.'),
  STORAGE_NO_BACKEND: as(
    'core',
    'REFUSED',
    'No storage backend can snapshot this disk here; the message says why.',
  ),
  STORAGE_BAD_RECORD: fail('core', 'A snapshot record read back from the journal is not valid.'),
  STORAGE_IO: fail('core', 'Reading or writing a disk failed while snapshotting or removing.'),

  NFT_FAILED: fail(
    'daemons',
    'nft refused a ruleset transaction; the message carries its complaint.',
  ),
  NFT_UNAVAILABLE: fail('daemons', 'Neither libnftables nor the nft program can be used.'),
  NFT_TIMEOUT: fail('daemons', 'An nftables transaction did not finish in time.'),
} as const satisfies Record<string, ErrorCodeSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** The exit status for an error, from its stable `code` (FAILURE for anything unknown). */
export function exitStatusFor(err: unknown): ExitStatus {
  const code = (err as { code?: unknown } | null)?.code;
  return isErrorCode(code) ? EXIT[ERROR_CODES[code].exit] : EXIT.FAILURE;
}
