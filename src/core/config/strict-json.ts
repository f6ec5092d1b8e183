// JSON.parse keeps the last of two equal keys without a word, so an operator
// who edits one copy of a key changes nothing. Configuration files are parsed
// by JSON.parse, and then scanned once more for every object, nested ones
// included, that gives a key twice. (A JSON parser with positions, momoa, did
// both; it is a third of what `vmclone list` loads, for files it rarely reads.
// test/core/strict-json.test.ts holds the scan to momoa's findings.)
import { ConfigError, type ConfigIssue } from './errors.js';

/** Parses JSON text from `file`; throws CONFIG_PARSE naming every key given twice. */
export function parseJsonStrict(text: string, file: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(
      'CONFIG_PARSE',
      [{ file, message: `not valid JSON: ${(err as Error).message}` }],
      { cause: err },
    );
  }
  const issues = duplicateKeys(text, file);
  if (issues.length > 0) throw new ConfigError('CONFIG_PARSE', issues);
  return value;
}

type Container =
  | { kind: 'object'; prefix: string; firstLine: Map<string, number>; key: string | undefined }
  | { kind: 'array'; prefix: string; index: number };

/**
 * Every key given twice in one object of `text`, which JSON.parse accepted,
 * with the line it is given again on (lines end at \n, \r or \r\n). A key is
 * named by its path: `a.b`, `x[0].a`.
 */
export function duplicateKeys(text: string, file: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const open: Container[] = [];
  let line = 1;
  // In an object, whether the next string is a key (after `{` or `,`) or a value.
  let expectKey = false;
  const prefixOfChild = (): string => {
    const parent = open.at(-1);
    if (parent === undefined) return '';
    if (parent.kind === 'object') return `${parent.prefix}${parent.key}.`;
    return `${parent.prefix.slice(0, -1)}[${parent.index}].`;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n') line++;
    else if (c === '\r') {
      line++;
      if (text[i + 1] === '\n') i++;
    } else if (c === '{') {
      open.push({ kind: 'object', prefix: prefixOfChild(), firstLine: new Map(), key: undefined });
      expectKey = true;
    } else if (c === '[') {
      open.push({ kind: 'array', prefix: prefixOfChild(), index: 0 });
      expectKey = false;
    } else if (c === '}' || c === ']') {
      open.pop();
      expectKey = false;
    } else if (c === ',') {
      const here = open.at(-1);
      if (here?.kind === 'array') here.index++;
      expectKey = here?.kind === 'object';
    } else if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const here = open.at(-1);
      if (expectKey && here?.kind === 'object') {
        const name = JSON.parse(text.slice(i, end + 1)) as string;
        const first = here.firstLine.get(name);
        if (first === undefined) here.firstLine.set(name, line);
        else {
          const key = `${here.prefix}${name}`;
          issues.push({ file, line, key, message: `key given twice (first on line ${first})` });
        }
        here.key = name;
        expectKey = false;
      }
      i = end;
    }
  }
  return issues;
}
