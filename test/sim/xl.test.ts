// The simulator's xl as a user (or ZynClone's xl driver) sees it: formats,
// exit codes, and the XenStore layout libxl writes.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simPaths } from '../../src/sim/paths.js';
import { xlLauncher } from '../../src/sim/xl/launcher.js';
import { XsClient } from '../../src/xenstore/index.js';
import { SimFixture, exec } from './helpers.js';

let fx: SimFixture;
let xs: XsClient;

function cfg(name: string, body: string): string {
  const file = join(fx.root, `${name}.cfg`);
  writeFileSync(file, `name = "${name}"\n${body}`);
  return file;
}

beforeAll(async () => {
  fx = await SimFixture.create('zc-sim-xl-');
  const up = await fx.sim('up', '--no-network');
  expect(up.code, up.stderr).toBe(0);
  writeFileSync(join(fx.root, 'disk0.img'), Buffer.alloc(1 << 20));
  writeFileSync(join(fx.root, 'disk1.img'), Buffer.alloc(1 << 20));
  xs = await XsClient.connect({ path: join(fx.root, 'run/xenstored/socket'), reconnect: false });
});

afterAll(async () => {
  await xs?.close();
  await fx?.dispose();
});

describe('the xl launcher', () => {
  // Both launchers: the Python client where Debian's python3 exists, the
  // Node one elsewhere; each must behave as the same xl.
  for (const python of [true, false]) {
    it(`relays output and exit codes (${python ? 'python3' : 'node'} launcher)`, async () => {
      const launcher = join(fx.work, `xl-${python ? 'py' : 'node'}`);
      writeFileSync(launcher, xlLauncher(simPaths(fx.root), process.execPath, fx.entry, python));
      chmodSync(launcher, 0o755);
      const list = await exec(launcher, ['list']);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toMatch(/^Name\s+ID\s+Mem VCPUs\tState\tTime\(s\)\nDomain-0\s+0 /);
      const missing = await exec(launcher, ['domid', 'no-such-vm']);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain("Can't get domid of domain name 'no-such-vm'");
    });
  }
});

describe('sim env', () => {
  it('exports PATH with the simulator xl first, XENSTORED_PATH and ZYNCLONE_ROOT', async () => {
    const r = await fx.sim('env');
    expect(r.stdout).toContain(`export PATH='${fx.root}/bin':"$PATH"`);
    expect(r.stdout).toContain(`export XENSTORED_PATH='${fx.root}/run/xenstored/socket'`);
    expect(r.stdout).toContain(`export ZYNCLONE_ROOT='${fx.root}'`);
  });
});

describe('xl create / list / pause / destroy', () => {
  it('creates a domain and lists it in xl format', async () => {
    const file = cfg(
      'web1',
      `memory = 64\nvcpus = 2\nvif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0', 'bridge=xenbr1' ]\ndisk = [ 'file:${fx.root}/disk0.img,xvda,w', 'format=raw,vdev=xvdb,access=r,target=${fx.root}/disk1.img' ]\n`,
    );
    const c = await fx.xl('create', file);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stderr).toBe(`Parsing config from ${file}\n`);
    const l = await fx.xl('list');
    const lines = l.stdout.split('\n');
    expect(lines[0]).toBe(
      'Name                                        ID   Mem VCPUs\tState\tTime(s)',
    );
    expect(lines[1]).toMatch(/^Domain-0 {33} {4}0 {2}1024 +\d+ {5}r----- +\d+\.\d$/);
    expect(lines[2]).toMatch(/^web1 {41}1 {4}64 {5}2 {5}-b---- +\d+\.\d$/);
    expect((await fx.xl('domid', 'web1')).stdout).toBe('1\n');
    expect((await fx.xl('domname', '1')).stdout).toBe('web1\n');
  });

  it('writes the libxl layout with guest-writable areas and connected backends', async () => {
    expect(await xs.read('/local/domain/1/name')).toBe('web1');
    const vm = await xs.read('/local/domain/1/vm');
    expect(await xs.read(`${vm}/name`)).toBe('web1');
    expect(await xs.getPerms('/local/domain/1')).toEqual([
      { domid: 0, access: 'none' },
      { domid: 1, access: 'read' },
    ]);
    for (const p of ['data', 'control/shutdown', 'drivers', 'feature', 'attr', 'error']) {
      expect(await xs.getPerms(`/local/domain/1/${p}`)).toEqual([{ domid: 1, access: 'none' }]);
    }
    const be = '/local/domain/0/backend/vif/1/0';
    expect(await xs.read(`${be}/mac`)).toBe('00:16:3e:00:00:01');
    expect(await xs.read(`${be}/bridge`)).toBe('xenbr0');
    expect(await xs.read(`${be}/frontend`)).toBe('/local/domain/1/device/vif/0');
    expect(await xs.read(`${be}/state`)).toBe('4');
    expect(await xs.getPerms(be)).toEqual([
      { domid: 0, access: 'none' },
      { domid: 1, access: 'read' },
    ]);
    expect(await xs.read('/local/domain/0/backend/qdisk/1/51712/state')).toBe('4');
    expect(await xs.read('/local/domain/0/backend/qdisk/1/51728/mode')).toBe('r');
    expect(existsSync(join(fx.root, 'run/xenstored/domains/dom1.sock'))).toBe(true);
  });

  it('prints network-list and block-list like xl', async () => {
    const n = await fx.xl('network-list', 'web1');
    expect(n.stdout.split('\n').slice(0, 3)).toEqual([
      'Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path                       ',
      '0   0  00:16:3e:00:00:01     0     4     19  1280/1281        /local/domain/0/backend/vif/1/0',
      expect.stringMatching(
        /^1 {3}0 {2}00:16:3e:[0-9a-f:]{8} {5}1 {5}4 {5}20 {2}1282\/1283 {8}\/local\/domain\/0\/backend\/vif\/1\/1$/,
      ),
    ]);
    const b = await fx.xl('block-list', 'web1');
    expect(b.stdout.split('\n').slice(0, 2)).toEqual([
      'Vdev  BE  handle state evt-ch ring-ref BE-path                       ',
      '51712 0   1      4     18     8        /local/domain/0/backend/qdisk/1/51712',
    ]);
  });

  it('prints xl list -l as libxl JSON', async () => {
    const r = await fx.xl('list', '-l', 'web1');
    const [dom] = JSON.parse(r.stdout) as Array<{
      domid: number;
      config: { c_info: object; b_info: object; nics: object[]; disks: object[] };
    }>;
    expect(dom!.domid).toBe(1);
    expect(dom!.config.c_info).toMatchObject({ type: 'pv', name: 'web1' });
    expect(dom!.config.b_info).toMatchObject({ max_vcpus: 2, target_memkb: 65536 });
    expect(dom!.config.nics[0]).toMatchObject({
      devid: 0,
      mac: '00:16:3e:00:00:01',
      bridge: 'xenbr0',
    });
    expect(dom!.config.disks[1]).toMatchObject({ vdev: 'xvdb', readwrite: 0 });
    expect(r.stdout).toContain('\n    {\n        "domid": 1,');
  });

  it('hot-plugs disks and vifs from xl spec arguments, refusing bad specs', async () => {
    const a = await fx.xl('block-attach', 'web1', `phy:${fx.root}/disk1.img,xvdc,r`);
    expect(a.code, a.stderr).toBe(0);
    expect(await xs.read('/local/domain/0/backend/vbd/1/51744/mode')).toBe('r');
    expect(await xs.read('/local/domain/0/backend/vbd/1/51744/state')).toBe('4');
    const bad = await fx.xl('block-attach', 'web1', `${fx.root}/disk1.img,raw,xvdd,rx`);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/unknown value for access: 'rx'/);
    expect((await fx.xl('block-detach', 'web1', '51744')).code).toBe(0);
    expect(await xs.tryRead('/local/domain/0/backend/vbd/1/51744/state')).toBeUndefined();
    const n = await fx.xl('network-attach', 'web1', 'mac=00:16:3E:0:0:7', 'bridge=xenbr2');
    expect(n.code, n.stderr).toBe(0);
    expect(await xs.read('/local/domain/0/backend/vif/1/2/mac')).toBe('00:16:3e:00:00:07');
    expect((await fx.xl('network-detach', 'web1', '00:16:3e:00:00:07')).code).toBe(0);
    const badVif = await fx.xl('network-attach', 'web1', 'type=tap');
    expect(badVif.code).toBe(1);
    expect(badVif.stderr).toMatch(/type must be 'vif' or 'ioemu'/);
  });

  it('pauses and unpauses', async () => {
    expect((await fx.xl('pause', 'web1')).code).toBe(0);
    expect((await fx.xl('list', 'web1')).stdout).toMatch(/--p---/);
    expect((await fx.xl('unpause', 'web1')).code).toBe(0);
    expect((await fx.xl('list', 'web1')).stdout).toMatch(/-b----/);
  });

  it('creates paused with -p; devices connect when it first runs', async () => {
    expect((await fx.xl('create', '-p', cfg('p1', "vif = [ 'bridge=xenbr0' ]\n"))).code).toBe(0);
    expect((await fx.xl('list', 'p1')).stdout).toMatch(/^p1 +2 .*--p---/m);
    expect(await xs.read('/local/domain/0/backend/vif/2/0/state')).toBe('1');
    await fx.xl('unpause', 'p1');
    expect(await xs.read('/local/domain/0/backend/vif/2/0/state')).toBe('4');
  });

  it('fails like xl on duplicate names, missing disks, bad configs and unknown domains', async () => {
    const dup = await fx.xl('create', cfg('web1', 'memory = 32\n'));
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/Domain with name "web1" already exists\./);
    const nodisk = await fx.xl(
      'create',
      cfg('nodisk', `disk = [ 'file:${fx.root}/nope.img,xvda,w' ]\n`),
    );
    expect(nodisk.code).toBe(1);
    expect(nodisk.stderr).toContain(
      `Disk vdev=xvda failed to stat: ${fx.root}/nope.img: No such file or directory`,
    );
    const bad = await fx.xl('create', cfg('bad', 'memory = [ 1\n'));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /^Parsing config from .*bad\.cfg\n.*bad\.cfg:2: config parsing error near `\[': syntax error\nFailed to parse config: Invalid argument\n$/,
    );
    const missing = await fx.xl('create', 'no-such.cfg');
    expect(missing.stderr).toBe(
      'Failed to read config file: no-such.cfg: No such file or directory\n',
    );
    const unknown = await fx.xl('destroy', 'ghost');
    expect([unknown.code, unknown.stderr]).toEqual([
      1,
      'ghost is an invalid domain identifier (rc=-6)\n',
    ]);
    const gone = await fx.xl('list', '99');
    expect([gone.code, gone.stderr]).toEqual([1, "Error: Domain '99' does not exist.\n"]);
    const d99 = await fx.xl('destroy', '99');
    expect(d99.code).toBe(1);
    expect(d99.stderr).toContain('destroy failed (rc=-21)');
    expect((await fx.xl('list')).stdout).not.toMatch(/nodisk|bad/);
  });

  it('destroys: XenStore nodes and the domain socket go, ids are not reused', async () => {
    expect((await fx.xl('destroy', 'p1')).code).toBe(0);
    expect(await xs.tryRead('/local/domain/2/name')).toBeUndefined();
    expect(await xs.tryRead('/local/domain/0/backend/vif/2/0/state')).toBeUndefined();
    expect(existsSync(join(fx.root, 'run/xenstored/domains/dom2.sock'))).toBe(false);
    await fx.xl('create', cfg('next', 'memory = 16\n'));
    expect(Number((await fx.xl('domid', 'next')).stdout)).toBeGreaterThan(2);
  });

  it('shuts down with -w and the guest goes away', async () => {
    const r = await fx.xl('shutdown', '-w', 'next');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^Shutting down domain \d+\n/);
    expect((await fx.xl('list')).stdout).not.toMatch(/^next /m);
  });
});

describe('injected faults (ZYNCLONE_SIM_XL_FAULT)', () => {
  const xlBin = () => join(fx.root, 'bin', 'xl');

  it('create-hang: the domain is made paused, xl never returns; killed, it leaves a half-made domain', async () => {
    const file = cfg('hung', `memory = 16\nvif = [ 'bridge=xenbr0' ]\n`);
    const child = spawn(xlBin(), ['create', file], {
      env: { ...process.env, ZYNCLONE_SIM_XL_FAULT: 'create-hang' },
      stdio: 'ignore',
    });
    const exited = new Promise((r) => child.once('exit', r));
    try {
      let line: string | undefined;
      for (let i = 0; i < 100 && line === undefined; i++) {
        await new Promise((r) => setTimeout(r, 50));
        line = (await fx.xl('list', '-v')).stdout.split('\n').find((l) => l.startsWith('hung '));
      }
      expect(line).toMatch(/^hung +\d+ +16 +1 +--p--- +[\d.]+ [0-9a-f-]{36} /);
      expect(child.exitCode).toBeNull();
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    expect((await fx.xl('list', 'hung')).stdout).toMatch(/\nhung +\d+ +16 +1 +--p---/);
    // libxl cannot retrieve a half-made domain's configuration: xl list -l leaves it out.
    const long = await fx.xl('list', '-l', 'hung');
    expect([long.code, JSON.parse(long.stdout)]).toEqual([0, []]);
    expect(
      JSON.parse((await fx.xl('list', '-l')).stdout).map((d: { domid: number }) => d.domid),
    ).not.toContain(Number((await fx.xl('domid', 'hung')).stdout));
    const refused = await exec(
      xlBin(),
      ['destroy', 'hung'],
      { ZYNCLONE_SIM_XL_FAULT: 'destroy-fail' },
      fx.root,
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('destroy failed (rc=-3)');
    expect((await fx.xl('list', 'hung')).code).toBe(0);
    expect((await fx.xl('destroy', 'hung')).code).toBe(0);
    expect((await fx.xl('list', 'hung')).code).toBe(1);
  });

  it('refuses an unknown fault, naming it', async () => {
    const r = await exec(
      xlBin(),
      ['list'],
      { ZYNCLONE_SIM_XL_FAULT: 'create-hang,bogus' },
      fx.root,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown simulator fault 'bogus'.*known: create-hang, destroy-fail/);
  });
});

describe('xl save / restore', () => {
  it('saves memory-sized images and restores under the saved or a new identity', async () => {
    await fx.xl(
      'create',
      cfg('db1', "memory = 8\nvif = [ 'mac=00:16:3e:00:00:09,bridge=xenbr0' ]\n"),
    );
    const uuid = await xs.read(
      `${await xs.read(`/local/domain/${(await fx.xl('domid', 'db1')).stdout.trim()}/vm`)}/uuid`,
    );
    const file = join(fx.root, 'db1.save');
    const s = await fx.xl('save', '-p', 'db1', file);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stderr).toMatch(/^Saving to .* new xl format/);
    expect(statSync(file).size).toBeGreaterThan(8 * 1024 * 1024);
    expect((await fx.xl('list', 'db1')).stdout).toMatch(/--p---/);
    const clone = cfg('db1-clone', "memory = 8\nvif = [ 'mac=00:16:3e:00:00:09,bridge=xenbr9' ]\n");
    const r = await fx.xl('restore', '-p', clone, file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`Parsing config from ${clone}`);
    const l = await fx.xl('list', '-v', 'db1-clone');
    expect(l.stdout).toMatch(/--p---/);
    expect(l.stdout).not.toContain(uuid);
    await fx.xl('destroy', 'db1');
    const back = await fx.xl('restore', file);
    expect(back.code, back.stderr).toBe(0);
    expect((await fx.xl('list', '-v', 'db1')).stdout).toContain(uuid);
  });
});
