// zynclone-livesave's argv handling, on the host: the C parser's own tests
// (helpers/livesave/test_args.c) and the built binary's answer to bad usage,
// which must come before it touches libxl. Live saves run in the real-Xen lane
// (xen-lane/scenarios/live-save.ts).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skipWithout } from '../prerequisites.js';

const run = promisify(execFile);
const SRC = join(import.meta.dirname, '../../helpers/livesave');
const skip = skipWithout(existsSync('/usr/include/libxl.h'), "libxen-dev (libxl's headers)");

describe.skipIf(skip)('zynclone-livesave', () => {
  let out: string;
  beforeAll(async () => {
    out = mkdtempSync(join(tmpdir(), 'zc-livesave-'));
    await run('make', ['-s', '-C', SRC, `OUT=${out}`, 'all', `${out}/test-args`]);
  }, 60_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('passes the parser tests', async () => {
    const { stdout } = await run(join(out, 'test-args'));
    expect(stdout).toContain('all passed');
    expect(stdout).not.toContain('FAIL');
  });

  const usage = async (args: string[]) =>
    run(join(out, 'zynclone-livesave'), args).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );

  it.each([
    [[], 'missing DOMAIN or FILE'],
    [['7'], 'missing DOMAIN or FILE'],
    [['-p', '7', 'f'], 'unknown option'],
    [['7', 'f', 'g'], 'too many arguments'],
    [['--resume', '--hold', '7'], '--hold and --resume exclude each other'],
  ])('refuses %j with exit 2 and says why', async (args, why) => {
    const r = await usage(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`zynclone-livesave: ${why}`);
    expect(r.stderr).toContain('usage: zynclone-livesave');
  });

  it('prints its usage for --help', async () => {
    const { stdout } = await run(join(out, 'zynclone-livesave'), ['--help']);
    expect(stdout).toMatch(/^usage: zynclone-livesave \[--hold\]/);
  });
});
