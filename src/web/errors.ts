/**
 * Errors as the API answers them: the same stable `code` and message as
 * vmclone, the exit status vmclone would have given, and an HTTP status
 * that fits, from the error's `code` as vmclone maps it.
 */
import { EXIT, exitCodeFor } from '../cli/exit-codes.js';

/** Codes of the web layer itself (no CLI counterpart). */
export type WebErrorCode =
  | 'AUTH_REQUIRED'
  | 'AUTH_FAILED'
  | 'CSRF_FAILED'
  | 'REQUEST_REPLAYED'
  | 'LOGIN_RATE_LIMITED'
  | 'REQUEST_INVALID'
  | 'METRICS_FORBIDDEN';

export class WebError extends Error {
  constructor(
    readonly code: WebErrorCode,
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'WebError';
  }
}

/**
 * HTTP status by vmclone's exit status: the one table of error codes
 * (src/errors/codes.ts) decides both.
 */
const STATUS_BY_EXIT: Record<number, number> = {
  [EXIT.USAGE]: 400,
  [EXIT.BUSY]: 409,
  [EXIT.NOT_FOUND]: 404,
  [EXIT.REFUSED]: 409,
  [EXIT.CONFIG]: 422,
  [EXIT.LOCKDOWN_TIMEOUT]: 504,
};
/** Failures that are worth a retry, not a bug report. */
const STATUS_BY_CODE: Record<string, number> = { STATE_LOCKED: 503 };

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly exitCode: number };
}

/** HTTP status and body for any error thrown by core code or by the web layer. */
export function errorResponse(err: unknown): { status: number; body: ErrorBody } {
  const raw = (err as { code?: unknown } | null)?.code;
  const code = typeof raw === 'string' ? raw : 'FAILED';
  const message = err instanceof Error ? err.message : String(err);
  const exitCode = exitCodeFor(err);
  const status =
    err instanceof WebError
      ? err.status
      : (STATUS_BY_CODE[code] ?? STATUS_BY_EXIT[exitCode] ?? 500);
  return { status, body: { error: { code, message, exitCode } } };
}
