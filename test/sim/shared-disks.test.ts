// The simulator guards a disk the way Xen's block script does for phy disks,
// for every backend: never two writers, nor a reader next to a writer. A
// non-forced block-detach needs the guest's cooperation.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XsClient } from '../../src/xenstore/index.js';
import { SimFixture, exec } from './helpers.js';

let fx: SimFixture;
let xs: XsClient;
const XVDB = 51728;

function cfg(name: string, body: string): string {
  const file = join(fx.root, `${name}.cfg`);
  writeFileSync(file, `name = "${name}"\nmemory = 32\n${body}`);
  return file;
}

async function domid(name: string): Promise<number> {
  return Number((await fx.xl('domid', name)).stdout.trim());
}

beforeAll(async () => {
  fx = await SimFixture.create('zc-sim-shared-');
  // A short libxl detach timeout (10 s on Xen) keeps the refusals fast.
  const up = await exec(
    process.execPath,
    [fx.entry, 'sim', 'up', '--no-network', '--root', fx.root],
    { ...fx.env, ZYNCLONE_SIM_DETACH_TIMEOUT_MS: '300' },
  );
  expect(up.code, up.stderr).toBe(0);
  for (const f of ['root-a.img', 'root-b.img', 'root-w.img', 'vol.img']) {
    writeFileSync(join(fx.root, f), Buffer.alloc(1 << 20));
  }
  xs = await XsClient.connect({ path: join(fx.root, 'run/xenstored/socket'), reconnect: false });
  const a = await fx.xl(
    'create',
    cfg('a', `disk = [ '${fx.root}/root-a.img,raw,xvda,w', '${fx.root}/vol.img,raw,xvdb,w' ]\n`),
  );
  expect(a.code, a.stderr).toBe(0);
  const b = await fx.xl('create', cfg('b', `disk = [ '${fx.root}/root-b.img,raw,xvda,w' ]\n`));
  expect(b.code, b.stderr).toBe(0);
});

afterAll(async () => {
  await xs?.close();
  await fx?.dispose();
});

describe('the simulator refuses a second user of a writable disk', () => {
  it('refuses a domain whose config names a disk another domain writes, read-write or read-only', async () => {
    for (const access of ['w', 'r']) {
      const r = await fx.xl(
        'create',
        cfg('c', `disk = [ 'phy:${fx.root}/vol.img,xvdc,${access}' ]\n`),
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /Device .*vol\.img is mounted in a guest domain \(domain \d+, xvdb\)/,
      );
      expect((await fx.xl('domid', 'c')).code).toBe(1);
    }
  });

  it('refuses a block-attach of it to another domain, and to a second device of the same domain', async () => {
    const other = await fx.xl('block-attach', 'b', `${fx.root}/vol.img,raw,xvdb,w`);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/File .*vol\.img is mounted in a guest domain/);
    expect(await xs.tryRead(`/local/domain/0/backend/qdisk/${await domid('b')}/${XVDB}`)).toBe(
      undefined,
    );
    const twice = await fx.xl('block-attach', 'a', `${fx.root}/vol.img,raw,xvdc,r`);
    expect(twice.code).toBe(1);
  });
});

describe('block-detach needs the guest', () => {
  it('fails while the guest has the disk mounted, with the guest error node, and the disk stays', async () => {
    const a = await domid('a');
    expect((await fx.sim('guest', 'a', 'mount', 'xvdb')).code).toBe(0);
    const r = await fx.xl('block-detach', 'a', 'xvdb');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `unable to remove device with path /local/domain/0/backend/qdisk/${a}/${XVDB}`,
    );
    expect(await xs.read(`/local/domain/${a}/error/device/vbd/${XVDB}/error`)).toBe(
      '16 Device in use; refusing to close',
    );
    expect(await xs.read(`/local/domain/0/backend/qdisk/${a}/${XVDB}/state`)).toBe('5');
    expect(await xs.read(`/local/domain/${a}/device/vbd/${XVDB}/state`)).toBe('4');
    // Still attached, so still the only one that may have it.
    expect((await fx.xl('block-attach', 'b', `${fx.root}/vol.img,raw,xvdb,w`)).code).toBe(1);
  });

  it('detaches once the guest unmounted it; then the other domain gets it and reads what was written', async () => {
    const a = await domid('a');
    expect((await fx.sim('guest', 'a', 'write', 'xvdb', 'marker-from-a')).code).toBe(0);
    expect((await fx.sim('guest', 'a', 'umount', 'xvdb')).code).toBe(0);
    const r = await fx.xl('block-detach', 'a', 'xvdb');
    expect(r.code, r.stderr).toBe(0);
    expect(await xs.tryRead(`/local/domain/0/backend/qdisk/${a}/${XVDB}`)).toBeUndefined();
    expect(await xs.tryRead(`/local/domain/${a}/device/vbd/${XVDB}`)).toBeUndefined();
    const gone = await fx.sim('guest', 'a', 'read', 'xvdb', '13');
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('No such device');

    const at = await fx.xl('block-attach', 'b', `${fx.root}/vol.img,raw,xvdb,w`);
    expect(at.code, at.stderr).toBe(0);
    const read = await fx.sim('guest', 'b', 'read', 'xvdb', '13');
    expect(read.stdout).toBe('marker-from-a');
  });

  it('a Windows guest says so in its frontend error node; -f detaches anyway', async () => {
    const w = await fx.xl(
      'create',
      cfg(
        'w',
        `type = "hvm"\ndisk = [ 'format=raw,vdev=hdb,access=w,target=${fx.root}/root-w.img' ]\n`,
      ),
    );
    expect(w.code, w.stderr).toBe(0);
    const id = await domid('w');
    const hdb = 832;
    expect((await fx.sim('guest', 'w', 'mount', 'hdb')).code).toBe(0);
    expect((await fx.xl('block-detach', 'w', 'hdb')).code).toBe(1);
    expect(await xs.read(`/local/domain/${id}/device/vbd/${hdb}/error`)).toBe(
      'Unplug failed due to open handle(s)!',
    );
    expect((await fx.xl('block-detach', '-f', 'w', 'hdb')).code).toBe(0);
    expect(await xs.tryRead(`/local/domain/0/backend/qdisk/${id}/${hdb}`)).toBeUndefined();
  });

  it('a guest cannot write a disk attached read-only', async () => {
    writeFileSync(join(fx.root, 'ro.img'), Buffer.alloc(4096));
    expect((await fx.xl('block-attach', 'b', `${fx.root}/ro.img,raw,xvdc,r`)).code).toBe(0);
    const r = await fx.sim('guest', 'b', 'write', 'xvdc', 'x');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Read-only file system');
  });
});
