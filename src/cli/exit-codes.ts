/**
 * vmclone's exit statuses, from the one table of error codes in src/errors:
 * an error's stable `code` decides the status. Scripts may rely on them; they
 * are listed in `vmclone --help` and docs/errors.md.
 */
import { EXIT, EXIT_MEANING, type ExitName, exitStatusFor } from '../errors/index.js';

export { EXIT, exitStatusFor as exitCodeFor };

export const EXIT_CODES_HELP = `Exit status:\n${(Object.keys(EXIT) as ExitName[])
  .map((name) => `  ${EXIT[name]}  ${EXIT_MEANING[name]}`)
  .join('\n')}`;
