// Reading a domain config the way xl does, with the product's parser, and
// reporting syntax errors in libxlu's words so the simulator's xl fails like
// the real one (ZynClone's xl driver classifies on `config parsing error`).
import { XlConfig, XlConfigError } from '../../xen/index.js';
import { SimError } from '../proc.js';

/** A config file libxlu cannot parse; the message is libxlu's line. */
export class XlSyntaxError extends SimError {
  constructor(message: string) {
    super('XL_BAD_CONFIG', message);
    this.name = 'XlSyntaxError';
  }
}

function parse(text: string, source: string): XlConfig {
  try {
    return XlConfig.parse(text, source);
  } catch (e) {
    if (e instanceof XlConfigError) throw new XlSyntaxError(libxluSyntaxError(e, text));
    throw e;
  }
}

/**
 * The file, then the `key=value` arguments after it on the command line:
 * xl feeds those to the same config (xlu_cfg_readdata), so they override or,
 * with `+=`, extend the file's settings, and their errors name the file.
 */
export function readConfig(text: string, source: string, extra: readonly string[]): XlConfig {
  const cfg = parse(text, source);
  if (extra.length === 0) return cfg;
  const more = parse(extra.join('\n'), source);
  return parse(`${text}\n${more.print()}\n`, source);
}

/**
 * libxlu's report of a syntax error (libxlu_cfg.c xlu__cfg_yyerror):
 * `<file>:<line>: config parsing error near `<token>': syntax error`.
 */
export function libxluSyntaxError(err: XlConfigError, text: string): string {
  const line = text.split('\n')[err.line - 1] ?? '';
  return `${err.source}:${err.line}: config parsing error near \`${nearToken(line, err.column - 1)}': syntax error`;
}

/** The token libxlu's lexer would have read at `col`: '' at an end of line or file. */
function nearToken(line: string, col: number): string {
  const c = line[col];
  if (c === undefined || c === '\r') return '';
  if (c === '"' || c === "'") {
    const close = line.indexOf(c, col + 1);
    return close < 0 ? line.slice(col) : line.slice(col, close + 1);
  }
  const word = /[A-Za-z0-9_.]+/y;
  word.lastIndex = col;
  return word.exec(line)?.[0] ?? (line.startsWith('+=', col) ? '+=' : c);
}
