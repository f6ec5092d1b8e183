// Bundles of ZynClone's entry points from the sources, run by tests as
// separate processes the way systemd and users run them.
import { resolve } from 'node:path';
import { type BuildOptions, build } from 'esbuild';

export const repo = resolve(__dirname, '..');

/** Gives an ESM bundle the `require` its CommonJS dependencies call. */
const REQUIRE_BANNER =
  "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);";

function options(outfile: string): BuildOptions {
  return {
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    outfile,
    banner: { js: REQUIRE_BANNER },
    logLevel: 'error',
  };
}

/** Bundles `src/<entry>` (e.g. `bin/vmclone.ts`) into `outfile`. */
export async function bundleEntry(entry: string, outfile: string): Promise<void> {
  await build({ entryPoints: [resolve(repo, 'src', entry)], ...options(outfile) });
}

/** A daemon's bundle: `fn` of `src/daemons/<dir>/main.ts` run with the process's arguments. */
export async function bundleDaemon(fn: string, dir: string, outfile: string): Promise<void> {
  await build({
    stdin: {
      contents:
        `import { ${fn} } from './src/daemons/${dir}/main.ts';\n` +
        `process.exitCode = await ${fn}(process.argv.slice(2));\n`,
      resolveDir: repo,
      loader: 'ts',
    },
    ...options(outfile),
  });
}
