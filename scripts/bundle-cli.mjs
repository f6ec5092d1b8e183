// Part of `npm run build`, after tsc: replaces dist/src/bin/vmclone.js with an
// esbuild bundle of it, so that `vmclone` starts about as fast as Node does
// (`npm run bench -- cli`). The entry chunk holds the command line parser;
// each command's core modules are chunks (dist/src/bin/chunks/) imported when
// the command runs, and the entry turns on Node's compile cache for them.
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));

// Node's built-in modules, as CommonJS: an ESM import of one builds its ESM
// facade, which reads every export, and for node:fs that loads all of Node's
// streams (a tenth of Node's start-up). esbuild turns each named import of a
// CommonJS module into a property read at the point of use instead.
// node:child_process, which commander imports for executable subcommands
// (vmclone has none), is only loaded when first used.
const builtinsAsCommonJs = {
  name: 'builtins-as-commonjs',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) =>
      args.namespace === 'builtin' ? undefined : { path: args.path, namespace: 'builtin' },
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, ({ path }) => ({
      contents:
        path === 'node:child_process'
          ? `let loaded; module.exports = new Proxy({}, { get: (_, key) => (loaded ??= require('node:child_process'))[key] });`
          : `module.exports = require(${JSON.stringify(path)});`,
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
  plugins: [builtinsAsCommonJs],
  // What the CommonJS shims above call: the `require` of an ES module.
  banner: {
    js: "import { createRequire as __zcCreateRequire } from 'node:module'; const require = __zcCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
