import { readFileSync } from 'node:fs';

// Set by bundlers (esbuild --define), where no package.json travels along.
declare const ZYNCLONE_VERSION: string | undefined;

/** The package version: the bundler's, else read from the package.json the code ships with. */
export function packageVersion(): string {
  if (typeof ZYNCLONE_VERSION === 'string') return ZYNCLONE_VERSION;
  // Compiled files live in dist/src/cli/, sources in src/cli/: look upwards.
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'zynclone' && pkg.version) return pkg.version;
    } catch {
      // not at this level; try the next one up
    }
  }
  return '0.0.0-unknown';
}
