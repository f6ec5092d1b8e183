// `zynclone clone-monitor` as a process: options, heartbeat, JSON logs, and
// a XenStore server that goes away and comes back empty (reconnect, resync,
// everything published again from the state store).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XenstoreServer } from '../../../src/sim/xenstored/server.js';
import { XsClient, formatPerm } from '../../../src/xenstore/index.js';
import { bundleDaemon, repo } from '../../bundle.js';
import { SimHost, waitFor } from './host.js';

describe('zynclone clone-monitor process', () => {
  let host: SimHost;
  let entry: string;
  let child: ChildProcess | undefined;
  let server: XenstoreServer | undefined;
  let xs: XsClient | undefined;
  let out = '';

  beforeAll(async () => {
    host = await SimHost.create('zc-clonemon-d-');
    await host.makeCloneOfWeb();
    const cache = join(repo, 'node_modules/.cache/zynclone-clone-monitor');
    mkdirSync(cache, { recursive: true });
    entry = join(cache, `clone-monitor-${process.pid}.mjs`);
    await bundleDaemon('runCloneMonitor', 'clone-monitor', entry);
  });

  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await xs?.close().catch(() => {});
    await server?.close().catch(() => {});
    await host?.dispose();
    if (entry) rmSync(entry, { force: true });
  });

  it('refuses bad options with status 2', async () => {
    const p = spawn(process.execPath, [entry, '--netdd-domid', 'x'], { stdio: 'pipe' });
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    const code = await new Promise((r) => p.on('exit', r));
    expect(code).toBe(2);
    expect(err).toMatch(/--netdd-domid must be an integer/);
  });

  it('beats, logs JSON, and republishes everything after XenStore restarts empty', async () => {
    const socketPath = join(host.work, 'xs2.sock');
    server = await XenstoreServer.start({ socketPath });
    xs = await XsClient.connect({ path: socketPath, transport: 'socket' });
    child = spawn(
      process.execPath,
      [entry, '--xenstore', socketPath, '--root', host.root, '--heartbeat-ms', '200'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, PATH: `${join(host.root, 'bin')}:${process.env.PATH}` },
      },
    );
    child.stdout!.on('data', (d) => {
      out += d;
    });
    child.stderr!.on('data', (d) => {
      out += d;
    });
    const c = xs;
    await waitFor(
      'vm/web published',
      async () => (await c.tryRead('/tool/zynclone/vm/web/state')) === 'running' || undefined,
    );
    const base = '/tool/zynclone/daemons/clone-monitor';
    expect(await c.read(`${base}/version`)).toMatch(/^\d+\.\d+\.\d+/);
    expect(await c.read(`${base}/pid`)).toBe(String(child.pid));
    expect(await c.read(`${base}/heartbeat-ms`)).toBe('200');
    const beat1 = Number(await c.read(`${base}/heartbeat`));
    await waitFor(
      'a later heartbeat',
      async () => Number(await c.read(`${base}/heartbeat`)) > beat1 || undefined,
    );

    // XenStore goes away and comes back with nothing in it.
    await xs.close();
    await server.close();
    server = await XenstoreServer.start({ socketPath });
    const fresh = await XsClient.connect({ path: socketPath, transport: 'socket' });
    xs = fresh;
    await waitFor(
      'vm/web published again',
      async () =>
        (await fresh.tryRead('/tool/zynclone/vm/web/clone-name')) === 'web-clone' || undefined,
    );
    expect((await fresh.getPerms('/tool/zynclone')).map(formatPerm)).toEqual(['n0']);
    await waitFor('heartbeat and identity again', async () =>
      (await fresh.tryRead(`${base}/heartbeat`)) !== undefined &&
      (await fresh.tryRead(`${base}/version`)) !== undefined
        ? true
        : undefined,
    );

    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const lines = out.split('\n').filter((l) => l.trim() !== '');
    for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();
    const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(msgs).toContain('watching');
    expect(msgs).toContain('xenstore reconnected: full reconcile');
    // XenStore keeps what was published when the monitor stops.
    expect(await fresh.tryRead('/tool/zynclone/vm/web/state')).toBe('running');
  });
});
