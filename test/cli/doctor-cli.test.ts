// `vmclone doctor` as an operator runs it: what is wrong, how to fix it, and
// an exit status scripts can use. The checks themselves: test/core/health.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runVmclone } from '../../src/cli/vmclone.js';
import { XenstoreServer } from '../../src/sim/xenstored/server.js';

function sink() {
  const s = new PassThrough();
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return Object.assign(s, { text: () => Buffer.concat(chunks).toString('utf8') });
}

describe('vmclone doctor', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'zc-doctor-cli-'));
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  async function doctor(env: NodeJS.ProcessEnv, ...args: string[]) {
    const stdout = sink();
    const stderr = sink();
    const code = await runVmclone(['doctor', ...args], {
      stdout,
      stderr,
      env: { ...process.env, ZYNCLONE_ROOT: root, PATH: '/nonexistent', ...env },
    });
    return { code, stdout: stdout.text(), stderr: stderr.text() };
  }

  it('names each problem with a fix and exits 1 on a host without xl or xenstored', async () => {
    const r = await doctor({ XENSTORED_PATH: join(root, 'no-such-socket') });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/\[FAIL\] xl: /);
    expect(r.stdout).toMatch(/\[FAIL\] xenstore: XenStore is not reachable at .*no-such-socket/);
    expect(r.stdout).toMatch(/fix: start xenstored/);
    expect(r.stdout).toMatch(/see: docs\/debugging.md#xenstore-not-reachable/);
    expect(r.stdout).toMatch(/problem\(s\) found$/m);
  });

  it('reports a XenStore without the ZynClone tree and absent monitors, as JSON', async () => {
    const socket = join(root, 'xs.sock');
    const server = await XenstoreServer.start({ socketPath: socket });
    try {
      const r = await doctor({ XENSTORED_PATH: socket }, '--json');
      expect(r.code).toBe(1);
      const report = JSON.parse(r.stdout) as {
        healthy: boolean;
        findings: Array<{
          check: string;
          ok: boolean;
          message: string;
          fix?: string;
          docs?: string;
        }>;
      };
      expect(report.healthy).toBe(false);
      const xenstore = report.findings.find((f) => f.check === 'xenstore');
      expect(xenstore?.message).toMatch(/reachable but \/tool\/zynclone does not exist/);
      const monitors = report.findings.filter((f) => /monitor/.test(f.check) && !f.ok);
      expect(monitors.length).toBeGreaterThan(0);
      for (const f of monitors) expect(f.fix).toBeTruthy();
      const netMonitor = report.findings.find((f) => f.check === 'heartbeat:net-monitor');
      expect(netMonitor).toMatchObject({ docs: 'docs/debugging.md#monitors-not-running' });
    } finally {
      await server.close();
    }
  });
});
