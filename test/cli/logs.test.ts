// vmclone logs: which log it shows, read for real from a file and journalctl.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LogsError, logsCommand } from '../../src/cli/logs.js';
import { runVmclone } from '../../src/cli/vmclone.js';
import { zynclonePaths } from '../../src/core/paths.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'zc-logs-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

async function vmclone(...args: string[]) {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  err.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const code = await runVmclone(['logs', ...args], {
    stdout: out,
    stderr: err,
    env: { ...process.env, ZYNCLONE_ROOT: root },
  });
  return { code, stdout, stderr };
}

describe('which log', () => {
  const opts = { lines: 100, follow: false };

  it("reads a daemon's unit from the journal, or every ZynClone unit", () => {
    const paths = zynclonePaths(root);
    expect(logsCommand('net-monitor', opts, paths)).toEqual([
      'journalctl',
      '--no-pager',
      '-o',
      'short-iso',
      '-u',
      'zynclone-net-monitor.service',
      '-n',
      '100',
    ]);
    expect(logsCommand(undefined, { lines: 5, follow: true }, paths)).toEqual(
      expect.arrayContaining(['-u', 'zynclone-*', '-n', '5', '-f']),
    );
  });

  it("prefers the daemon's log file where it runs without systemd", () => {
    const paths = zynclonePaths(root);
    mkdirSync(join(root, 'var/log/zynclone'), { recursive: true });
    writeFileSync(join(root, 'var/log/zynclone/net-monitor.log'), '');
    expect(logsCommand('net-monitor', { lines: 3, follow: true }, paths)).toEqual([
      'tail',
      '-n',
      '3',
      '-F',
      '--',
      join(root, 'var/log/zynclone/net-monitor.log'),
    ]);
  });

  it('refuses a daemon name that is no unit name, with a usage error', async () => {
    expect(() => logsCommand('../../etc/passwd', opts, zynclonePaths(root))).toThrow(LogsError);
    const r = await vmclone('net;monitor');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid daemon name "net;monitor"/);
    expect((await vmclone('-n', '0')).code).toBe(2);
  });
});

describe('vmclone logs', () => {
  it('--file shows the last lines of a log file', async () => {
    const file = join(root, 'daemon.log');
    writeFileSync(file, '{"msg":"one"}\n{"msg":"two"}\n{"msg":"three"}\n');
    const r = await vmclone('--file', file, '-n', '2');
    expect(r).toMatchObject({ code: 0, stdout: '{"msg":"two"}\n{"msg":"three"}\n' });
  });

  const journal = spawnSync('journalctl', ['--version']).status === 0;
  it.skipIf(!journal)("runs journalctl for the daemon's unit", async () => {
    const r = await vmclone('net-monitor', '-n', '1');
    const direct = spawnSync(
      'journalctl',
      ['--no-pager', '-o', 'short-iso', '-u', 'zynclone-net-monitor.service', '-n', '1'],
      { encoding: 'utf8' },
    );
    expect(r.code).toBe(direct.status === 0 ? 0 : 1);
    expect(r.stdout).toBe(direct.stdout);
  });
});
