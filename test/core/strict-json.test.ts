// Keys given twice in a configuration file are found by a scan of the text
// that JSON.parse accepted. The scan must find what a JSON parser with
// positions (momoa) finds: the same keys, named by the same paths, on the
// same lines, for any document, however it breaks its lines.
import { type AnyNode, parse } from '@humanwhocodes/momoa';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { duplicateKeys, parseJsonStrict } from '../../src/core/config/strict-json.js';

/** What momoa's syntax tree says: every key given twice, with its line. */
function momoaDuplicates(text: string) {
  const out: Array<{ key: string; line: number; first: number }> = [];
  const walk = (node: AnyNode, prefix: string): void => {
    if (node.type === 'Object') {
      const firstLine = new Map<string, number>();
      for (const member of node.members) {
        const name = member.name.type === 'String' ? member.name.value : member.name.name;
        const line = member.name.loc.start.line;
        const first = firstLine.get(name);
        if (first === undefined) firstLine.set(name, line);
        else out.push({ key: `${prefix}${name}`, line, first });
        walk(member.value, `${prefix}${name}.`);
      }
    } else if (node.type === 'Array') {
      node.elements.forEach((e, i) => walk(e.value, `${prefix.slice(0, -1)}[${i}].`));
    }
  };
  walk(parse(text).body, '');
  return out;
}

type Doc = { object: Array<[string, Doc]> } | { array: Doc[] } | { leaf: unknown };

const { doc } = fc.letrec<{ doc: Doc }>((tie) => ({
  doc: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({
      leaf: fc.oneof(
        fc.string(),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.boolean(),
        fc.constant(null),
      ),
    }),
    // Few key names, so that objects give some twice; some need escapes.
    fc.record({
      object: fc.array(
        fc.tuple(fc.constantFrom('a', 'b', 'a"b', 'c\\d', 'é', '\n', ''), tie('doc')),
        {
          maxLength: 4,
        },
      ),
    }),
    fc.record({ array: fc.array(tie('doc'), { maxLength: 3 }) }),
  ),
}));
const space = fc.constantFrom('', ' ', '\n', '\r\n', '\r', '\t', '\n\n ');

/** `d` as JSON text, with `gaps` between its tokens (taken round the list). */
function render(d: Doc, gaps: string[]): string {
  let n = 0;
  const gap = () => gaps[n++ % gaps.length] ?? '';
  const text = (x: Doc): string => {
    if ('leaf' in x) return JSON.stringify(x.leaf);
    if ('array' in x) return `[${gap()}${x.array.map(text).join(`,${gap()}`)}${gap()}]`;
    const members = x.object.map(([k, v]) => `${JSON.stringify(k)}${gap()}:${gap()}${text(v)}`);
    return `{${gap()}${members.join(`${gap()},${gap()}`)}${gap()}}`;
  };
  return `${gap()}${text(d)}${gap()}`;
}

describe('duplicateKeys', () => {
  it('finds the keys momoa finds given twice, on the same lines, in any document', () => {
    fc.assert(
      fc.property(doc, fc.array(space, { minLength: 1, maxLength: 8 }), (d, gaps) => {
        const text = render(d, gaps);
        const found = duplicateKeys(text, 'f.json').map((i) => ({
          key: i.key,
          line: i.line,
          first: Number(/line (\d+)/.exec(i.message)?.[1]),
        }));
        expect(found).toEqual(momoaDuplicates(text));
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses text that is not JSON, and gives the value of text that is', () => {
    expect(() => parseJsonStrict('{ "a": ', 'f.json')).toThrow(/f\.json: not valid JSON/);
    expect(parseJsonStrict('{"a": [1, {"b": null}]}', 'f.json')).toEqual({ a: [1, { b: null }] });
    expect(() => parseJsonStrict('{"a": 1,\r\n "a": 2}', 'f.json')).toThrow(
      'f.json:2: key "a": key given twice (first on line 1)',
    );
  });
});
