import { readFileSync } from 'node:fs';

/** The package version, read once from the package.json the code ships with. */
export function packageVersion(): string {
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
