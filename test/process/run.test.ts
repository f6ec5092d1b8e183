// The one subprocess runner, with real programs.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isZynCloneError } from '../../src/errors/index.js';
import { RunError, describeArgv, run } from '../../src/process/index.js';

const node = process.execPath;

async function failure(p: Promise<unknown>): Promise<RunError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(RunError);
    return err as RunError;
  }
  throw new Error('expected a RunError');
}

describe('run', () => {
  it('returns what the program printed, and feeds it stdin', async () => {
    const r = await run([node, '-e', 'process.stdin.pipe(process.stdout); console.error("note")'], {
      input: 'a line\n',
    });
    expect(r).toMatchObject({ status: 0, signal: null, stdout: 'a line\n', stderr: 'note\n' });
  });

  it('passes arguments as they are: no shell ever sees them', async () => {
    const hostile = '$(touch /tmp/zc-pwned); `id` ; echo "x" | cat';
    const r = await run([node, '-e', 'console.log(process.argv[1])', hostile]);
    expect(r.stdout).toBe(`${hostile}\n`);
  });

  it('fails with RUN_FAILED naming the program, its status and stderr, unless check is off', async () => {
    const argv = [node, '-e', 'console.error("disk on fire"); process.exit(3)'];
    const err = await failure(run(argv));
    expect(isZynCloneError(err, 'RUN_FAILED')).toBe(true);
    expect(err.status).toBe(3);
    expect(err.stderr).toBe('disk on fire\n');
    expect(err.message).toBe(`${describeArgv(argv)} exited with status 3: disk on fire`);
    const answered = await run(argv, { check: false });
    expect(answered.status).toBe(3);
  });

  it('fails with RUN_NOT_FOUND, keeping the errno, when the program is not installed', async () => {
    const err = await failure(run(['/nonexistent/zc-tool', '--help']));
    expect(err.code).toBe('RUN_NOT_FOUND');
    expect(err.errno).toBe('ENOENT');
    expect(err.message).toMatch(/cannot run \/nonexistent\/zc-tool/);
  });

  it('kills a program that runs out of time and fails with RUN_TIMEOUT', async () => {
    const t0 = Date.now();
    const err = await failure(
      run([node, '-e', 'setTimeout(() => {}, 60_000)'], { timeoutMs: 300 }),
    );
    expect(err.code).toBe('RUN_TIMEOUT');
    expect(err.message).toMatch(/did not finish within 300 ms and was killed/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('rejects a timed-out program only once it is gone, also with check: false', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zc-run-'));
    try {
      const pidFile = join(dir, 'pid');
      // Ignores SIGTERM; only the SIGKILL of the timeout ends it.
      const script = `process.on('SIGTERM', () => {}); require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000);`;
      const err = await failure(run([node, '-e', script], { timeoutMs: 500, check: false }));
      expect(err.code).toBe('RUN_TIMEOUT');
      const pid = Number(readFileSync(pidFile, 'utf8'));
      expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('kills a program that prints more than allowed', async () => {
    const err = await failure(
      run([node, '-e', 'for (;;) process.stdout.write("y".repeat(65536))'], {
        maxOutputBytes: 100_000,
      }),
    );
    expect(err.code).toBe('RUN_FAILED');
    expect(err.message).toMatch(/printed more than 100000 bytes/);
  });

  it('refuses an empty argv', async () => {
    expect((await failure(run([]))).code).toBe('RUN_NOT_FOUND');
  });
});
