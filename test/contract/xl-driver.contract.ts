// The xl driver contract: the same cases run against the simulator (vitest wrapper
// xl-driver.sim.test.ts) and inside a real Xen dom0 (bundled by the xen lane), so
// this file uses node:assert only and no test framework.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { XenError } from '../../src/xen/errors.js';
import { type DomId, xsPaths } from '../../src/xen/paths.js';
import { parseDisk, printDisk } from '../../src/xen/xl-config/disk.js';
import { XlConfig } from '../../src/xen/xl-config/document.js';
import type { XlDriver } from '../../src/xen/xl-driver.js';
import { type XsWaitClient, waitForDomainGone, waitForValue } from '../../src/xen/xs-wait.js';

export interface XlDriverContractEnv {
  xl: XlDriver;
  /**
   * Writes a bootable guest config named `name` and returns its path. The guest
   * should have at least one vif and one disk; its name is the only thing the
   * cases rely on being set from the argument.
   */
  makeGuestConfig(name: string): Promise<string>;
  /** A writable directory for save images and edited configs. */
  workDir: string;
  /** When given, destroy is also checked through XenStore. */
  xs?: XsWaitClient;
  /** Prefix of every domain name the cases create (default `zc-ct`). */
  namePrefix?: string;
}

export interface ContractCase {
  name: string;
  run(): Promise<void>;
}

async function expectXlCode(p: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof XenError, `${what}: expected a XenError, got ${String(e)}`);
    assert.equal(e.code, code, `${what}: expected ${code}, got ${e.code}: ${e.message}`);
    return true;
  });
}

export function xlDriverContract(env: XlDriverContractEnv): ContractCase[] {
  // env is read lazily: a test runner may fill it in after listing the cases.
  const prefix = env.namePrefix ?? 'zc-ct';
  let seq = 0;
  const uniqueName = (what: string) => `${prefix}-${process.pid}-${++seq}-${what}`;

  /** Creates a paused guest, runs `body`, and destroys whatever it created. */
  async function withGuest(
    what: string,
    body: (g: { name: string; domid: DomId; cfgPath: string }) => Promise<void>,
  ): Promise<void> {
    const name = uniqueName(what);
    const cfgPath = await env.makeGuestConfig(name);
    const domid = await env.xl.create(cfgPath, { paused: true });
    try {
      await body({ name, domid, cfgPath });
    } finally {
      await destroyQuietly(name);
    }
  }

  async function destroyQuietly(name: string): Promise<void> {
    try {
      await env.xl.destroy(name);
    } catch (e) {
      if (!(e instanceof XenError && e.code === 'XL_NO_SUCH_DOMAIN')) throw e;
    }
  }

  async function listed(name: string) {
    return (await env.xl.list()).find((d) => d.name === name);
  }

  return [
    {
      name: 'create -p: xl list shows the domain paused',
      run: () =>
        withGuest('paused', async ({ name, domid }) => {
          const d = await listed(name);
          assert.ok(d, `${name} is not in xl list`);
          assert.equal(d.domid, domid);
          assert.equal(d.flags.paused, true, `state is ${d.state}, expected paused`);
          assert.equal(d.state[2], 'p');
          const [one] = await env.xl.list(name);
          assert.equal(one?.domid, domid, 'xl list <name> shows the same domain');
        }),
    },
    {
      name: 'unpause: the domain is no longer paused',
      run: () =>
        withGuest('unpause', async ({ name }) => {
          await env.xl.unpause(name);
          const d = await listed(name);
          assert.ok(d, `${name} is not in xl list`);
          assert.equal(d.flags.paused, false, `state is ${d.state}`);
          await env.xl.pause(name);
          assert.equal((await listed(name))?.flags.paused, true, 'pause pauses it again');
        }),
    },
    {
      name: 'domid and domname round-trip',
      run: () =>
        withGuest('ids', async ({ name, domid }) => {
          assert.equal(await env.xl.domid(name), domid);
          assert.equal(await env.xl.domname(domid), name);
        }),
    },
    {
      name: 'a second domain with the same name is refused (XL_DUPLICATE_NAME)',
      run: () =>
        withGuest('dup', async ({ name, cfgPath, domid }) => {
          await expectXlCode(
            env.xl.create(cfgPath, { paused: true }),
            'XL_DUPLICATE_NAME',
            'xl create',
          );
          const same = (await env.xl.list()).filter((d) => d.name === name);
          assert.deepEqual(
            same.map((d) => d.domid),
            [domid],
            'exactly the first domain exists',
          );
        }),
    },
    {
      name: 'destroy: the domain is gone',
      run: async () => {
        const name = uniqueName('destroy');
        const domid = await env.xl.create(await env.makeGuestConfig(name), { paused: true });
        try {
          const gone = env.xs
            ? waitForDomainGone(env.xs, domid, { timeoutMs: 30_000 })
            : Promise.resolve();
          await env.xl.destroy(name);
          await gone;
          assert.equal(await listed(name), undefined, `${name} still in xl list`);
          if (env.xs) {
            assert.equal(await env.xs.tryRead(xsPaths.domain(domid)), undefined);
          }
        } finally {
          await destroyQuietly(name);
        }
      },
    },
    {
      name: 'an unknown domain gives XL_NO_SUCH_DOMAIN',
      run: async () => {
        const ghost = uniqueName('ghost');
        await expectXlCode(env.xl.destroy(ghost), 'XL_NO_SUCH_DOMAIN', 'destroy <name>');
        await expectXlCode(env.xl.list(ghost), 'XL_NO_SUCH_DOMAIN', 'list <name>');
        await expectXlCode(env.xl.domid(ghost), 'XL_NO_SUCH_DOMAIN', 'domid <name>');
        await expectXlCode(env.xl.pause(ghost), 'XL_NO_SUCH_DOMAIN', 'pause <name>');
        await expectXlCode(env.xl.networkList(ghost), 'XL_NO_SUCH_DOMAIN', 'network-list <name>');
        await expectXlCode(env.xl.blockList(ghost), 'XL_NO_SUCH_DOMAIN', 'block-list <name>');
        // A free numeric domid passes xl's name lookup and fails later, per command.
        const used = new Set((await env.xl.list()).map((d) => Number(d.domid)));
        let free = 32000;
        while (used.has(free)) free--;
        const id = free as DomId;
        await expectXlCode(env.xl.list(id), 'XL_NO_SUCH_DOMAIN', 'list <domid>');
        await expectXlCode(env.xl.destroy(id), 'XL_NO_SUCH_DOMAIN', 'destroy <domid>');
        await expectXlCode(env.xl.domname(id), 'XL_NO_SUCH_DOMAIN', 'domname <domid>');
        await expectXlCode(env.xl.pause(id), 'XL_NO_SUCH_DOMAIN', 'pause <domid>');
      },
    },
    {
      name: 'list -l: libxl JSON with name and uuid',
      run: () =>
        withGuest('long', async ({ name, domid, cfgPath }) => {
          const all = await env.xl.listLong();
          const mine = all.find((d) => d.domid === domid);
          assert.ok(mine, `domid ${domid} missing from xl list -l`);
          assert.equal(mine.name, name);
          assert.match(mine.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
          const cfg = XlConfig.parse(await readFile(cfgPath, 'utf8'), cfgPath);
          const wantUuid = cfg.getString('uuid');
          if (wantUuid !== undefined) assert.equal(mine.uuid, wantUuid.toLowerCase());
          assert.equal(mine.nics.length, cfg.getStrings('vif')?.length ?? 0, 'one nic per vif');
          assert.equal(mine.disks.length, cfg.getStrings('disk')?.length ?? 0, 'one disk per disk');
          const [one] = await env.xl.listLong(name);
          assert.equal(one?.uuid, mine.uuid, 'xl list -l <name> shows the same domain');
        }),
    },
    {
      name: 'list -v: every domain with the UUID xl list -l shows',
      run: () =>
        withGuest('verbose', async ({ name, domid }) => {
          const all = await env.xl.listVerbose();
          const mine = all.find((d) => d.domid === domid);
          assert.ok(mine, `domid ${domid} missing from xl list -v`);
          assert.equal(mine.name, name);
          assert.equal(mine.flags.paused, true, `state is ${mine.state}`);
          const [long] = await env.xl.listLong(name);
          assert.equal(mine.uuid, long?.uuid, 'the same UUID as xl list -l');
          const dom0 = all.find((d) => d.domid === 0);
          assert.equal(dom0?.uuid, '00000000-0000-0000-0000-000000000000');
        }),
    },
    {
      name: 'save -p then restore -p under a new name and uuid: both domains exist',
      run: () =>
        withGuest('orig', async ({ name, domid, cfgPath }) => {
          const image = join(env.workDir, `${name}.save`);
          const cloneName = `${name}-clone`;
          const cloneUuid = randomUUID();
          const cloneCfg = join(env.workDir, `${cloneName}.cfg`);
          const cloneDisks: string[] = [];
          try {
            // A guest that never ran cannot answer the suspend request xl save
            // makes: let it boot until its kernel says it can suspend.
            await env.xl.unpause(name);
            if (env.xs) {
              await waitForValue(
                env.xs,
                `${xsPaths.domain(domid)}/control/feature-suspend`,
                (v) => v === '1',
                {
                  timeoutMs: 180_000,
                },
              );
            }
            await env.xl.save(name, image, { paused: true });
            const orig = await listed(name);
            assert.ok(orig, 'the original survives xl save -p');
            assert.equal(orig.domid, domid);
            assert.equal(orig.flags.paused, true, `original state ${orig.state}, expected paused`);

            const cfg = XlConfig.parse(await readFile(cfgPath, 'utf8'), cfgPath);
            cfg.set('name', cloneName).set('uuid', cloneUuid);
            // Xen's block hotplug script refuses a file already attached
            // writable to another domain: the copy gets copies of the disks.
            const disks = (cfg.getStrings('disk') ?? []).map(parseDisk);
            for (const d of disks) {
              if (!d.target) continue;
              const copy = join(env.workDir, `${cloneName}-${d.vdev ?? 'disk'}.img`);
              await copyFile(d.target, copy);
              cloneDisks.push(copy);
              d.target = copy;
            }
            if (disks.length > 0) cfg.set('disk', disks.map(printDisk));
            await writeFile(cloneCfg, cfg.print());
            const cloneId = await env.xl.restore(image, { paused: true, cfgPath: cloneCfg });
            try {
              assert.notEqual(cloneId, domid);
              const long = await env.xl.listLong();
              const o = long.find((d) => d.domid === domid);
              const c = long.find((d) => d.domid === cloneId);
              assert.equal(o?.name, name);
              assert.equal(c?.name, cloneName);
              assert.equal(c?.uuid, cloneUuid);
              assert.notEqual(o?.uuid, c?.uuid);
              assert.equal((await listed(cloneName))?.flags.paused, true, 'clone restored paused');
            } finally {
              await destroyQuietly(cloneName);
            }
          } finally {
            await rm(image, { force: true });
            await rm(cloneCfg, { force: true });
            for (const d of cloneDisks) await rm(d, { force: true });
          }
        }),
    },
    {
      name: 'network-list and block-list: one row per vif and disk',
      run: () =>
        withGuest('devs', async ({ domid, cfgPath, name }) => {
          const cfg = XlConfig.parse(await readFile(cfgPath, 'utf8'), cfgPath);
          const nets = await env.xl.networkList(name);
          assert.equal(nets.length, cfg.getStrings('vif')?.length ?? 0);
          nets.forEach((n, i) => {
            assert.equal(n.idx, i);
            assert.match(n.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
            assert.equal(n.backendPath, xsPaths.vifBackend(n.backendId as DomId, domid, n.idx));
          });
          const blocks = await env.xl.blockList(domid);
          assert.equal(blocks.length, cfg.getStrings('disk')?.length ?? 0);
          for (const b of blocks) {
            assert.equal(b.handle, domid);
            assert.match(
              b.backendPath,
              new RegExp(`^/local/domain/${b.backendId}/backend/(vbd|qdisk)/${domid}/${b.vdev}$`),
            );
          }
        }),
    },
    {
      name: 'info: has xen_version',
      run: async () => {
        const info = await env.xl.info();
        assert.match(info.xen_version ?? '', /^\d+\.\d+/);
        assert.ok(info.xen_major && info.xen_minor, 'xen_major and xen_minor present');
      },
    },
  ];
}
