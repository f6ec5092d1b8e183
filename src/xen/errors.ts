import { type ErrorCode, ZynCloneError } from '../errors/index.js';

type XenCode = Extract<ErrorCode, `XL_${string}` | `XEN_${string}`>;

/** Base of every error the xen layer throws; match on `code`, not on the class. */
export class XenError extends ZynCloneError<XenCode> {}

/** An xl domain config file (or a value in it) that xl itself would refuse. */
export class XlConfigError extends XenError {
  constructor(
    message: string,
    readonly line: number,
    readonly column: number,
    readonly source = 'config',
  ) {
    super('XL_CONFIG_SYNTAX', `${source}:${line}:${column}: ${message}`);
  }
}

/** A vif or disk spec string that xl's spec parser would refuse. */
export class XlSpecError extends XenError {
  constructor(
    code: 'XL_VIF_SPEC' | 'XL_DISK_SPEC',
    readonly spec: string,
    detail: string,
  ) {
    super(code, `${code === 'XL_VIF_SPEC' ? 'vif' : 'disk'} spec '${spec}': ${detail}`);
  }
}

export type XlErrorCode =
  | 'XL_NO_SUCH_DOMAIN'
  | 'XL_DUPLICATE_NAME'
  | 'XL_BAD_CONFIG'
  | 'XL_TIMEOUT'
  | 'XL_NOT_FOUND'
  | 'XL_PARSE'
  | 'XL_FAILED';

/** A failed `xl` run: which command, what it said on stderr, how it ended. */
export class XlError extends XenError {
  constructor(
    code: XlErrorCode,
    message: string,
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: ErrorOptions,
  ) {
    super(code, message, options);
  }
}

/** Output of `xl` (or a XenStore node) that does not have the documented shape. */
export class XlParseError extends XenError {
  constructor(what: string, detail: string) {
    super('XL_PARSE', `cannot parse ${what}: ${detail}`);
  }
}

/** A wait on XenStore state that did not finish in time. */
export class XenWaitTimeoutError extends XenError {
  constructor(what: string, timeoutMs: number) {
    super('XEN_WAIT_TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${what}`);
  }
}
