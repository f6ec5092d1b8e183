// Builds `vmclone` so that it starts about as fast as Node does (`npm run
// bench -- cli`): an entry (vmclone.js) that turns on Node's compile cache
// and imports the command line parser, and chunks (chunks/) of the modules
// each command imports when it runs. One file of everything cost three
// times as long to load as the parser's chunks: what a command does not
// run must not be loaded at all.
//
// `npm run build` runs it after tsc, replacing the compiled entry in
// dist/src/bin; `make deb` runs it with the package's directory and the .mjs
// extension (scripts/build-deb.sh): `node scripts/bundle-cli.mjs [OUTDIR EXT]`.
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
const [outdir = join(repo, 'dist/src/bin'), ext = '.js'] = process.argv.slice(2);

// Node's built-in modules come from process.getBuiltinModule, not an ESM
// import: an import builds the builtin's ESM facade, which reads every
// export (for node:fs that loads all of Node's streams; node:util's diff
// and setTraceSigInt load a dozen modules when read), and esbuild's CommonJS
// interop copies every export too. Our sources' imports of builtins become
// `const { names } = process.getBuiltinModule(...)` in place, which reads
// only the names imported and adds no module to load; a dependency's go
// through a shim module that reads each export on its own, marked pure, so
// esbuild drops those nothing imports.
const builtinImport = /^import\s+([^;]*?)\s+from\s+'(node:[\w/]+)';$/gm;
function requireBuiltins(source) {
  const get = (name) => `process.getBuiltinModule(${JSON.stringify(name)})`;
  return source
    .replace(builtinImport, (statement, clause, name) => {
      if (clause.startsWith('type ')) return statement;
      // e.g. `path, { join as j, type X }`, `* as net`, `{ a, b }`
      const m = /^(?:([\w$]+)\s*,?\s*)?(?:\*\s+as\s+([\w$]+)|\{([^}]*)\})?$/.exec(clause.trim());
      if (m === null) throw new Error(`cannot rewrite ${statement}`);
      const [, whole, namespace, named] = m;
      const names = (named ?? '')
        .split(',')
        .map((n) => n.trim())
        .filter((n) => n !== '' && !n.startsWith('type '))
        .map((n) => n.replace(/\s+as\s+/, ': '));
      const lines = [whole ?? namespace, names.length > 0 ? `{ ${names.join(', ')} }` : undefined]
        .filter((binding) => binding !== undefined)
        .map((binding) => `const ${binding} = ${get(name)};`);
      // Same line count, so the source map stays right.
      return lines.join(' ') + '\n'.repeat(statement.split('\n').length - 1);
    })
    .replace(/\bimport\('(node:[\w/]+)'\)/g, (_, name) => `Promise.resolve(${get(name)})`);
}
const identifier = /^[A-Za-z_$][\w$]*$/;
const require = createRequire(import.meta.url);
function builtinShim(name) {
  const names = Object.keys(require(name)).filter(
    (key) => identifier.test(key) && key !== 'default',
  );
  return `const __builtin = process.getBuiltinModule(${JSON.stringify(name)});
const __read = (key) => __builtin[key];
export default __builtin;
${names.map((key) => `export const ${key} = /* @__PURE__ */ __read(${JSON.stringify(key)});`).join('\n')}`;
}
const builtins = {
  name: 'builtins',
  setup(b) {
    b.onLoad({ filter: /\/src\/.*\.ts$/ }, ({ path }) => ({
      contents: requireBuiltins(readFileSync(path, 'utf8')),
      loader: 'ts',
    }));
    b.onResolve({ filter: /^node:/ }, (args) =>
      args.namespace === 'file' ? { path: args.path, namespace: 'builtin' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, ({ path }) => ({
      contents: builtinShim(path),
      loader: 'js',
    }));
  },
};

// Chunks of an older layout, and compile-cache entries of code no longer built.
for (const old of ['chunks', '.compile-cache'])
  rmSync(join(outdir, old), { recursive: true, force: true });
await build({
  entryPoints: { vmclone: join(repo, 'src/bin/vmclone.ts') },
  outdir,
  outExtension: { '.js': ext },
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  sourcemap: ext === '.js',
  minifySyntax: true,
  legalComments: 'none',
  define: { ZYNCLONE_VERSION: JSON.stringify(version) },
  plugins: [builtins],
  logLevel: 'warning',
});
