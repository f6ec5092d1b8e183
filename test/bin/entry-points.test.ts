// The two installed commands, run as a user runs them (from the build output).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repo = resolve(__dirname, '../..');
const pkg = JSON.parse(readFileSync(resolve(repo, 'package.json'), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
};

async function cli(name: string, args: string[]) {
  try {
    const { stdout, stderr } = await run('node', [resolve(repo, pkg.bin[name]!), ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('vmclone', () => {
  it('prints the package version', async () => {
    const r = await cli('vmclone', ['--version']);
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('prints help with examples', async () => {
    const r = await cli('vmclone', ['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: vmclone');
    expect(r.stdout).toContain('Examples:');
  });

  it('rejects an unknown command with a non-zero exit', async () => {
    const r = await cli('vmclone', ['frobnicate']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^vmclone: unknown command 'frobnicate' \[CLI_USAGE\]$/m);
    expect(r.stderr).toContain('Usage: vmclone');
  });
});

describe('vmclone output', () => {
  it('ends quietly with its status when the reader has gone (vmclone --help | true)', async () => {
    // The script is fixed; node and the entry point come in as arguments.
    const { stdout, stderr } = await run('bash', [
      '-c',
      '"$0" "$1" --help | true; echo "exit ${PIPESTATUS[0]}"',
      process.execPath,
      resolve(repo, pkg.bin.vmclone!),
    ]);
    expect(stdout).toBe('exit 0\n');
    expect(stderr).toBe('');
  });
});

describe('zynclone', () => {
  it('lists its subcommands', async () => {
    const r = await cli('zynclone', ['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/xenstored/);
    expect(r.stdout).toMatch(/sim/);
    expect(r.stdout).toMatch(/net-monitor/);
    expect(r.stdout).toMatch(/clone-monitor/);
  });

  it('prints the package version', async () => {
    const r = await cli('zynclone', ['--version']);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('names an unknown subcommand and exits 2', async () => {
    const r = await cli('zynclone', ['nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'nope'");
  });

  it('passes arguments through to xenstored', async () => {
    const r = await cli('zynclone', ['xenstored']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--socket is required');
  });
});
