// Part of `npm run build`, after tsc: replaces dist/src/bin/vmclone.js with an
// esbuild bundle of it, so that `vmclone` starts about as fast as Node does
// (`npm run bench -- cli`). The entry chunk holds the command line parser;
// each command's core modules are chunks (dist/src/bin/chunks/) imported when
// the command runs, and the entry turns on Node's compile cache for them.
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));

// Node's built-in modules, required rather than imported: an ESM import of
// one builds its ESM facade, which reads every export (for node:fs that
// loads all of Node's streams), and esbuild's CommonJS interop copies every
// export too. The shim reads each export on its own, marked pure, so that
// esbuild drops those no chunk imports: some (node:util's diff and
// setTraceSigInt, ...) load a dozen more of Node's modules when first read.
const require = createRequire(import.meta.url);
const identifier = /^[A-Za-z_$][\w$]*$/;
function builtinShim(name) {
  const names = Object.keys(require(name)).filter(
    (key) => identifier.test(key) && key !== 'default',
  );
  return `import { createRequire } from 'node:module';
const __builtin = createRequire(import.meta.url)(${JSON.stringify(name)});
const __read = (key) => __builtin[key];
export default __builtin;
${names.map((key) => `export const ${key} = /* @__PURE__ */ __read(${JSON.stringify(key)});`).join('\n')}`;
}
const builtinsRequired = {
  name: 'builtins-required',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => {
      if (args.namespace !== 'file' || args.path === 'node:module') return undefined;
      return { path: args.path, namespace: 'builtin' };
    });
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, ({ path }) => ({
      contents: builtinShim(path),
      loader: 'js',
    }));
  },
};

rmSync(join(repo, 'dist/src/bin/chunks'), { recursive: true, force: true });
await build({
  entryPoints: { vmclone: join(repo, 'src/bin/vmclone.ts') },
  outdir: join(repo, 'dist/src/bin'),
  entryNames: '[name]',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  sourcemap: true,
  minifySyntax: true,
  define: { ZYNCLONE_VERSION: JSON.stringify(version) },
  plugins: [builtinsRequired],
  logLevel: 'warning',
});
