// The dashboard's browser bundle, built by esbuild: `npm run build` writes it
// next to the compiled server (dashboard.js), or ZYNCLONE_DASHBOARD_BUNDLE names
// it (the Debian package); without it (tests from the
// sources, a tsc-only build) it is built in memory on first use.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

let cached: Promise<string> | undefined;

export function dashboardBundle(): Promise<string> {
  cached ??= (async () => {
    const prebuilt =
      process.env.ZYNCLONE_DASHBOARD_BUNDLE ??
      fileURLToPath(new URL('./dashboard.js', import.meta.url));
    if (existsSync(prebuilt)) return readFileSync(prebuilt, 'utf8');
    // Not a literal: a bundle of the product (the simulator's tests make one)
    // must leave esbuild, a development tool, to be found at run time.
    const tool = 'esbuild';
    const { build } = (await import(tool)) as typeof import('esbuild');
    // The TypeScript source, or what tsc made of it when only tsc ran.
    const source = fileURLToPath(new URL('./page/dashboard.ts', import.meta.url));
    const entry = existsSync(source) ? source : source.replace(/\.ts$/, '.js');
    const out = await build({
      entryPoints: [entry],
      bundle: true,
      minify: true,
      format: 'esm',
      target: 'es2022',
      write: false,
      logLevel: 'error',
    });
    return out.outputFiles[0]!.text;
  })();
  return cached;
}
