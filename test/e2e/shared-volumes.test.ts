// Shared volumes in the simulator, as a user runs vmclone: one holder at a
// time, data written on one side read on the other, a guest that keeps the
// volume, a switch asked for from inside db01 (zynclone-guest through the
// real orchestrator, with an unmount hook), failures and SIGKILL at every
// step of a switch. After each, the single-writer invariant is checked from
// the simulator's own view (xl list -l of every domain), not from vmclone's.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SWITCH_STEPS } from '../../src/core/volumes/index.js';
import { bundleDaemon } from '../bundle.js';
import { CloneHost, run } from './clone-helpers.js';

const canRun = existsSync('/usr/bin/xenstore-read');
const VM = 'db01';
const CLONE = 'db01-clone';

describe.skipIf(!canRun)('shared volumes: one writer at a time', () => {
  let host: CloneHost;
  let volume: string;

  /** Domains that have the volume attached, by name, with writable or not: from xl list -l. */
  async function users(): Promise<{ domain: string; writable: boolean }[]> {
    const r = await host.xl('list', '-l');
    const doms = JSON.parse(r.stdout) as {
      config: {
        c_info: { name: string };
        disks?: { pdev_path: string; readwrite: number }[];
      };
    }[];
    return doms.flatMap((d) =>
      (d.config.disks ?? [])
        .filter((x) => x.pdev_path === volume)
        .map((x) => ({ domain: d.config.c_info.name, writable: x.readwrite === 1 })),
    );
  }

  /** The invariant: at most one domain has the volume, and it is writable there only if alone. */
  async function expectOneWriterAtMost(): Promise<string[]> {
    const u = await users();
    expect(u.length, JSON.stringify(u)).toBeLessThanOrEqual(1);
    return u.map((x) => x.domain);
  }

  async function holder(): Promise<string> {
    const st = JSON.parse((await host.vmclone(['status', VM, '--json'])).stdout) as {
      sharedVolumes: { vdev: string; holder: string }[];
      operation: unknown;
    };
    expect(st.operation).toBeNull();
    return st.sharedVolumes.find((v) => v.vdev === 'xvdb')!.holder;
  }

  function cloneConfigCarriesVolume(): boolean {
    const cfg = readFileSync(join(host.root, `var/lib/zynclone/clones/${CLONE}.cfg`), 'utf8');
    return cfg.includes(volume);
  }

  const guest = (...args: string[]) => host.sim('guest', ...args);
  const switchTo = (to: string, ...more: string[]) =>
    host.vmclone(['switch-volume', VM, 'xvdb', '--to', to, '-q', ...more]);

  beforeAll(async () => {
    // libxl gives a guest 10 s to let go; the simulator's daemon inherits this.
    process.env.ZYNCLONE_SIM_DETACH_TIMEOUT_MS = '400';
    host = await CloneHost.create({ plain: true });
    volume = join(host.root, 'var/lib/xen/images/shared-data.img');
    for (const [k, v] of [
      ['shared_volumes', 'xvdb'],
      ['storage_backend', 'copy'],
    ]) {
      expect((await host.vmclone(['config', VM, '--set', `${k}=${v}`])).code).toBe(0);
    }
    // An offline clone (the plain temp directory has no copy-on-write), then
    // the original runs again next to its running clone.
    expect((await host.xl('shutdown', '-w', VM)).code).toBe(0);
    const c = await host.vmclone(['create', VM, '--offline', '--no-start', '-q']);
    expect(c.code, c.stderr).toBe(0);
    expect((await host.xl('create', join(host.root, `etc/xen/${VM}.cfg`))).code).toBe(0);
    const s = await host.vmclone(['start', VM, '-q']);
    expect(s.code, s.stderr).toBe(0);
  }, 180_000);

  afterAll(async () => {
    await host?.dispose();
  }, 60_000);

  it('stays with the original when the clone is made: the clone runs without it', async () => {
    expect(await expectOneWriterAtMost()).toEqual([VM]);
    expect(cloneConfigCarriesVolume()).toBe(false);
    expect(await holder()).toBe('original');
    const list = await host.vmclone(['list']);
    expect(list.stdout).toMatch(/db01\s+db01-clone\s+running\s+offline\s+\d+\s+xvdb:original/);
    const status = await host.vmclone(['status', VM]);
    expect(status.stdout).toContain('xvdb: held by the original; attached to db01');
  });

  it('moves with its data: what one side wrote, the other reads', async () => {
    expect((await guest(VM, 'write', 'xvdb', 'written-by-db01')).code).toBe(0);
    const r = await switchTo('clone', '--json');
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as { changed: boolean; attached: boolean; detachMs: number };
    expect(res).toMatchObject({ changed: true, attached: true, from: 'original', to: 'clone' });
    expect(res.detachMs).toBeGreaterThan(0);
    expect(await expectOneWriterAtMost()).toEqual([CLONE]);
    expect(await holder()).toBe('clone');
    expect(cloneConfigCarriesVolume()).toBe(true);
    expect((await guest(CLONE, 'read', 'xvdb', '15')).stdout).toBe('written-by-db01');
    expect((await guest(VM, 'read', 'xvdb', '15')).stderr).toContain('No such device');

    expect((await guest(CLONE, 'write', 'xvdb', 'written-by-clone')).code).toBe(0);
    const back = await switchTo('original');
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toMatch(/xvdb of db01 is now held by the original \(attached now/);
    expect(await expectOneWriterAtMost()).toEqual([VM]);
    expect((await guest(VM, 'read', 'xvdb', '16')).stdout).toBe('written-by-clone');
    expect(cloneConfigCarriesVolume()).toBe(false);
    const again = await switchTo('original');
    expect(again.stdout).toContain('already held by the original');
  });

  it('is refused cleanly while the guest keeps it: the guest says why, nothing changes', async () => {
    expect((await guest(VM, 'mount', 'xvdb')).code).toBe(0);
    const r = await switchTo('clone');
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('its guest says "16 Device in use; refusing to close"');
    expect(r.stderr).toContain('unmount it inside db01');
    expect(r.stderr).toContain('[VOLUME_GUEST_REFUSED]');
    expect(await expectOneWriterAtMost()).toEqual([VM]);
    expect(await holder()).toBe('original');
    expect(cloneConfigCarriesVolume()).toBe(false);

    // --force needs a confirmation; without a terminal, --yes.
    const unconfirmed = await switchTo('clone', '--force');
    expect(unconfirmed.code).toBe(5);
    expect(unconfirmed.stderr).toContain('--force not confirmed');
    expect(await expectOneWriterAtMost()).toEqual([VM]);

    expect((await guest(VM, 'umount', 'xvdb')).code).toBe(0);
    expect((await switchTo('clone')).code).toBe(0);
    expect(await expectOneWriterAtMost()).toEqual([CLONE]);
    expect((await guest(CLONE, 'mount', 'xvdb')).code).toBe(0);
    const forced = await switchTo('original', '--force', '--yes');
    expect(forced.code, forced.stderr).toBe(0);
    expect(await expectOneWriterAtMost()).toEqual([VM]);
  });

  it('a paused holder cannot let go: refused, the volume stays', async () => {
    expect((await host.xl('pause', VM)).code).toBe(0);
    const r = await switchTo('clone');
    expect((await host.xl('unpause', VM)).code).toBe(0);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/db01 \(domid \d+\) did not let go of xvdb/);
    expect(await expectOneWriterAtMost()).toEqual([VM]);
    expect(await holder()).toBe('original');
  });

  it('an attach that fails is rolled back: the volume returns to its holder', async () => {
    // The clone already has another disk at xvdb, so xl block-attach fails there.
    const other = join(host.root, 'other.img');
    writeFileSync(other, Buffer.alloc(1 << 20));
    expect((await host.xl('block-attach', CLONE, `${other},raw,xvdb,w`)).code).toBe(0);
    const r = await switchTo('clone');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/block-attach/);
    expect(await expectOneWriterAtMost()).toEqual([VM]);
    expect(await holder()).toBe('original');
    expect(cloneConfigCarriesVolume()).toBe(false);
    expect((await host.xl('block-detach', CLONE, 'xvdb')).code).toBe(0);
  });

  it('vmclone refuses a second writer before Xen would', async () => {
    // The clone holds it but is stopped; someone attaches it to the original by hand.
    expect((await switchTo('clone')).code).toBe(0);
    expect((await host.vmclone(['stop', VM, '-q'])).code).toBe(0);
    expect(await expectOneWriterAtMost()).toEqual([]);
    expect((await host.xl('block-attach', VM, `${volume},raw,xvdb,w`)).code).toBe(0);
    const start = await host.vmclone(['start', VM, '-q']);
    expect(start.code).toBe(5);
    expect(start.stderr).toMatch(/its disk xvdb .* is attached to domain \d+ writable/);
    expect(start.stderr).toContain('[VOLUME_TWO_WRITERS]');
    expect(await expectOneWriterAtMost()).toEqual([VM]);
    expect((await host.domains()).has(CLONE)).toBe(false);
    // A switch refuses too: the original has it without holding it.
    const sw = await switchTo('original');
    expect(sw.code).toBe(5);
    expect(sw.stderr).toContain('which does not hold it (the clone does)');
    // Put it right: detach by hand, start the clone (its config carries the volume).
    expect((await host.xl('block-detach', VM, 'xvdb')).code).toBe(0);
    const ok = await host.vmclone(['start', VM, '-q']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await expectOneWriterAtMost()).toEqual([CLONE]);
    expect((await switchTo('original')).code).toBe(0);
    expect(await expectOneWriterAtMost()).toEqual([VM]);
  });

  it('db01 moves it from inside (zynclone-guest through the orchestrator): refused while mounted, then with an unmount hook', async () => {
    for (const set of [
      'guest_orchestration=true',
      'guest_allowed_operations=status,switch-volume',
    ]) {
      expect((await host.vmclone(['config', VM, '--set', set])).code).toBe(0);
    }
    const repo = resolve(__dirname, '../..');
    const entry = join(host.fs.dir, 'orchestrator.mjs');
    await bundleDaemon('runOrchestrator', 'orchestrator', entry);
    const logFile = join(host.fs.dir, 'orchestrator.log');
    const out = openSync(logFile, 'a');
    const orchestrator = spawn(process.execPath, [entry, '--root', host.root, '--scan-ms', '300'], {
      env: host.env,
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    try {
      const deadline = Date.now() + 15_000;
      while (!/"msg":"serving domain".*"vm":"db01"/.test(readFileSync(logFile, 'utf8'))) {
        if (Date.now() > deadline || orchestrator.exitCode !== null) {
          throw new Error(`the orchestrator did not serve db01:\n${readFileSync(logFile, 'utf8')}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      /** zynclone-guest switch-volume xvdb ... inside domain `name`, on its own XenStore socket. */
      const inGuest = async (name: string, ...args: string[]) => {
        const domid = (await host.domains()).get(name)!.domid;
        return run(
          'bash',
          [join(repo, 'guest/linux/zynclone-guest'), 'switch-volume', 'xvdb', ...args],
          {
            ...host.env,
            XENSTORED_PATH: join(host.root, `run/xenstored/domains/dom${domid}.sock`),
          },
          120_000,
        );
      };
      const inDb01 = (...args: string[]) => inGuest(VM, ...args);
      // The simulator's stand-in for umount inside the guest, as a hook.
      const umount = [
        process.execPath,
        host.simEntry,
        'sim',
        'guest',
        VM,
        'umount',
        'xvdb',
        '--root',
        host.root,
      ].join(' ');

      expect((await guest(VM, 'write', 'xvdb', 'db01-from-inside')).code).toBe(0);
      expect((await guest(VM, 'mount', 'xvdb')).code).toBe(0);
      const busy = await inDb01('--to', 'clone', '--wait', '--timeout', '60');
      expect(busy.code, busy.stderr).toBe(5);
      expect(busy.stderr).toMatch(/unmount it inside db01.*\[VOLUME_GUEST_REFUSED\]/);
      expect(await expectOneWriterAtMost()).toEqual([VM]);
      expect(await holder()).toBe('original');

      const moved = await inDb01(
        '--to',
        'clone',
        '--wait',
        '--json',
        '--timeout',
        '60',
        '--before',
        umount,
      );
      expect(moved.code, moved.stderr).toBe(0);
      expect(JSON.parse(moved.stdout)).toMatchObject({
        op: 'switch-volume',
        state: 'ok',
        message: 'xvdb is now held by the clone (attached now)',
        cloneName: CLONE,
      });
      expect(await expectOneWriterAtMost()).toEqual([CLONE]);
      expect((await guest(CLONE, 'read', 'xvdb', '16')).stdout).toBe('db01-from-inside');

      expect((await guest(CLONE, 'write', 'xvdb', 'clone-wrote-back')).code).toBe(0);
      const back = await inDb01('--to', 'original', '--wait', '--timeout', '60');
      expect(back.code, back.stderr).toBe(0);
      expect(await expectOneWriterAtMost()).toEqual([VM]);
      expect((await guest(VM, 'read', 'xvdb', '16')).stdout).toBe('clone-wrote-back');
      expect(await holder()).toBe('original');

      // The clone, even when its requests are served, cannot take the volume away from db01.
      expect((await host.vmclone(['config', VM, '--set', 'guest_clone_requests=true'])).code).toBe(
        0,
      );
      const cloneDomid = (await host.domains()).get(CLONE)!.domid;
      const cloneDeadline = Date.now() + 15_000;
      while ((await host.xsRead(`/local/domain/${cloneDomid}/zynclone/protocol`)) !== '1') {
        if (Date.now() > cloneDeadline) throw new Error('the orchestrator did not serve the clone');
        await new Promise((r) => setTimeout(r, 100));
      }
      const fromClone = await inGuest(CLONE, '--to', 'clone', '--wait', '--timeout', '60');
      expect(fromClone.code, fromClone.stderr).toBe(5);
      expect(fromClone.stderr).toMatch(/this domain is a clone of db01.*\[VOLUME_REFUSED\]/);
      expect(await expectOneWriterAtMost()).toEqual([VM]);
      expect(await holder()).toBe('original');
      const log = readFileSync(logFile, 'utf8');
      expect(log).toMatch(/"msg":"request done".*"op":"switch-volume"/);
    } finally {
      if (orchestrator.exitCode === null) {
        const exited = new Promise((r) => orchestrator.once('exit', r));
        orchestrator.kill('SIGTERM');
        await exited;
      }
      rmSync(entry, { force: true });
    }
  }, 180_000);

  describe('a switch killed at any step is rolled back by the next vmclone command', () => {
    const cases = SWITCH_STEPS.flatMap((step) => [
      ['ZYNCLONE_CRASH_AT', step],
      ['ZYNCLONE_CRASH_AFTER', step],
    ]);
    it.each(cases)(
      '%s=%s',
      async (point, step) => {
        expect(await holder()).toBe('original');
        const r = await host.vmclone(['switch-volume', VM, 'xvdb', '--to', 'clone', '-q'], {
          [point]: step,
        });
        expect(r.signal, r.stderr).toBe('SIGKILL');
        // Even between two steps, never two writers.
        expect((await expectOneWriterAtMost()).length).toBeLessThanOrEqual(1);
        const next = await host.vmclone(['list']);
        expect(next.stderr).toMatch(/switch-volume of db01\): rolled-back/);
        expect(await expectOneWriterAtMost()).toEqual([VM]);
        expect(await holder()).toBe('original');
        expect(cloneConfigCarriesVolume()).toBe(false);
      },
      60_000,
    );
  });

  it('goes back to the original when the clone is removed', async () => {
    expect((await switchTo('clone')).code).toBe(0);
    expect(await expectOneWriterAtMost()).toEqual([CLONE]);
    const r = await host.vmclone(['remove', VM, '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(await expectOneWriterAtMost()).toEqual([VM]);
    expect(await host.leftovers(VM)).toEqual([]);
  });
});
