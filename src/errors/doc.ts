import { ERROR_CODES, EXIT, EXIT_MEANING, type ErrorCodeSpec, type ExitName } from './codes.js';

const LAYER_TITLES: Record<ErrorCodeSpec['layer'], string> = {
  xenstore: 'XenStore client (`src/xenstore`)',
  xen: 'Xen toolstack (`src/xen`)',
  core: 'Core (`src/core`)',
  daemons: 'Daemons (`src/daemons`)',
};

/** docs/errors.md, generated from ERROR_CODES so the page cannot drift from the code. */
export function errorsMarkdown(): string {
  const out = [
    '# Error codes',
    '',
    '<!-- Generated from src/errors/codes.ts; regenerate with',
    '     ZYNCLONE_WRITE_DOCS=1 npx vitest run test/errors/codes.test.ts -->',
    '',
    'Every error ZynClone throws carries a stable `code` (match on it, never on',
    'the message) and extends `ZynCloneError`; `isZynCloneError(err, code)` tests',
    'for one. XenStore errors are namespaced `XS_<errno>` so they never look like',
    'filesystem errors; the errno name xenstored sent stays in `errno`. `vmclone`',
    'prints the code in brackets after the message (`... [VM_BUSY]`) and ends with',
    'the exit status of its code.',
    '',
    '## Exit status',
    '',
    '| status | meaning |',
    '|---|---|',
    ...(Object.keys(EXIT) as ExitName[]).map((n) => `| ${EXIT[n]} | ${EXIT_MEANING[n]} |`),
  ];
  const entries = Object.entries(ERROR_CODES) as [string, ErrorCodeSpec][];
  for (const layer of Object.keys(LAYER_TITLES) as ErrorCodeSpec['layer'][]) {
    out.push('', `## ${LAYER_TITLES[layer]}`, '', '| code | exit | meaning |', '|---|---|---|');
    for (const [code, spec] of entries.filter(([, s]) => s.layer === layer)) {
      out.push(`| \`${code}\` | ${EXIT[spec.exit]} | ${spec.meaning.replaceAll('|', '\\|')} |`);
    }
  }
  return `${out.join('\n')}\n`;
}
