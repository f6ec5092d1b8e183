// One small function per xs_wire request: build the payload (refusing what
// xenstored would refuse or choke on) and parse the reply. No I/O here.
import { XsArgumentError, XsLimitError, XsProtocolError } from './errors.js';
import {
  XENSTORE_ABS_PATH_MAX,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_REL_PATH_MAX,
  type XsPerm,
  XsType,
  type XsTypeCode,
  formatPerm,
  joinNul,
  parsePerm,
  splitNul,
} from './wire.js';

export interface XsRequest {
  type: XsTypeCode;
  payload: Buffer;
  /** Operation name for error messages ("read", "write", ...). */
  op: string;
  path?: string;
}

/** Throws XsLimitError / XsArgumentError for a path xenstored cannot take. */
export function checkPath(path: string, op: string): void {
  if (typeof path !== 'string' || path.length === 0) {
    throw new XsArgumentError(`xenstore ${op}: the path is empty`);
  }
  if (path.includes('\0')) {
    throw new XsArgumentError(`xenstore ${op}: the path contains a NUL byte`);
  }
  const bytes = Buffer.byteLength(path, 'utf8');
  // '@' paths are the special watch paths; they are matched like absolute ones.
  const absolute = path.startsWith('/') || path.startsWith('@');
  const max = absolute ? XENSTORE_ABS_PATH_MAX : XENSTORE_REL_PATH_MAX;
  if (bytes > max) {
    throw new XsLimitError(
      `xenstore ${op}: ${absolute ? 'absolute' : 'relative'} path of ${bytes} bytes is over the ${max}-byte limit`,
    );
  }
}

function request(type: XsTypeCode, op: string, payload: Buffer, path?: string): XsRequest {
  if (payload.length > XENSTORE_PAYLOAD_MAX) {
    const what =
      path === undefined ? '' : ` ${path.length > 80 ? `${path.slice(0, 80)}...` : path}`;
    throw new XsLimitError(
      `xenstore ${op}${what}: payload of ${payload.length} bytes is over the ${XENSTORE_PAYLOAD_MAX}-byte limit`,
    );
  }
  return path === undefined ? { type, op, payload } : { type, op, payload, path };
}

function pathRequest(type: XsTypeCode, op: string, path: string): XsRequest {
  checkPath(path, op);
  return request(type, op, joinNul([path]), path);
}

function checkDomid(domid: number, op: string): void {
  if (!Number.isInteger(domid) || domid < 0 || domid > 0xffff) {
    throw new XsArgumentError(`xenstore ${op}: domid ${domid} is not an integer in 0..65535`);
  }
}

export const build = {
  read: (path: string) => pathRequest(XsType.READ, 'read', path),
  mkdir: (path: string) => pathRequest(XsType.MKDIR, 'mkdir', path),
  rm: (path: string) => pathRequest(XsType.RM, 'rm', path),
  directory: (path: string) => pathRequest(XsType.DIRECTORY, 'directory', path),
  getPerms: (path: string) => pathRequest(XsType.GET_PERMS, 'get-perms', path),

  write(path: string, value: string | Buffer): XsRequest {
    checkPath(path, 'write');
    const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    // The value is not NUL-terminated: its length is what remains of the payload.
    return request(XsType.WRITE, 'write', Buffer.concat([joinNul([path]), data]), path);
  },

  directoryPart(path: string, offset: number): XsRequest {
    checkPath(path, 'directory');
    return request(XsType.DIRECTORY_PART, 'directory', joinNul([path, String(offset)]), path);
  },

  setPerms(path: string, perms: readonly XsPerm[]): XsRequest {
    checkPath(path, 'set-perms');
    if (perms.length === 0) {
      throw new XsArgumentError(`xenstore set-perms ${path}: at least the owner entry is needed`);
    }
    for (const p of perms) checkDomid(p.domid, 'set-perms');
    return request(XsType.SET_PERMS, 'set-perms', joinNul([path, ...perms.map(formatPerm)]), path);
  },

  watch(path: string, token: string): XsRequest {
    checkPath(path, 'watch');
    checkToken(token, 'watch');
    return request(XsType.WATCH, 'watch', joinNul([path, token]), path);
  },

  unwatch(path: string, token: string): XsRequest {
    checkPath(path, 'unwatch');
    checkToken(token, 'unwatch');
    return request(XsType.UNWATCH, 'unwatch', joinNul([path, token]), path);
  },

  transactionStart: () => request(XsType.TRANSACTION_START, 'transaction-start', joinNul([''])),

  transactionEnd: (commit: boolean) =>
    request(XsType.TRANSACTION_END, 'transaction-end', joinNul([commit ? 'T' : 'F'])),

  getDomainPath(domid: number): XsRequest {
    checkDomid(domid, 'get-domain-path');
    return request(XsType.GET_DOMAIN_PATH, 'get-domain-path', joinNul([String(domid)]));
  },

  isDomainIntroduced(domid: number): XsRequest {
    checkDomid(domid, 'is-domain-introduced');
    return request(XsType.IS_DOMAIN_INTRODUCED, 'is-domain-introduced', joinNul([String(domid)]));
  },

  introduce(domid: number, mfn: number | bigint, port: number): XsRequest {
    checkDomid(domid, 'introduce');
    if (typeof mfn === 'number' && (!Number.isSafeInteger(mfn) || mfn < 0)) {
      throw new XsArgumentError(`xenstore introduce: mfn ${mfn} is not a non-negative integer`);
    }
    if (typeof mfn === 'bigint' && mfn < 0n) {
      throw new XsArgumentError(`xenstore introduce: mfn ${mfn} is negative`);
    }
    if (!Number.isInteger(port) || port < 0 || port > 0xffffffff) {
      throw new XsArgumentError(`xenstore introduce: event channel port ${port} is out of range`);
    }
    return request(
      XsType.INTRODUCE,
      'introduce',
      joinNul([String(domid), String(mfn), String(port)]),
    );
  },

  release(domid: number): XsRequest {
    checkDomid(domid, 'release');
    return request(XsType.RELEASE, 'release', joinNul([String(domid)]));
  },

  resetWatches: () => request(XsType.RESET_WATCHES, 'reset-watches', joinNul([''])),
};

function checkToken(token: string, op: string): void {
  if (typeof token !== 'string' || token.length === 0 || token.includes('\0')) {
    throw new XsArgumentError(
      `xenstore ${op}: a watch token must be a non-empty string without NUL`,
    );
  }
}

/** Strips the one trailing NUL xenstored appends to string answers. */
export function replyString(payload: Buffer): string {
  const end =
    payload.length > 0 && payload[payload.length - 1] === 0 ? payload.length - 1 : payload.length;
  return payload.toString('utf8', 0, end);
}

export function parsePerms(payload: Buffer, path: string): XsPerm[] {
  try {
    return splitNul(payload).map(parsePerm);
  } catch (err) {
    throw new XsProtocolError(`xenstore get-perms ${path}: ${(err as Error).message}`);
  }
}

export function parseTxId(payload: Buffer): number {
  const text = replyString(payload);
  if (!/^\d{1,10}$/.test(text) || Number(text) === 0 || Number(text) > 0xffffffff) {
    throw new XsProtocolError(`xenstore transaction-start: bad transaction id '${text}'`);
  }
  return Number(text);
}

export function parseBool(payload: Buffer, op: string): boolean {
  const text = replyString(payload);
  if (text === 'T') return true;
  if (text === 'F') return false;
  throw new XsProtocolError(`xenstore ${op}: expected T or F, got '${text}'`);
}

/** A DIRECTORY_PART answer: `gen\0` then a slice of the NUL-separated child list. */
export function parseDirectoryPart(payload: Buffer): { generation: string; chunk: Buffer } {
  const nul = payload.indexOf(0);
  if (nul < 0)
    throw new XsProtocolError('xenstore directory: DIRECTORY_PART answer has no generation');
  return { generation: payload.toString('utf8', 0, nul), chunk: payload.subarray(nul + 1) };
}

/** An XS_WATCH_EVENT payload: `path\0token\0`. */
export function parseWatchEvent(payload: Buffer): { path: string; token: string } {
  const parts = splitNul(payload);
  if (parts.length < 2) {
    throw new XsProtocolError(
      `xenstore watch event carries ${parts.length} fields, expected path and token`,
    );
  }
  // A token may not contain NUL, but xenstored joins anything after the path; keep it whole.
  return { path: parts[0]!, token: parts.slice(1).join('\0') };
}
