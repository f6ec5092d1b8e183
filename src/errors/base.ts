import type { ErrorCode } from './codes.js';

/**
 * Base of every error ZynClone throws. Match on `code` (see ERROR_CODES),
 * never on the class or the message text.
 */
export class ZynCloneError<C extends ErrorCode = ErrorCode> extends Error {
  constructor(
    readonly code: C,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Whether `err` is one of ours, and (given `code`) carries exactly that code. */
export function isZynCloneError<C extends ErrorCode>(
  err: unknown,
  code?: C,
): err is ZynCloneError<C> {
  return err instanceof ZynCloneError && (code === undefined || err.code === code);
}
