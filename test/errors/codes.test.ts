import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT_CODES_HELP, exitCodeFor } from '../../src/cli/exit-codes.js';
import { CloneError } from '../../src/core/clones/errors.js';
import {
  ERROR_CODES,
  EXIT,
  type ErrorCode,
  ZynCloneError,
  errorsMarkdown,
  isZynCloneError,
} from '../../src/errors/index.js';
import { XS_ERRNO_NAMES } from '../../src/xenstore/wire.js';

const CODES = Object.keys(ERROR_CODES) as ErrorCode[];

describe('the error code table', () => {
  it.each(CODES)('%s has an exit status and a meaning, and maps through vmclone', (code) => {
    const spec = ERROR_CODES[code];
    expect(code).toMatch(/^[A-Z][A-Z0-9_]+$/);
    expect(Object.keys(EXIT)).toContain(spec.exit);
    expect(spec.exit).not.toBe('OK');
    expect(spec.meaning).toMatch(/^\S.{10,}\.$/);
    const err = new ZynCloneError(code, 'something broke');
    expect(isZynCloneError(err, code)).toBe(true);
    expect(exitCodeFor(err)).toBe(EXIT[spec.exit]);
  });

  it('tells codes apart: a filesystem errno is not a XenStore one', () => {
    const fsError = Object.assign(new Error('open x'), { code: 'ENOENT' });
    expect(isZynCloneError(fsError)).toBe(false);
    expect(isZynCloneError(new ZynCloneError('XS_ENOENT', 'x'), 'ENOENT' as ErrorCode)).toBe(false);
    expect(isZynCloneError(new ZynCloneError('XS_ENOENT', 'x'), 'XS_ENOENT')).toBe(true);
    expect(exitCodeFor(fsError)).toBe(EXIT.FAILURE);
  });

  it('has a code for every errno xenstored sends', () => {
    for (const errno of XS_ERRNO_NAMES) expect(CODES).toContain(`XS_${errno}`);
  });

  it('puts the clone lifecycle on the base, with its codes in the table', () => {
    const err = new CloneError('CLONE_NOT_FOUND', 'x');
    expect(isZynCloneError(err, 'CLONE_NOT_FOUND')).toBe(true);
    expect(exitCodeFor(err)).toBe(EXIT.NOT_FOUND);
  });

  it('lists every exit status in vmclone --help', () => {
    for (const status of Object.values(EXIT))
      expect(EXIT_CODES_HELP).toMatch(new RegExp(`\\n  ${status}  \\w`));
  });
});

describe('docs/errors.md', () => {
  const file = resolve(__dirname, '../../docs/errors.md');
  if (process.env.ZYNCLONE_WRITE_DOCS === '1') writeFileSync(file, errorsMarkdown());

  it('is the page generated from the table', () => {
    expect(readFileSync(file, 'utf8')).toBe(errorsMarkdown());
  });
});
