/**
 * Errors as the API answers them: the same stable `code` and message as
 * vmclone, the exit status vmclone would have given, and an HTTP status
 * that fits. Errors are mapped by their existing `code` fields.
 */
import { exitCodeFor } from '../cli/exit-codes.js';

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

const STATUS_BY_CODE: Record<string, number> = {
  VM_NOT_FOUND: 404,
  CLONE_NOT_FOUND: 404,
  VM_BUSY: 409,
  CLONE_EXISTS: 409,
  CLONE_NAME_TAKEN: 409,
  CLONE_STATE: 409,
  CLONE_REFUSED: 409,
  STORAGE_COPY_NEEDS_PAUSE: 409,
  STORAGE_NO_BACKEND: 409,
  STORAGE_REFLINK_UNSUPPORTED: 409,
  STORAGE_OVERLAY_UNSAFE: 409,
  CONFIG_INVALID: 422,
  CONFIG_PARSE: 422,
  CLONE_CONFIG: 422,
  VIF_MASK_INVALID: 422,
  VM_NAME_INVALID: 422,
  LOCKDOWN_TIMEOUT: 504,
  STATE_LOCKED: 503,
};

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly exitCode: number };
}

/** HTTP status and body for any error thrown by core code or by the web layer. */
export function errorResponse(err: unknown): { status: number; body: ErrorBody } {
  const raw = (err as { code?: unknown } | null)?.code;
  const code = typeof raw === 'string' ? raw : 'FAILED';
  const message = err instanceof Error ? err.message : String(err);
  const status = err instanceof WebError ? err.status : (STATUS_BY_CODE[code] ?? 500);
  return { status, body: { error: { code, message, exitCode: exitCodeFor(err) } } };
}
