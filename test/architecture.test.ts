// The layer rule of docs/architecture.md, checked on the real import graph:
// imports point down only, and the product never imports the simulator.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(__dirname, '../src');
const RANK: Record<string, number> = {
  errors: 0,
  process: 0,
  xenstore: 1,
  xen: 2,
  core: 3,
  daemons: 4,
  cli: 4,
  web: 4,
  sim: 5,
  bin: 6,
};

function* sourceFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) yield* sourceFiles(full);
    else if (full.endsWith('.ts')) yield full;
  }
}

function layerOf(file: string): string {
  return relative(SRC, file).split('/')[0]!;
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specs.map((s) => resolve(dirname(file), s));
}

describe('layers', () => {
  const edges = [...sourceFiles(SRC)].flatMap((file) =>
    importsOf(file).map((target) => ({ file, target })),
  );

  it('every source file belongs to a known layer', () => {
    const unknown = [...sourceFiles(SRC)].map(layerOf).filter((l) => !(l in RANK));
    expect(unknown).toEqual([]);
  });

  it('imports point down only, and only bin and sim may import sim', () => {
    const violations = edges
      .filter(({ file, target }) => target.startsWith(SRC))
      .filter(({ file, target }) => {
        const from = layerOf(file);
        const to = layerOf(target);
        if (to === 'sim') return from !== 'sim' && from !== 'bin';
        return RANK[to]! > RANK[from]!;
      })
      .map(({ file, target }) => `${relative(SRC, file)} -> ${relative(SRC, target)}`);
    expect(violations).toEqual([]);
  });
});
