import { type ErrorCode, ZynCloneError } from '../errors/index.js';
import { XS_ERRNO_NAMES, type XsErrno } from './wire.js';

type XsCode = Extract<ErrorCode, `XS_${string}`>;

/** Base of every error the xenstore layer throws; match on `code`, not on the class. */
export class XsError extends ZynCloneError<XsCode> {}

const KNOWN_ERRNOS: ReadonlySet<string> = new Set(XS_ERRNO_NAMES);

/**
 * xenstored answered XS_ERROR. `errno` is the name it sent (ENOENT, EACCES,
 * ...); `code` is that name namespaced (XS_ENOENT), so that a XenStore error
 * never passes for a filesystem errno.
 */
export class XsRemoteError extends XsError {
  constructor(
    readonly errno: XsErrno | string,
    readonly op: string,
    readonly path?: string,
  ) {
    super(
      KNOWN_ERRNOS.has(errno) ? (`XS_${errno}` as XsCode) : 'XS_EUNKNOWN',
      `xenstore ${op}${path === undefined ? '' : ` ${path}`}: ${errno}`,
    );
  }
}

/** A request that would break the protocol's limits, refused before it is sent. */
export class XsLimitError extends XsError {
  constructor(message: string) {
    super('XS_LIMIT', message);
  }
}

/** The connection closed (or was never opened) while a request was outstanding. */
export class XsConnectionError extends XsError {
  constructor(message: string, options?: ErrorOptions) {
    super('XS_CONNECTION', message, options);
  }
}

/** The peer sent bytes that are not a well-formed xs_wire frame. */
export class XsProtocolError extends XsError {
  constructor(message: string) {
    super('XS_PROTOCOL', message);
  }
}

export function isXsErrno(err: unknown, errno: string): boolean {
  return err instanceof XsRemoteError && err.errno === errno;
}

/** A request got no answer within its deadline (waiting for a connection included). */
export class XsTimeoutError extends XsError {
  constructor(
    readonly op: string,
    readonly timeoutMs: number,
  ) {
    super('XS_TIMEOUT', `xenstore ${op}: no answer within ${timeoutMs} ms`);
  }
}

/** An argument the protocol cannot carry (a NUL inside a path, a bad domid...). */
export class XsArgumentError extends XsError {
  constructor(message: string) {
    super('XS_INVALID_ARGUMENT', message);
  }
}

/** A transaction used after commit/abort, or lost with the connection that opened it. */
export class XsTransactionStateError extends XsError {
  constructor(message: string) {
    super('XS_TX_FINISHED', message);
  }
}
