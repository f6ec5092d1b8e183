// `zynclone web` as a process: its options, the URL it prints when ready, a clean stop.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseListen } from '../../src/web/main.js';

const repo = resolve(__dirname, '../..');

describe('--listen', () => {
  it('takes HOST:PORT and [IPV6]:PORT', () => {
    expect(parseListen('127.0.0.1:8450')).toEqual({ host: '127.0.0.1', port: 8450 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListen('localhost:80')).toEqual({ host: 'localhost', port: 80 });
  });

  it('names what is wrong', () => {
    for (const bad of ['8450', '127.0.0.1', '127.0.0.1:99999', '::1:80', '127.0.0.1:http']) {
      expect(() => parseListen(bad)).toThrow(/--listen must be HOST:PORT or \[IPV6\]:PORT/);
    }
  });
});

describe('zynclone web', () => {
  let dir: string;
  let entry: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'zc-web-main-'));
    entry = join(repo, 'node_modules/.cache', `zynclone-web-${process.pid}.mjs`);
    await build({
      entryPoints: [join(repo, 'src/bin/zynclone.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      outfile: entry,
      banner: {
        js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
      },
      logLevel: 'error',
    });
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(entry, { force: true });
  });

  it('prints the URL it serves once ready, serves the login page there, and stops on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [
        entry,
        'web',
        '--listen',
        '127.0.0.1:0',
        '--root',
        join(dir, 'root'),
        '--xenstore',
        join(dir, 'no-socket'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATH: '/usr/bin:/bin' } },
    );
    try {
      let out = '';
      const url = await new Promise<string>((resolveUrl, reject) => {
        child.stdout.on('data', (b: Buffer) => {
          out += b;
          const m = /"msg":"serving","url":"([^"]+)"/.exec(out);
          if (m) resolveUrl(m[1]!);
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      // Every stdout line is one JSON record.
      for (const line of out.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
      const login = await fetch(new URL('/login', url));
      expect(login.status).toBe(200);
      // No XenStore here: the doctor says so instead of failing.
      const token = readFileSync(join(dir, 'root/var/lib/zynclone/web/admin-token'), 'utf8').trim();
      const doctor = await fetch(new URL('/api/v1/doctor', url), {
        headers: { Authorization: `Bearer ${token}` },
      });
      expect(doctor.status).toBe(200);
      const findings = (
        (await doctor.json()) as { findings: { check: string; ok: boolean; message: string }[] }
      ).findings;
      expect(findings.find((f) => f.check === 'xenstore')).toMatchObject({
        ok: false,
        message: expect.stringMatching(/^XenStore is not reachable at /),
      });
      const exited = new Promise<number | null>((r) => child.once('exit', r));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('refuses bad options with usage status 2', async () => {
    const child = spawn(process.execPath, [entry, 'web', '--listen', 'nowhere'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (b: Buffer) => {
      err += b;
    });
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code).toBe(2);
    expect(err).toContain('zynclone web: --listen must be HOST:PORT');
  });
});
