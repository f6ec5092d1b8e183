// Builds `vmclone` so that it starts about as fast as Node does (`npm run
// bench -- cli`). Node pays for every module file it loads (resolving,
// reading, linking: about as much as a page of code run), so what a read-only
// command runs (the command line parser, the state store, the configuration,
// paths and errors) is one chunk, chunks/vmclone-*; the entry (vmclone.js)
// turns on Node's compile cache and imports it. The lifecycle, xl, XenStore,
// the doctor and the rest are chunks of their own, loaded by the commands
// that use them. rolldown does the bundling because its chunking can be told
// which modules belong together (esbuild splits every set of modules that a
// different set of dynamic imports reaches: eight files for `list`).
//
// `npm run build` runs it after tsc, replacing the compiled entry in
// dist/src/bin; `make deb` runs it with the package's directory and the .mjs
// extension (scripts/build-deb.sh): `node scripts/bundle-cli.mjs [OUTDIR EXT]`.
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rolldown } from 'rolldown';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
const [outdir = join(repo, 'dist/src/bin'), ext = '.js'] = process.argv.slice(2);

// Node's built-in modules come from process.getBuiltinModule, not an ESM
// import: an import builds the builtin's ESM facade, which reads every
// export (for node:fs that loads all of Node's streams; node:util's diff
// and setTraceSigInt load a dozen modules when read), and a bundler's CommonJS
// interop copies every export too. Our sources' imports of builtins become
// `const { names } = process.getBuiltinModule(...)` in place, which reads
// only the names imported and adds no module to load; a dependency's go
// through a shim module that reads each export on its own, marked pure, so
// the bundler drops those nothing imports.
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
  resolveId(id, importer) {
    if (id.startsWith('node:') && importer !== undefined && !/[\\/]src[\\/]/.test(importer))
      return `\0builtin:${id}`;
  },
  load(id) {
    if (id.startsWith('\0builtin:')) return { code: builtinShim(id.slice(9)), moduleType: 'js' };
    if (/[\\/]src[\\/].*\.ts$/.test(id))
      return { code: requireBuiltins(readFileSync(id, 'utf8')), moduleType: 'ts' };
  },
};

// What `list`, `status`, `config`, `--help` and `--version` run, the one chunk
// they load: the CLI module and all it imports statically (the lifecycle,
// xl, XenStore and the rest it imports when a command needs them).
const cliModule = join(repo, 'src/cli/vmclone.ts');

// The entry imports the CLI module, which is in the read-only chunk; rolldown
// makes a chunk that only re-exports it from there (a facade), one more file
// to load. The entry imports the read-only chunk itself instead.
const skipFacades = {
  name: 'skip-facades',
  generateBundle(_, files) {
    for (const facade of Object.values(files)) {
      const target = /^export \{ [\w$, ]+ \} from "\.\/([\w.-]+)";\s*$/.exec(facade.code ?? '');
      if (facade.type !== 'chunk' || !facade.isDynamicEntry || target === null) continue;
      const real = posix.join(posix.dirname(facade.fileName), target[1]);
      for (const chunk of Object.values(files)) {
        if (chunk.type !== 'chunk' || !chunk.dynamicImports.includes(facade.fileName)) continue;
        const from = (file) => `import("./${posix.relative(posix.dirname(chunk.fileName), file)}")`;
        chunk.code = chunk.code.replaceAll(from(facade.fileName), from(real));
      }
      delete files[facade.fileName];
    }
  },
};

// Chunks of an older build, and compile-cache entries of code no longer built.
for (const old of ['chunks', '.compile-cache'])
  rmSync(join(outdir, old), { recursive: true, force: true });
const bundle = await rolldown({
  input: { vmclone: join(repo, 'src/bin/vmclone.ts') },
  platform: 'node',
  external: [/^node:/],
  plugins: [builtins, skipFacades],
  transform: { target: 'node24', define: { ZYNCLONE_VERSION: JSON.stringify(version) } },
  logLevel: 'warn',
  // Dynamic imports of modules that are in the read-only chunk anyway.
  checks: { ineffectiveDynamicImport: false },
});
await bundle.write({
  dir: outdir,
  format: 'esm',
  entryFileNames: `[name]${ext}`,
  chunkFileNames: `chunks/[name]-[hash]${ext}`,
  sourcemap: ext === '.js',
  minify: 'dce-only',
  comments: false,
  // Exports keep their names, so that a facade re-exports them unrenamed (skipFacades).
  minifyInternalExports: false,
  codeSplitting: { groups: [{ name: 'vmclone', test: (id) => id === cliModule }] },
});
await bundle.close();
