// The console's splice helper (helpers/console-splice), built from its
// sources for the tests that run the proxy on both of its data paths.
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repo } from '../../bundle.js';

/** How VNC -> browser bytes go: copied by the monitor, or spliced by the helper. */
export const DATA_PATHS = ['js', 'splice'] as const;
export type DataPathName = (typeof DATA_PATHS)[number];

let built: Promise<string> | undefined;

/** The path of a freshly built zynclone-console-splice (built once per test process). */
export function spliceHelper(): Promise<string> {
  built ??= (async () => {
    const out = join(repo, 'node_modules/.cache/zynclone-console', `splice-${process.pid}`);
    mkdirSync(out, { recursive: true });
    await promisify(execFile)('make', [
      '-s',
      '-C',
      join(repo, 'helpers/console-splice'),
      `OUT=${out}`,
    ]);
    return join(out, 'zynclone-console-splice');
  })();
  return built;
}
