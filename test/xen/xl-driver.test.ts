// Process handling of the driver: argv passing, exit codes, timeouts, a missing
// binary. The behaviour of xl itself is covered by the contract suite.
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XlDriver } from '../../src/xen/xl-driver.js';

let dir: string;
let script: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zc-xl-driver-'));
  script = join(dir, 'xl');
  // Stands in for xl's process behaviour only: prints argv, or fails/hangs on request.
  await writeFile(
    script,
    [
      '#!/bin/sh',
      'case "$1" in',
      '  hang) exec sleep 30 ;;',
      '  fail) echo "libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain 7:Domain with name \\"a\\" already exists." >&2; exit 1 ;;',
      '  pause) echo "libxl: error: libxl_domain.c:587:libxl_domain_pause: Domain 99:Pausing domain: No such process" >&2; exit 0 ;;',
      '  domid) echo 12 ;;',
      '  create) for a in "$@"; do printf "%s\\n" "$a"; done > "$(dirname "$0")/create-argv" ;;',
      '  *) for a in "$@"; do printf "%s\\n" "$a"; done ;;',
      'esac',
      '',
    ].join('\n'),
  );
  await chmod(script, 0o755);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('XlDriver process handling', () => {
  it('passes argv untouched (no shell)', async () => {
    const xl = new XlDriver({ xlPath: script });
    const { stdout } = await xl.run(['echo', 'a b', '$(id)', "'q'", '*']);
    expect(stdout).toBe("echo\na b\n$(id)\n'q'\n*\n");
  });

  it('turns a failure into a typed error with stderr and exit code', async () => {
    const xl = new XlDriver({ xlPath: script });
    await expect(xl.run(['fail'])).rejects.toMatchObject({
      code: 'XL_DUPLICATE_NAME',
      exitCode: 1,
      stderr: expect.stringContaining('already exists'),
      message: expect.stringContaining('exited with status 1'),
    });
  });

  it('reports libxl errors of pause even though xl exits 0', async () => {
    const xl = new XlDriver({ xlPath: script });
    await expect(xl.pause(99 as never)).rejects.toMatchObject({
      code: 'XL_NO_SUCH_DOMAIN',
      exitCode: 0,
    });
  });

  it('kills xl on timeout', async () => {
    const xl = new XlDriver({ xlPath: script, timeoutMs: 200 });
    await expect(xl.run(['hang'])).rejects.toMatchObject({ code: 'XL_TIMEOUT' });
  });

  it('says when xl cannot be run', async () => {
    const xl = new XlDriver({ xlPath: join(dir, 'missing-xl') });
    await expect(xl.info()).rejects.toMatchObject({ code: 'XL_NOT_FOUND' });
  });

  it('create passes -p and extra keys as xl config lines, and returns the domid', async () => {
    const cfg = join(dir, 'g.cfg');
    await writeFile(cfg, 'name = "g"\n');
    const xl = new XlDriver({ xlPath: script });
    await expect(
      xl.create(cfg, { paused: true, extraKeys: { name: 'g2', memory: 256 } }),
    ).resolves.toBe(12);
    const argv = await readFile(join(dir, 'create-argv'), 'utf8');
    expect(argv).toBe(`create\n-p\n${cfg}\nname="g2"\nmemory=256\n`);
  });

  it('refuses a config without a name before running xl', async () => {
    const cfg = join(dir, 'noname.cfg');
    await writeFile(cfg, 'memory = 1\n');
    await expect(new XlDriver({ xlPath: script }).create(cfg)).rejects.toMatchObject({
      code: 'XL_BAD_CONFIG',
    });
  });
});
