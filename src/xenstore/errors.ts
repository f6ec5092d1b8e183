import type { XsErrno } from './wire.js';

/** Base of every error the xenstore layer throws; match on `code`, not on the class. */
export class XsError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'XsError';
  }
}

/** xenstored answered XS_ERROR: `code` is the errno name it sent (ENOENT, EACCES, ...). */
export class XsRemoteError extends XsError {
  constructor(
    readonly errno: XsErrno | string,
    readonly op: string,
    readonly path?: string,
  ) {
    super(errno, `xenstore ${op}${path === undefined ? '' : ` ${path}`}: ${errno}`);
    this.name = 'XsRemoteError';
  }
}

/** A request that would break the protocol's limits, refused before it is sent. */
export class XsLimitError extends XsError {
  constructor(message: string) {
    super('XS_LIMIT', message);
    this.name = 'XsLimitError';
  }
}

/** The connection closed (or was never opened) while a request was outstanding. */
export class XsConnectionError extends XsError {
  constructor(message: string, options?: ErrorOptions) {
    super('XS_CONNECTION', message, options);
    this.name = 'XsConnectionError';
  }
}

/** The peer sent bytes that are not a well-formed xs_wire frame. */
export class XsProtocolError extends XsError {
  constructor(message: string) {
    super('XS_PROTOCOL', message);
    this.name = 'XsProtocolError';
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
    this.name = 'XsTimeoutError';
  }
}

/** An argument the protocol cannot carry (a NUL inside a path, a bad domid...). */
export class XsArgumentError extends XsError {
  constructor(message: string) {
    super('XS_INVALID_ARGUMENT', message);
    this.name = 'XsArgumentError';
  }
}

/** A transaction used after commit/abort, or lost with the connection that opened it. */
export class XsTransactionStateError extends XsError {
  constructor(message: string) {
    super('XS_TX_FINISHED', message);
    this.name = 'XsTransactionStateError';
  }
}
