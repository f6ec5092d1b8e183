// guest/windows/ZynClone.psm1 cannot run here (no PowerShell, no Xen WMI):
// it is parsed with tree-sitter's PowerShell grammar, and its request and
// reply strings are checked against the protocol's test vectors.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Language, type Node, Parser } from 'web-tree-sitter';
import { type GuestOp, OP_ARGS } from '../../src/daemons/orchestrator/protocol.js';
import { vectors } from './vectors.js';

const MODULE = resolve(__dirname, '../../guest/windows/ZynClone.psm1');
const require = createRequire(import.meta.url);

function all(node: Node, type: string): Node[] {
  const out: Node[] = [];
  const walk = (n: Node) => {
    if (n.type === type) out.push(n);
    for (const c of n.children) if (c) walk(c);
  };
  walk(node);
  return out;
}

/** A param block entry's variable (`$Name`), not a `$false` in its attributes. */
function paramVariable(p: Node): string {
  return p.children.find((c) => c?.type === 'variable')!.text;
}

/** The text of a string literal without its quotes. */
function unquote(n: Node): string {
  return n.text.slice(1, -1);
}

describe('ZynClone.psm1 (PowerShell)', () => {
  let root: Node;
  const functions = new Map<string, Node>();

  beforeAll(async () => {
    await Parser.init();
    const language = await Language.load(
      require.resolve('tree-sitter-powershell/tree-sitter-powershell.wasm'),
    );
    const parser = new Parser();
    parser.setLanguage(language);
    const tree = parser.parse(readFileSync(MODULE, 'utf8'));
    if (!tree) throw new Error('tree-sitter returned no tree');
    root = tree.rootNode;
    for (const f of all(root, 'function_statement')) {
      const name = f.children.find((c) => c?.type === 'function_name')!.text;
      functions.set(name, f);
    }
  });

  it('parses without a syntax error', () => {
    const bad = [...all(root, 'ERROR'), ...all(root, 'MISSING')].map(
      (n) => `${n.startPosition.row + 1}:${n.startPosition.column} ${n.text.slice(0, 60)}`,
    );
    expect(bad).toEqual([]);
    expect(root.hasError).toBe(false);
  });

  it('the parse check catches a broken script (it is not vacuous)', async () => {
    const parser = new Parser();
    parser.setLanguage(
      await Language.load(require.resolve('tree-sitter-powershell/tree-sitter-powershell.wasm')),
    );
    const broken = readFileSync(MODULE, 'utf8').replace('finally {', 'finally ');
    expect(parser.parse(broken)!.rootNode.hasError).toBe(true);
  });

  it('exports the cmdlets of the vectors and Wait-ZcRequest, each with comment-based help', () => {
    const exported = all(root, 'command')
      .filter((c) => c.text.startsWith('Export-ModuleMember'))
      .flatMap((c) => all(c, 'string_literal').map(unquote));
    const expected = [...new Set(vectors.clientRequests.map((v) => v.cmdlet)), 'Wait-ZcRequest'];
    expect(exported.sort()).toEqual(expected.sort());
    for (const name of exported) {
      const f = functions.get(name);
      expect(f, name).toBeDefined();
      const help = all(f!, 'comment')
        .map((c) => c.text)
        .join('\n');
      expect(help, name).toMatch(/\.SYNOPSIS\s+\S/);
      expect(help, name).toMatch(/\.EXAMPLE\s+\S/);
      for (const p of all(f!, 'script_parameter')) {
        const param = paramVariable(p).slice(1);
        expect(help, `${name} -${param}`).toMatch(new RegExp(`\\.PARAMETER ${param}\\s+\\S`));
      }
    }
  });

  it.each(vectors.clientRequests.map((v) => [v.cmdlet, JSON.stringify(v.params), v] as const))(
    '%s %s writes the request of the vectors',
    (cmdlet, _, v) => {
      const f = functions.get(cmdlet)!;
      const call = all(f, 'command').find((c) => c.text.startsWith('Invoke-ZcRequest'))!;
      const [, op, ...tokens] = v.request.split(' ');
      expect(call.text).toMatch(new RegExp(`-Op '${op}'`));
      const declared = all(f, 'script_parameter').map((p) => paramVariable(p).slice(1));
      for (const [param, value] of Object.entries(v.params)) {
        expect(declared).toContain(param);
        // The token this parameter adds, as the function's strings spell it.
        const strings = [...all(f, 'string_literal'), ...all(f, 'expandable_string_literal')].map(
          (s) => unquote(s).replace(`$${param}`, String(value)),
        );
        const token = tokens.find((t) => strings.includes(t));
        expect(token, `${cmdlet} -${param}`).toBeDefined();
      }
      // Every argument the function can add is one the orchestrator accepts:
      // a literal, or a parameter validated (case-sensitively, as the
      // orchestrator compares) against the same values or pattern.
      const allowed = OP_ARGS[op as GuestOp];
      for (const s of [...all(f, 'string_literal'), ...all(f, 'expandable_string_literal')]) {
        const m = /^([a-z]+)=(\S+)$/.exec(unquote(s));
        if (!m) continue;
        const [, key, value] = m as unknown as [string, string, string];
        expect(Object.keys(allowed)).toContain(key);
        const values = allowed[key]!;
        if (!value.startsWith('$')) {
          expect(values).toContain(value);
          continue;
        }
        const param = all(f, 'script_parameter').find((p) => paramVariable(p) === value)!;
        const check = all(param, 'attribute').find((a) =>
          /^\[Validate(Set|Pattern)\(/.test(a.text),
        );
        expect(check, `${cmdlet} ${value}`).toBeDefined();
        if ('pattern' in values) {
          expect(check!.text).toMatch(/^\[ValidatePattern\(/);
          expect(unquote(all(check!, 'string_literal')[0]!)).toBe(values.pattern.source);
          expect(check!.text).toMatch(/Options = 'None'\)\]$/);
        } else {
          expect(check!.text).toMatch(/^\[ValidateSet\(/);
          expect(all(check!, 'string_literal').map(unquote).sort()).toEqual([...values].sort());
          expect(check!.text).toMatch(/IgnoreCase = \$false\)\]$/);
        }
      }
    },
  );

  it('uses the nodes, reply fields and states of the protocol', () => {
    const literals = new Set(all(root, 'string_literal').map(unquote));
    const assigned = (name: string) =>
      all(root, 'assignment_expression')
        .find((a) => a.text.startsWith(`$script:${name} `))
        ?.text.split('=')[1]
        ?.trim()
        .slice(1, -1);
    expect(assigned('RequestNode')).toBe(vectors.requestNode);
    expect(assigned('ReplyRoot')).toBe(vectors.replyRoot);
    for (const state of vectors.replyStates) expect(literals).toContain(state);
    const fields = new Set(vectors.replies.flatMap((r) => Object.keys(r.nodes)));
    const read = new Set(
      all(root, 'element_access')
        .filter((e) => e.text.startsWith('$reply['))
        .map((e) => all(e, 'string_literal').map(unquote)[0]),
    );
    // `op` is read on its own, by Wait-ZcRequest (a request made earlier).
    const expandable = all(root, 'expandable_string_literal').map(unquote);
    expect(expandable).toContain('$script:ReplyRoot/reply/$Id/op');
    expect([...read, 'op'].sort()).toEqual([...fields].sort());
  });

  it('finds the WMI classes by prefix, XenProject first, and always ends its session', () => {
    const prefixes = all(root, 'assignment_expression').find((a) =>
      a.text.startsWith('$script:ClassPrefixes'),
    )!;
    expect(all(prefixes, 'string_literal').map(unquote)).toEqual(['XenProject', 'Citrix']);
    const methods = new Set(
      all(root, 'command')
        .filter((c) => c.text.startsWith('Invoke-CimMethod'))
        .map((c) => /-MethodName '(\w+)'/.exec(c.text)?.[1]),
    );
    for (const m of ['AddSession', 'GetValue', 'SetValue', 'GetChildren', 'SetWatch', 'EndSession'])
      expect(methods).toContain(m);
    // Every function that opens a session closes it in a finally block.
    for (const [name, f] of functions) {
      const opens = all(f, 'command').filter((c) => c.text.startsWith('Open-ZcSession'));
      if (name === 'Open-ZcSession' || opens.length === 0) continue;
      const finallies = all(f, 'finally_clause').map((c) => c.text);
      expect(
        finallies.some((t) => t.includes('Close-ZcSession')),
        name,
      ).toBe(true);
    }
    expect(functions.get('Close-ZcSession')!.text).toContain("-MethodName 'EndSession'");
  });
});
