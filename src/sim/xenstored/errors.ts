import type { XsErrno } from '../../xenstore/wire.js';

/**
 * A request failed with the errno xenstored would send back in XS_ERROR.
 * Thrown inside request handlers and turned into the error reply by the server.
 */
export class XsdError extends Error {
  readonly code: string;
  constructor(
    readonly errno: XsErrno,
    message?: string,
  ) {
    super(message ?? errno);
    this.name = 'XsdError';
    this.code = `XSD_${errno}`;
  }
}

export function fail(errno: XsErrno, message?: string): never {
  throw new XsdError(errno, message);
}
