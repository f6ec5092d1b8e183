import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XsType } from '../../../src/xenstore/wire.js';
import { RawClient, isAlive, runTool } from './helpers.js';

// Runs runXenstored in a real child process, so signals and socket cleanup are real.
let dir: string;
let entry: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'xsd-main-'));
  const mainTs = fileURLToPath(new URL('../../../src/sim/xenstored/main.ts', import.meta.url));
  const stub = path.join(dir, 'entry.ts');
  await writeFile(
    stub,
    `import { runXenstored } from ${JSON.stringify(mainTs)};\nprocess.exitCode = await runXenstored(process.argv.slice(2));\n`,
  );
  entry = path.join(dir, 'xenstored.mjs');
  await build({
    entryPoints: [stub],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    outfile: entry,
    logLevel: 'silent',
  });
});

afterAll(async () => {
  for (const c of children) if (isAlive(c)) c.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

function start(args: string[]): {
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, [entry, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const lines: string[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  return { child, lines, exited };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('zynclone xenstored', () => {
  it('serves until SIGTERM and then removes its sockets', async () => {
    const socket = path.join(dir, 'run', 'socket');
    const domains = path.join(dir, 'domains');
    const { child, lines, exited } = start(['--socket', socket, '--domain-socket-dir', domains]);
    await until(() => lines.length > 0, 'the ready line');
    const ready = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(ready).toMatchObject({ event: 'ready', socket });

    expect((await runTool(socket, '/usr/bin/xenstore-write', ['/x', 'y'])).code).toBe(0);
    expect((await runTool(socket, '/usr/bin/xenstore-read', ['/x'])).stdout).toBe('y\n');
    const admin = await RawClient.connect(socket);
    await admin.call(XsType.INTRODUCE, '4\0\x31\0\x31\0');
    expect(existsSync(path.join(domains, 'dom4.sock'))).toBe(true);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await admin.waitFor(() => (admin.closed ? true : undefined), 'the connection to close');
    expect(existsSync(socket)).toBe(false);
    expect(existsSync(path.join(domains, 'dom4.sock'))).toBe(false);
  });

  it('refuses to start without --socket', async () => {
    const { exited } = start([]);
    expect(await exited).toBe(2);
  });

  it('refuses a socket another live server holds', async () => {
    const socket = path.join(dir, 'busy.sock');
    const first = start(['--socket', socket]);
    await until(() => first.lines.length > 0, 'the first server');
    const second = start(['--socket', socket]);
    expect(await second.exited).toBe(1);
    first.child.kill('SIGINT');
    expect(await first.exited).toBe(0);
    // A stale socket file left by a killed server does not block the next start.
    const killed = start(['--socket', socket]);
    await until(() => killed.lines.length > 0, 'the third server');
    killed.child.kill('SIGKILL');
    await killed.exited;
    expect(existsSync(socket)).toBe(true);
    const again = start(['--socket', socket]);
    await until(() => again.lines.length > 0, 'a server on the stale socket');
    again.child.kill('SIGTERM');
    expect(await again.exited).toBe(0);
  });
});
