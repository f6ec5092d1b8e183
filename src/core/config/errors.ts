import { ZynCloneError } from '../../errors/index.js';

/** One thing wrong in a configuration file or value. */
export interface ConfigIssue {
  /** The file (or other source) the value came from or was going to. */
  readonly file: string;
  /** The key, if the problem is about one key. */
  readonly key?: string;
  /** The offending value as the user wrote it (JSON text, shortened). */
  readonly value?: string;
  /** What is wrong, and what is allowed. */
  readonly message: string;
  /** 1-based line, for files parsed line by line. */
  readonly line?: number;
}

export type ConfigErrorCode =
  /** A value, a key or the shape of a file breaks the schema. */
  | 'CONFIG_INVALID'
  /** A file is not valid JSON (or not a valid generated key=value file). */
  | 'CONFIG_PARSE'
  /** A file could not be read or written. */
  | 'CONFIG_IO';

export class ConfigError extends ZynCloneError<ConfigErrorCode> {
  constructor(
    code: ConfigErrorCode,
    readonly issues: readonly ConfigIssue[],
    options?: ErrorOptions,
  ) {
    super(code, issues.map(formatIssue).join('\n'), options);
  }
}

export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line === undefined ? issue.file : `${issue.file}:${issue.line}`;
  const value = issue.value === undefined ? '' : ` = ${issue.value}`;
  const key = issue.key === undefined ? '' : `key "${issue.key}"${value}: `;
  return `${where}: ${key}${issue.message}`;
}

/** JSON text of a value, shortened for messages (values may be hostile or huge). */
export function showValue(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
