// JSON.parse keeps the last of two equal keys without a word, so an operator
// who edits one copy of a key changes nothing. Configuration files are parsed
// into a syntax tree first (momoa, a strict JSON parser with positions), and
// every object, nested ones included, is checked for keys given twice.
import { type AnyNode, evaluate, parse } from '@humanwhocodes/momoa';
import { ConfigError, type ConfigIssue } from './errors.js';

/** Parses JSON text from `file`; throws CONFIG_PARSE naming every key given twice. */
export function parseJsonStrict(text: string, file: string): unknown {
  let doc: ReturnType<typeof parse>;
  try {
    doc = parse(text);
  } catch (err) {
    throw new ConfigError(
      'CONFIG_PARSE',
      [{ file, message: `not valid JSON: ${(err as Error).message}` }],
      { cause: err },
    );
  }
  const issues: ConfigIssue[] = [];
  collectDuplicates(doc.body, '', file, issues);
  if (issues.length > 0) throw new ConfigError('CONFIG_PARSE', issues);
  return evaluate(doc);
}

function collectDuplicates(node: AnyNode, prefix: string, file: string, out: ConfigIssue[]): void {
  if (node.type === 'Object') {
    const firstLine = new Map<string, number>();
    for (const member of node.members) {
      const name = member.name.type === 'String' ? member.name.value : member.name.name;
      const key = `${prefix}${name}`;
      const line = member.name.loc.start.line;
      const first = firstLine.get(name);
      if (first === undefined) firstLine.set(name, line);
      else out.push({ file, line, key, message: `key given twice (first on line ${first})` });
      collectDuplicates(member.value, `${key}.`, file, out);
    }
  } else if (node.type === 'Array') {
    node.elements.forEach((element, i) =>
      collectDuplicates(element.value, `${prefix.slice(0, -1)}[${i}].`, file, out),
    );
  }
}
