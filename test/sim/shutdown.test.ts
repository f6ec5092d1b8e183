// Guests obey control/shutdown in XenStore, whoever writes it: xl shutdown
// and xl reboot (which write it, as libxl does) or a plain xenstore-write.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XsClient } from '../../src/xenstore/index.js';
import { SimFixture, exec } from './helpers.js';

let fx: SimFixture;
let xs: XsClient;

function cfg(name: string, body: string): string {
  const file = join(fx.root, `${name}.cfg`);
  writeFileSync(file, `name = "${name}"\nmemory = 16\n${body}`);
  return file;
}

async function create(name: string, body = '', ...opts: string[]): Promise<number> {
  const r = await fx.xl('create', ...opts, cfg(name, body));
  expect(r.code, r.stderr).toBe(0);
  return Number((await fx.xl('domid', name)).stdout);
}

/** The domain's `xl list` state letters, or undefined once it is gone. */
async function state(name: string): Promise<string | undefined> {
  const r = await fx.xl('list', name);
  return r.code === 0 ? /\s([-rbpscd]{6})\s/.exec(r.stdout)?.[1] : undefined;
}

async function until<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${v})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function xenstoreWrite(path: string, value: string) {
  return exec('xenstore-write', [path, value], {
    XENSTORED_PATH: join(fx.root, 'run/xenstored/socket'),
  });
}

beforeAll(async () => {
  fx = await SimFixture.create('zc-sim-shutdown-');
  const up = await fx.sim('up', '--no-network');
  expect(up.code, up.stderr).toBe(0);
  xs = await XsClient.connect({ path: join(fx.root, 'run/xenstored/socket'), reconnect: false });
});

afterAll(async () => {
  await xs?.close();
  await fx?.dispose();
});

describe('a write of control/shutdown', () => {
  it('powers the guest off: xenstore-write poweroff destroys it', async () => {
    const id = await create('off1');
    const w = await xenstoreWrite(`/local/domain/${id}/control/shutdown`, 'poweroff');
    expect(w.code, w.stderr).toBe(0);
    await until(
      'off1 to go',
      () => state('off1'),
      (s) => s === undefined,
    );
    expect(await xs.tryRead(`/local/domain/${id}/name`)).toBeUndefined();
  });

  it('is acknowledged by the guest, which then shuts down (on_poweroff=preserve keeps it)', async () => {
    const id = await create('keep1', 'on_poweroff = "preserve"\n');
    await xenstoreWrite(`/local/domain/${id}/control/shutdown`, 'halt');
    await until(
      'keep1 to shut down',
      () => state('keep1'),
      (s) => s === '---s--',
    );
    expect(await xs.read(`/local/domain/${id}/control/shutdown`)).toBe('');
    expect((await fx.xl('list', '-v', 'keep1')).stdout).toMatch(/---s-- .* 0 +-$/m);
    expect((await fx.xl('destroy', 'keep1')).code).toBe(0);
  });

  it('reboots the guest: on_reboot=restart brings it back under a new domid', async () => {
    const id = await create('boot1');
    await xenstoreWrite(`/local/domain/${id}/control/shutdown`, 'reboot');
    const again = await until(
      'boot1 to come back',
      async () => (await fx.xl('domid', 'boot1')).stdout.trim(),
      (s) => s !== '' && s !== String(id),
    );
    expect(await state('boot1')).toBe('-b----');
    expect(await xs.read(`/local/domain/${again}/control/feature-reboot`)).toBe('1');
    await fx.xl('destroy', 'boot1');
  });

  it('suspends the guest: it stays, shut down for reason suspend', async () => {
    const id = await create('susp1');
    await xs.write(`/local/domain/${id}/control/shutdown`, 'suspend');
    await until(
      'susp1 to suspend',
      () => state('susp1'),
      (s) => s === '---ss-',
    );
    await fx.xl('destroy', 'susp1');
  });

  it('waits while the guest is paused and is obeyed once it runs', async () => {
    const id = await create('nap1');
    expect((await fx.xl('pause', 'nap1')).code).toBe(0);
    await xs.write(`/local/domain/${id}/control/shutdown`, 'poweroff');
    expect(await xs.read(`/local/domain/${id}/control/shutdown`)).toBe('poweroff');
    expect(await state('nap1')).toBe('--p---');
    expect((await fx.xl('unpause', 'nap1')).code).toBe(0);
    await until(
      'nap1 to go',
      () => state('nap1'),
      (s) => s === undefined,
    );
  });
});

describe('xl shutdown / reboot', () => {
  it('writes control/shutdown; with -w it waits and prints the reason code', async () => {
    const id = await create('sd1');
    const r = await fx.xl('shutdown', '-w', 'sd1');
    expect([r.code, r.stderr]).toEqual([
      0,
      `Shutting down domain ${id}\nWaiting for 1 domains\nDomain ${id} has been shut down, reason code 0\nAll domains have been shut down\n`,
    ]);
    expect(await state('sd1')).toBeUndefined();
    const id2 = await create('rb1');
    const b = await fx.xl('reboot', '-w', 'rb1');
    expect(b.stderr).toContain(`Domain ${id2} has been shut down, reason code 1\n`);
    await until(
      'rb1 to come back',
      () => state('rb1'),
      (s) => s === '-b----',
    );
    await fx.xl('destroy', 'rb1');
  });

  it('on a domain created paused, leaves the request for the guest to take at its first boot', async () => {
    const id = await create('cold1', '', '-p');
    expect((await fx.xl('shutdown', 'cold1')).code).toBe(0);
    expect(await xs.read(`/local/domain/${id}/control/shutdown`)).toBe('poweroff');
    expect(await state('cold1')).toBe('--p---');
    await fx.xl('unpause', 'cold1');
    await until(
      'cold1 to go',
      () => state('cold1'),
      (s) => s === undefined,
    );
  });

  it('fails like xl for an HVM guest without PV drivers, and -F presses the ACPI button', async () => {
    const id = await create('hvm1', 'type = "hvm"\nvnc = 0\n', '-p');
    const r = await fx.xl('shutdown', 'hvm1');
    expect([r.code, r.stderr]).toEqual([
      1,
      `Shutting down domain ${id}\nPV control interface not available: external graceful shutdown not possible.\nUse "-F" to fallback to ACPI power event.\nshutdown failed (rc=-10)\n`,
    ]);
    const f = await fx.xl('shutdown', '-F', 'hvm1');
    expect([f.code, f.stderr]).toEqual([
      0,
      `Shutting down domain ${id}\nPV control interface not available: sending ACPI power button event.\n`,
    ]);
    await fx.xl('unpause', 'hvm1');
    await until(
      'hvm1 to go',
      () => state('hvm1'),
      (s) => s === undefined,
    );
  });
});
