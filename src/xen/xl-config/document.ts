import { XenError, XlConfigError } from '../errors.js';

/**
 * xl domain config files (xl.cfg(5)), with the grammar of libxlu
 * (`tools/libs/util/libxlu_cfg_l.l` and `libxlu_cfg_y.y`):
 * `key = value` or `key += value`, one per line or separated by `;`; a value is
 * a quoted string, a number or a `[ ... ]` list (nested lists allowed, newlines
 * and comments allowed inside, trailing comma allowed). Keys are `[a-z][._0-9a-z]*`,
 * numbers `[0-9][0-9a-fx]*`; everything is a string to libxl.
 *
 * An `XlConfig` keeps the file's bytes: printing an unedited document returns
 * the input byte for byte; `set` rewrites only the statement it touches (comments,
 * blank lines and key order stay), and new keys are appended.
 */

export type XlValue =
  | { kind: 'string'; value: string }
  | { kind: 'number'; text: string }
  | { kind: 'list'; items: XlValue[] };

/** What callers pass to `set`: JS strings, non-negative integers, or (nested) arrays of them. */
export type XlPlain = string | number | readonly XlPlain[];

interface SettingPiece {
  kind: 'setting';
  key: string;
  op: '=' | '+=';
  value: XlValue;
  text: string;
}
interface TriviaPiece {
  kind: 'trivia';
  text: string;
}
type Piece = SettingPiece | TriviaPiece;

export interface XlSetting {
  key: string;
  op: '=' | '+=';
  value: XlValue;
}

const KEY_RE = /^[a-z][._0-9a-z]*$/;
const NUMBER_RE = /^[0-9][0-9a-fx]*$/;

export class XlConfig {
  private constructor(
    private pieces: Piece[],
    readonly source: string,
  ) {}

  static parse(text: string, source = 'config'): XlConfig {
    return new XlConfig(new Parser(text, source).parseFile(), source);
  }

  static empty(source = 'config'): XlConfig {
    return new XlConfig([], source);
  }

  /** The file text: byte-identical to the input for the parts not edited. */
  print(): string {
    return this.pieces.map((p) => p.text).join('');
  }

  /** Every statement in file order, `+=` ones included. */
  settings(): XlSetting[] {
    return this.pieces.flatMap((p) =>
      p.kind === 'setting' ? [{ key: p.key, op: p.op, value: p.value }] : [],
    );
  }

  /** Distinct keys in order of first appearance. */
  keys(): string[] {
    return [...new Set(this.settings().map((s) => s.key))];
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** The value xl sees: the last `=` wins; `+=` appends to strings and lists. */
  get(key: string): XlValue | undefined {
    let current: XlValue | undefined;
    for (const s of this.settings()) {
      if (s.key !== key) continue;
      current = s.op === '+=' && current !== undefined ? concat(key, current, s.value) : s.value;
    }
    return current;
  }

  getString(key: string): string | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (v.kind === 'list') throw typeError(key, 'a string or number', 'a list');
    return v.kind === 'string' ? v.value : v.text;
  }

  /** Integer value, read like libxlu does (C strtol with base 0: `0x` hex, leading `0` octal). */
  getNumber(key: string): number | undefined {
    const s = this.getString(key);
    if (s === undefined) return undefined;
    const n = parseCInteger(s.trim());
    if (n === undefined) throw typeError(key, 'an integer', `'${s}'`);
    return n;
  }

  /** A list of atoms as strings (vif, disk, pci, ...). */
  getStrings(key: string): string[] | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (v.kind !== 'list') throw typeError(key, 'a list', 'a single value');
    return v.items.map((item, i) => {
      if (item.kind === 'list') throw typeError(`${key}[${i}]`, 'a string', 'a list');
      return item.kind === 'string' ? item.value : item.text;
    });
  }

  /** Every key with its effective value as plain JS (numbers stay strings, as in libxl). */
  toObject(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const key of this.keys()) out[key] = toPlain(this.get(key)!);
    return out;
  }

  /**
   * Gives `key` a new value. The first statement for the key is rewritten in place
   * (its comments and position stay), later statements for it are removed.
   */
  set(key: string, value: XlValue | XlPlain): this {
    checkKey(key);
    const v = toValue(value, key);
    const text = `${key} = ${printValue(v)}`;
    const idx = this.pieces.findIndex((p) => p.kind === 'setting' && p.key === key);
    if (idx < 0) {
      this.append({ kind: 'setting', key, op: '=', value: v, text });
      return this;
    }
    this.pieces[idx] = { kind: 'setting', key, op: '=', value: v, text };
    for (let i = this.pieces.length - 1; i > idx; i--) {
      const p = this.pieces[i]!;
      if (p.kind === 'setting' && p.key === key) this.removeAt(i);
    }
    return this;
  }

  /** Removes every statement for `key`, with its line when nothing else is on it. */
  delete(key: string): boolean {
    let removed = false;
    for (let i = this.pieces.length - 1; i >= 0; i--) {
      const p = this.pieces[i]!;
      if (p.kind === 'setting' && p.key === key) {
        this.removeAt(i);
        removed = true;
      }
    }
    return removed;
  }

  clone(): XlConfig {
    return new XlConfig(
      this.pieces.map((p) => ({ ...p })),
      this.source,
    );
  }

  private append(piece: SettingPiece): void {
    const text = this.print();
    if (text.length > 0 && !text.endsWith('\n')) this.pieces.push({ kind: 'trivia', text: '\n' });
    this.pieces.push(piece, { kind: 'trivia', text: '\n' });
  }

  private removeAt(i: number): void {
    const prev = this.pieces[i - 1];
    const next = this.pieces[i + 1];
    const prevText = prev?.kind === 'trivia' ? prev.text : i === 0 ? '' : undefined;
    const nextText = next?.kind === 'trivia' ? next.text : undefined;
    const lineStart = prevText === undefined ? undefined : /(^|\n)[ \t]*$/.exec(prevText);
    const lineEnd = nextText === undefined ? undefined : /^[ \t]*;?[ \t]*(\n|$)/.exec(nextText);
    if (lineStart && lineEnd && prev?.kind === 'trivia' && next?.kind === 'trivia') {
      prev.text = prevText!.slice(0, lineStart.index + lineStart[1]!.length);
      next.text = nextText!.slice(lineEnd[0].length);
    } else if (lineStart && lineEnd && i === 0 && next?.kind === 'trivia') {
      next.text = nextText!.slice(lineEnd[0].length);
    }
    this.pieces.splice(i, 1);
    this.pieces = mergeTrivia(this.pieces);
  }
}

function mergeTrivia(pieces: Piece[]): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    const last = out[out.length - 1];
    if (p.kind === 'trivia' && p.text === '') continue;
    if (p.kind === 'trivia' && last?.kind === 'trivia') last.text += p.text;
    else out.push(p);
  }
  return out;
}

function typeError(key: string, want: string, got: string): XenError {
  return new XenError('XL_CONFIG_TYPE', `config key '${key}' should be ${want}, not ${got}`);
}

function checkKey(key: string): void {
  if (!KEY_RE.test(key)) {
    throw new XenError(
      'XL_CONFIG_KEY',
      `invalid config key '${key}': xl accepts a lowercase letter then [._0-9a-z]`,
    );
  }
}

function concat(key: string, prev: XlValue, add: XlValue): XlValue {
  if ((prev.kind === 'list') !== (add.kind === 'list')) {
    throw new XenError(
      'XL_CONFIG_TYPE',
      `config key '${key}': can't add [list] to "string" or vice versa`,
    );
  }
  if (prev.kind === 'list' && add.kind === 'list') {
    return { kind: 'list', items: [...prev.items, ...add.items] };
  }
  return { kind: 'string', value: atomText(prev) + atomText(add) };
}

function atomText(v: XlValue): string {
  if (v.kind === 'list') throw new Error('unreachable: list is not an atom');
  return v.kind === 'string' ? v.value : v.text;
}

export function parseCInteger(s: string): number | undefined {
  const m = /^([-+]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return undefined;
  const body = m[2]!;
  const n = /^0[xX]/.test(body)
    ? Number.parseInt(body.slice(2), 16)
    : body.length > 1 && body.startsWith('0')
      ? Number.parseInt(body, 8)
      : Number.parseInt(body, 10);
  return m[1] === '-' ? -n : n;
}

export function toPlain(v: XlValue): unknown {
  if (v.kind === 'list') return v.items.map(toPlain);
  return v.kind === 'string' ? v.value : v.text;
}

export function toValue(v: XlValue | XlPlain, key = 'value'): XlValue {
  if (typeof v === 'string') return { kind: 'string', value: v };
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new XenError(
        'XL_CONFIG_VALUE',
        `config key '${key}': ${v} is not a non-negative integer; pass it as a string`,
      );
    }
    return { kind: 'number', text: String(v) };
  }
  if (Array.isArray(v)) return { kind: 'list', items: v.map((x) => toValue(x as XlPlain, key)) };
  const obj = v as XlValue;
  if (obj.kind === 'number' && !NUMBER_RE.test(obj.text)) {
    throw new XenError('XL_CONFIG_VALUE', `config key '${key}': '${obj.text}' is not an xl number`);
  }
  return obj;
}

const ESCAPES: Record<string, string> = {
  '\\': '\\\\',
  '"': '\\"',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\x07': '\\a',
  '\b': '\\b',
  '\f': '\\f',
  '\v': '\\v',
};

/** A string literal xl reads back as `s`. */
export function quoteString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const esc = ESCAPES[ch];
    if (esc !== undefined) out += esc;
    else if (ch < ' ' || ch === '\x7f') {
      // xl's \x and octal escapes are dropped by libxlu, so such bytes cannot be written.
      throw new XenError(
        'XL_CONFIG_VALUE',
        `control character U+${ch.charCodeAt(0).toString(16).padStart(4, '0')} cannot be written in an xl string`,
      );
    } else out += ch;
  }
  return out + '"';
}

const INLINE_LIST_MAX = 72;

export function printValue(v: XlValue, indent = ''): string {
  if (v.kind === 'string') return quoteString(v.value);
  if (v.kind === 'number') return v.text;
  if (v.items.length === 0) return '[]';
  const inline = `[ ${v.items.map((i) => printValue(i, indent)).join(', ')} ]`;
  if (inline.length <= INLINE_LIST_MAX && !inline.includes('\n')) return inline;
  const inner = `${indent}    `;
  return `[\n${v.items.map((i) => `${inner}${printValue(i, inner)},\n`).join('')}${indent}]`;
}

class Parser {
  private pos = 0;
  private lineStarts: number[] | undefined;

  constructor(
    private readonly text: string,
    private readonly source: string,
  ) {}

  parseFile(): Piece[] {
    const pieces: Piece[] = [];
    let triviaStart = 0;
    for (;;) {
      this.skipTopTrivia();
      if (this.pos >= this.text.length) break;
      const start = this.pos;
      const key = this.parseKey();
      this.skipBlanks();
      let op: '=' | '+=';
      if (this.text.startsWith('+=', this.pos)) {
        op = '+=';
        this.pos += 2;
      } else if (this.text[this.pos] === '=') {
        op = '=';
        this.pos += 1;
      } else {
        throw this.error(`expected '=' after '${key}'`);
      }
      this.skipBlanks();
      const value = this.parseValue(false);
      const end = this.pos;
      if (start > triviaStart)
        pieces.push({ kind: 'trivia', text: this.text.slice(triviaStart, start) });
      pieces.push({ kind: 'setting', key, op, value, text: this.text.slice(start, end) });
      triviaStart = end;
      this.skipBlanks();
      const c = this.text[this.pos];
      if (c !== undefined && c !== '\n' && c !== '#' && c !== ';') {
        throw this.error(
          `expected end of line or ';' after the value of '${key}', found ${describe(c)}`,
        );
      }
    }
    if (this.text.length > triviaStart) {
      pieces.push({ kind: 'trivia', text: this.text.slice(triviaStart) });
    }
    return pieces;
  }

  private skipBlanks(): void {
    while (this.text[this.pos] === ' ' || this.text[this.pos] === '\t') this.pos++;
  }

  private skipComment(): void {
    const nl = this.text.indexOf('\n', this.pos);
    this.pos = nl < 0 ? this.text.length : nl + 1;
  }

  private skipTopTrivia(): void {
    for (;;) {
      const c = this.text[this.pos];
      if (c === ' ' || c === '\t' || c === '\n' || c === ';') this.pos++;
      else if (c === '#') this.skipComment();
      else return;
    }
  }

  private skipListTrivia(): void {
    for (;;) {
      const c = this.text[this.pos];
      if (c === ' ' || c === '\t' || c === '\n') this.pos++;
      else if (c === '#') this.skipComment();
      else return;
    }
  }

  private parseKey(): string {
    const m = /[a-z][._0-9a-z]*/y;
    m.lastIndex = this.pos;
    const r = m.exec(this.text);
    if (!r) {
      const c = this.text[this.pos]!;
      const hint = /[A-Z]/.test(c) ? ' (xl keys are lowercase)' : '';
      throw this.error(`expected a setting name, found ${describe(c)}${hint}`);
    }
    this.pos += r[0].length;
    return r[0];
  }

  private parseValue(inList: boolean): XlValue {
    const c = this.text[this.pos];
    if (c === '"' || c === "'") return this.parseString(c);
    if (c !== undefined && c >= '0' && c <= '9') {
      const m = /[0-9][0-9a-fx]*/y;
      m.lastIndex = this.pos;
      const t = m.exec(this.text)![0];
      this.pos += t.length;
      const after = this.text[this.pos];
      if (after === '.' || after === '-' || after === '+' || after === ':') {
        throw this.error(
          `unexpected ${describe(after)} in a number; xl numbers are integers, quote other values`,
        );
      }
      return { kind: 'number', text: t };
    }
    if (c === '[') return this.parseList();
    if (c === undefined || c === '\n' || (c === '#' && !inList)) {
      throw this.error('expected a value (a quoted string, a number or a [list])');
    }
    throw this.error(
      `expected a value (a quoted string, a number or a [list]), found ${describe(c)}`,
    );
  }

  private parseString(quote: string): XlValue {
    const start = this.pos;
    this.pos++;
    let out = '';
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === '\n') {
        this.pos = start;
        throw this.error('unterminated string (strings cannot span lines)');
      }
      if (c === quote) {
        this.pos++;
        return { kind: 'string', value: out };
      }
      if (c === '\\') {
        const n = this.text[this.pos + 1];
        const simple: Record<string, string> = {
          '"': '"',
          "'": "'",
          '\\': '\\',
          a: '\x07',
          b: '\b',
          f: '\f',
          n: '\n',
          r: '\r',
          t: '\t',
          v: '\v',
        };
        if (n !== undefined && simple[n] !== undefined) {
          out += simple[n];
          this.pos += 2;
          continue;
        }
        if (n === 'x' || (n !== undefined && n >= '0' && n <= '7')) {
          // libxlu parses these but never stores the character, so the value xl sees differs.
          throw this.error(
            `numeric escape '\\${n}' in a string is silently dropped by xl; write the character`,
          );
        }
        throw this.error(
          `invalid escape ${n === undefined || n === '\n' ? 'at end of line' : `'\\${n}'`} in a string`,
        );
      }
      if (c === '\r')
        throw this.error('carriage return in a string (xl does not accept CRLF line ends)');
      out += c;
      this.pos++;
    }
  }

  private parseList(): XlValue {
    const open = this.pos;
    this.pos++;
    const items: XlValue[] = [];
    this.skipListTrivia();
    for (;;) {
      const c = this.text[this.pos];
      if (c === ']') {
        this.pos++;
        return { kind: 'list', items };
      }
      if (c === undefined) {
        this.pos = open;
        throw this.error("unterminated list: no closing ']'");
      }
      items.push(this.parseValue(true));
      this.skipListTrivia();
      const d = this.text[this.pos];
      if (d === ',') {
        this.pos++;
        this.skipListTrivia();
      } else if (d !== ']') {
        if (d === undefined) {
          this.pos = open;
          throw this.error("unterminated list: no closing ']'");
        }
        throw this.error(`expected ',' or ']' in a list, found ${describe(d)}`);
      }
    }
  }

  private error(message: string): XlConfigError {
    if (!this.lineStarts) {
      this.lineStarts = [0];
      for (let i = 0; i < this.text.length; i++)
        if (this.text[i] === '\n') this.lineStarts.push(i + 1);
    }
    let line = 0;
    while (line + 1 < this.lineStarts.length && this.lineStarts[line + 1]! <= this.pos) line++;
    return new XlConfigError(message, line + 1, this.pos - this.lineStarts[line]! + 1, this.source);
  }
}

function describe(c: string): string {
  if (c === '\n') return 'end of line';
  if (c === '\r') return 'a carriage return (xl does not accept CRLF line ends)';
  if (c === '\t') return 'a tab';
  return `'${c}'`;
}
