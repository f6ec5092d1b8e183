// Builds the web console page into <outdir> (default dist/console-page):
// noVNC and the page script bundled by esbuild (ES2022: noVNC has a top-level
// await), plus the HTML and CSS. Run by `npm run build`; tests call it too.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(repo, 'src/web/console-page');

export async function buildConsolePage(outdir = join(repo, 'dist/console-page')) {
  mkdirSync(outdir, { recursive: true });
  await build({
    entryPoints: [join(src, 'console.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    legalComments: 'linked',
    outfile: join(outdir, 'console.js'),
    logLevel: 'error',
  });
  for (const f of ['index.html', 'console.css']) copyFileSync(join(src, f), join(outdir, f));
  return outdir;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildConsolePage(process.argv[2]);
}
