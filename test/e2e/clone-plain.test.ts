// vmclone in the simulator without root: a plain temp directory (no reflink),
// no network namespaces. Full copies for offline clones, the refusal of an
// online clone that would need a long pause, and crash recovery of a copy.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skipWithout } from '../prerequisites.js';
import { CloneHost } from './clone-helpers.js';

const canRun = existsSync('/usr/bin/xenstore-read');

describe.skipIf(skipWithout(canRun, 'xenstore-utils (/usr/bin/xenstore-read)'))(
  'vmclone without copy-on-write storage',
  () => {
    let host: CloneHost;

    beforeAll(async () => {
      host = await CloneHost.create({ plain: true });
      expect((await host.xl('shutdown', '-w', 'db01')).code).toBe(0);
      // Full copies whatever the temp filesystem can do.
      for (const vm of ['web01', 'db01']) {
        expect((await host.vmclone(['config', vm, '--set', 'storage_backend=copy'])).code).toBe(0);
      }
    }, 120_000);

    afterAll(async () => {
      await host?.dispose();
    }, 60_000);

    it('refuses an online clone when only a full copy is possible, leaving nothing', async () => {
      const r = await host.vmclone(['create', 'web01', '--online']);
      expect(r.code).toBe(5);
      expect(r.stderr).toMatch(
        /no full copy.*online disk-only clone pauses the original only for milliseconds/,
      );
      expect(await host.leftovers('web01')).toEqual([]);
    });

    it('makes an offline clone by full copy and removes it', async () => {
      const r = await host.vmclone(['create', 'db01', '--offline', '--json']);
      expect(r.code).toBe(0);
      const snaps = JSON.parse(r.stdout).clone.snapshots as {
        backend: string;
        dest: string;
        source: string;
      }[];
      expect(snaps.map((s) => s.backend)).toEqual(['copy', 'copy']);
      for (const s of snaps) {
        expect(statSync(s.dest).ino).not.toBe(statSync(s.source).ino);
        expect(statSync(s.dest).size).toBe(statSync(s.source).size);
      }
      expect((await host.domains()).has('db01-clone')).toBe(true);
      expect((await host.vmclone(['remove', 'db01'])).code).toBe(0);
      expect(await host.leftovers('db01')).toEqual([]);
    });

    it('rolls back an offline create killed after its copies were made', async () => {
      const crashed = await host.vmclone(['create', 'db01', '--offline', '-q'], {
        ZYNCLONE_CRASH_AFTER: 'snapshot',
      });
      expect(crashed.signal).toBe('SIGKILL');
      expect(existsSync(join(host.root, 'var/lib/zynclone/volumes/db01-clone.xvda.img'))).toBe(
        true,
      );
      const next = await host.vmclone(['list']);
      expect(next.stderr).toMatch(/create of db01\): rolled-back/);
      expect(await host.leftovers('db01')).toEqual([]);
    });
  },
);
