// The guest request protocol (docs/xenstore-contract.md, "Guest requests"):
// what a guest writes, how it is parsed, and what is written back. Pure: no
// I/O, so the guest clients' test vectors exercise exactly this code.
//
// A request is one line of printable ASCII in one node, so that a guest needs
// a single xenstore-write (bash) or SetValue (PowerShell) and a half-written
// request can never be seen:
//
//   data/zynclone/request = "<id> <op>[ <key>=<value>]..."
import {
  GUEST_REPLY_FIELDS,
  GUEST_REPLY_ROOT,
  GUEST_REQUEST_NODE,
} from '../../core/xenstore/layout.js';

/** Relative to the guest's home, /local/domain/<domid>. */
export const REQUEST_NODE = GUEST_REQUEST_NODE;
/** Relative to the guest's home; owned by dom0, read-only for the guest. */
export const REPLY_ROOT = GUEST_REPLY_ROOT;
export const PROTOCOL_VERSION = '1';

export const MAX_REQUEST_BYTES = 256;
const ID_PATTERN = /^[A-Za-z0-9_-]{1,40}$/;
const TOKEN_PATTERN = /^[\x21-\x7e]+$/;

/** Operations a guest can ask for. */
export const GUEST_OPS = [
  'status',
  'create',
  'start',
  'stop',
  'activate',
  'deactivate',
  'remove',
  'switch-volume',
] as const;
export type GuestOp = (typeof GUEST_OPS)[number];

/**
 * A virtual block device as guests name it: xvdX, hdX or sdX with an optional
 * partition number (never a path, never another VM's name).
 */
const VDEV_PATTERN = /^(xvd|hd|sd)[a-z]{1,2}[0-9]{0,2}$/;

/** An argument's allowed values: a list, or a pattern for names. */
export type ArgValues = readonly string[] | { readonly pattern: RegExp; readonly what: string };

/** Arguments each op accepts, with their allowed values. */
export const OP_ARGS: { readonly [O in GuestOp]: { readonly [key: string]: ArgValues } } = {
  status: {},
  create: { kind: ['offline', 'online', 'memory'], start: ['yes', 'no'] },
  start: {},
  stop: { force: ['yes', 'no'] },
  activate: {},
  deactivate: {},
  remove: {},
  'switch-volume': {
    vdev: { pattern: VDEV_PATTERN, what: 'a virtual device like xvdb, hdb or sdb' },
    to: ['clone', 'original'],
  },
};

/** Arguments an op cannot do without. */
export const REQUIRED_ARGS: { readonly [O in GuestOp]?: readonly string[] } = {
  'switch-volume': ['vdev', 'to'],
};

function allows(values: ArgValues, value: string): boolean {
  return 'pattern' in values ? values.pattern.test(value) : values.includes(value);
}

function describeValues(values: ArgValues): string {
  return 'pattern' in values ? values.what : values.join(' or ');
}

export interface GuestRequest {
  readonly id: string;
  readonly op: GuestOp;
  readonly args: Readonly<Record<string, string>>;
}

/** Codes the orchestrator itself answers with; the lifecycle's codes pass through. */
export type ProtocolErrorCode =
  /** Not one line of printable ASCII of at most MAX_REQUEST_BYTES, or malformed. */
  | 'BAD_REQUEST'
  /** The op is unknown or not offered to guests. */
  | 'UNKNOWN_OP'
  /** The op is not in the VM's guest_allowed_operations. */
  | 'OP_NOT_ALLOWED'
  /** The requesting domain is a clone and guest_clone_requests is off. */
  | 'CLONE_REQUEST_REFUSED'
  /** Too many requests from this domain; wait and use a new id. */
  | 'RATE_LIMITED'
  /** An operation runs for this VM and the queue behind it is full. */
  | 'BUSY'
  /** The orchestrator stopped while the operation ran; `status` tells how it ended. */
  | 'INTERRUPTED'
  /** The operation failed without a code of its own. */
  | 'FAILED';

export class ProtocolError extends Error {
  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
    /** The request id, when it could be read: the answer goes under it. */
    readonly id?: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/**
 * Parses a request as read from XenStore. Throws ProtocolError with the id
 * set whenever the id itself was readable, so that the refusal can be
 * answered where the guest looks for it.
 */
export function parseRequest(raw: Buffer): GuestRequest {
  if (raw.length > MAX_REQUEST_BYTES) {
    throw new ProtocolError('BAD_REQUEST', `request longer than ${MAX_REQUEST_BYTES} bytes`);
  }
  for (const byte of raw) {
    if (byte < 0x20 || byte > 0x7e) {
      throw new ProtocolError('BAD_REQUEST', 'request is not printable ASCII');
    }
  }
  const text = raw.toString('latin1');
  const [id, op, ...rest] = text.split(' ');
  if (id === undefined || !ID_PATTERN.test(id)) {
    throw new ProtocolError(
      'BAD_REQUEST',
      'request must start with an id of 1-40 letters, digits, "_" or "-"',
    );
  }
  if (op === undefined || op === '') {
    throw new ProtocolError('BAD_REQUEST', 'request has no operation after its id', id);
  }
  if (!(GUEST_OPS as readonly string[]).includes(op)) {
    throw new ProtocolError(
      'UNKNOWN_OP',
      `unknown operation ${JSON.stringify(op)}; one of ${GUEST_OPS.join(', ')}`,
      id,
    );
  }
  const allowed = OP_ARGS[op as GuestOp];
  const args: Record<string, string> = {};
  for (const token of rest) {
    const eq = token.indexOf('=');
    if (!TOKEN_PATTERN.test(token) || eq <= 0) {
      throw new ProtocolError(
        'BAD_REQUEST',
        `argument ${JSON.stringify(token)} is not key=value (one space between tokens)`,
        id,
      );
    }
    const key = token.slice(0, eq);
    const value = token.slice(eq + 1);
    const values = Object.hasOwn(allowed, key) ? allowed[key] : undefined;
    if (values === undefined) {
      const known = Object.keys(allowed);
      throw new ProtocolError(
        'BAD_REQUEST',
        `${op} takes ${known.length ? `only ${known.join(', ')}` : 'no arguments'}, not ${JSON.stringify(key)}`,
        id,
      );
    }
    if (!allows(values, value)) {
      throw new ProtocolError(
        'BAD_REQUEST',
        `${key} must be ${describeValues(values)}, not ${JSON.stringify(value)}`,
        id,
      );
    }
    if (Object.hasOwn(args, key)) {
      throw new ProtocolError('BAD_REQUEST', `${key} given twice`, id);
    }
    args[key] = value;
  }
  const missing = (REQUIRED_ARGS[op as GuestOp] ?? []).filter((k) => !Object.hasOwn(args, k));
  if (missing.length > 0) {
    throw new ProtocolError('BAD_REQUEST', `${op} needs ${missing.join(' and ')}`, id);
  }
  return { id, op: op as GuestOp, args };
}

/** The reverse of parseRequest: what a client writes. */
export function formatRequest(req: GuestRequest): string {
  return [req.id, req.op, ...Object.entries(req.args).map(([k, v]) => `${k}=${v}`)].join(' ');
}

export const REPLY_STATES = ['accepted', 'progress', 'ok', 'error'] as const;
export type ReplyState = (typeof REPLY_STATES)[number];

export function isFinal(state: ReplyState): boolean {
  return state === 'ok' || state === 'error';
}

/**
 * One reply, as the nodes under zynclone/reply/<id>/. Absent fields are
 * absent nodes; `state` is written in the same transaction as the rest.
 */
export interface Reply {
  readonly state: ReplyState;
  readonly op: string;
  /** Error code (state error). */
  readonly code?: string;
  /** Human text: the step (progress), the outcome (ok) or what went wrong (error). */
  readonly message?: string;
  /** After the operation (state ok): running, active, inactive or none. */
  readonly cloneState?: string;
  readonly cloneName?: string;
}

const MAX_MESSAGE = 400;

/** Guest-visible text: one line of printable ASCII, bounded. */
export function cleanText(text: string, max = MAX_MESSAGE): string {
  const flat = text.replace(/[^\x20-\x7e]+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/** The reply's nodes, relative to zynclone/reply/<id>. */
export function replyNodes(reply: Reply): Record<string, string> {
  const out: Record<string, string> = { state: reply.state, op: reply.op };
  if (reply.code !== undefined) out.code = reply.code;
  if (reply.message !== undefined) out.message = cleanText(reply.message);
  if (reply.cloneState !== undefined) out['clone-state'] = reply.cloneState;
  if (reply.cloneName !== undefined) out['clone-name'] = reply.cloneName;
  return out;
}

/** Field nodes a reply may have; the orchestrator removes the ones a new state lacks. */
export const REPLY_FIELDS: readonly string[] = GUEST_REPLY_FIELDS;

/** An error code from anything thrown: its own stable code, else FAILED. */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,39}$/.test(code) ? code : 'FAILED';
}
