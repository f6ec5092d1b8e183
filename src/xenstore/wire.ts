// Names and numbers copied from xen/include/public/io/xs_wire.h; never renumber.
import { ZynCloneError } from '../errors/index.js';

export const XsType = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  // 20 was XS_RESTRICT, removed upstream; the hole stays.
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
  INVALID: 0xffff,
} as const;

export type XsTypeName = keyof typeof XsType;
export type XsTypeCode = (typeof XsType)[XsTypeName];

const typeNames = new Map<number, XsTypeName>(
  Object.entries(XsType).map(([name, code]) => [code, name as XsTypeName]),
);

export function xsTypeName(code: number): XsTypeName | undefined {
  return typeNames.get(code);
}

/** The errno names xenstored sends in XS_ERROR payloads (xsd_errors table order). */
export const XS_ERRNO_NAMES = [
  'EINVAL',
  'EACCES',
  'EEXIST',
  'EISDIR',
  'ENOENT',
  'ENOMEM',
  'ENOSPC',
  'EIO',
  'ENOTEMPTY',
  'ENOSYS',
  'EROFS',
  'EBUSY',
  'EAGAIN',
  'EISCONN',
  'E2BIG',
  'EPERM',
  // oxenstored answers quota violations with EQUOTA.
  'EQUOTA',
] as const;

export type XsErrno = (typeof XS_ERRNO_NAMES)[number];

export const HEADER_SIZE = 16;
/** A payload over this is "very bad": xenstored drops the connection. */
export const XENSTORE_PAYLOAD_MAX = 4096;
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;

export interface XsFrame {
  type: number;
  reqId: number;
  txId: number;
  payload: Buffer;
}

export function encodeFrame(frame: XsFrame): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_SIZE + frame.payload.length);
  buf.writeUInt32LE(frame.type, 0);
  buf.writeUInt32LE(frame.reqId >>> 0, 4);
  buf.writeUInt32LE(frame.txId >>> 0, 8);
  buf.writeUInt32LE(frame.payload.length, 12);
  frame.payload.copy(buf, HEADER_SIZE);
  return buf;
}

export class FrameTooLargeError extends ZynCloneError<'XS_FRAME_TOO_LARGE'> {
  constructor(readonly length: number) {
    super(
      'XS_FRAME_TOO_LARGE',
      `xenstore frame announces ${length} bytes, more than ${XENSTORE_PAYLOAD_MAX}`,
    );
  }
}

/**
 * Incremental decoder: feed it whatever the socket delivered, get whole frames.
 * A header announcing an oversized payload throws FrameTooLargeError; the
 * connection is then beyond repair and must be closed.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(data: Buffer): XsFrame[] {
    this.chunks.push(data);
    this.buffered += data.length;
    const frames: XsFrame[] = [];
    for (;;) {
      if (this.buffered < HEADER_SIZE) break;
      const head = this.peek(HEADER_SIZE);
      const len = head.readUInt32LE(12);
      if (len > XENSTORE_PAYLOAD_MAX) throw new FrameTooLargeError(len);
      if (this.buffered < HEADER_SIZE + len) break;
      const whole = this.take(HEADER_SIZE + len);
      frames.push({
        type: whole.readUInt32LE(0),
        reqId: whole.readUInt32LE(4),
        txId: whole.readUInt32LE(8),
        payload: whole.subarray(HEADER_SIZE),
      });
    }
    return frames;
  }

  get pendingBytes(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

/** `a\0b\0` -> ['a', 'b']; the trailing NUL is optional, as xenstored sends both forms. */
export function splitNul(payload: Buffer): string[] {
  if (payload.length === 0) return [];
  const text = payload.toString('utf8');
  const parts = text.split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

export function joinNul(parts: readonly string[], trailing = true): Buffer {
  return Buffer.from(parts.join('\0') + (trailing ? '\0' : ''), 'utf8');
}

/** Permission entries as xenstored prints them: `n0`, `r5`, `w3`, `b7`. */
export type XsPermAccess = 'none' | 'read' | 'write' | 'both';
export interface XsPerm {
  domid: number;
  access: XsPermAccess;
}

const accessToChar: Record<XsPermAccess, string> = { none: 'n', read: 'r', write: 'w', both: 'b' };
const charToAccess: Record<string, XsPermAccess> = { n: 'none', r: 'read', w: 'write', b: 'both' };

export function formatPerm(perm: XsPerm): string {
  return `${accessToChar[perm.access]}${perm.domid}`;
}

export function parsePerm(text: string): XsPerm {
  const access = charToAccess[text.charAt(0)];
  const rest = text.slice(1);
  if (!access || !/^\d{1,5}$/.test(rest)) throw new RangeError(`bad xenstore permission '${text}'`);
  const domid = Number(rest);
  if (domid > 0xffff) throw new RangeError(`bad xenstore permission '${text}'`);
  return { domid, access };
}
