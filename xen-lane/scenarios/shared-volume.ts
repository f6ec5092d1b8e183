/**
 * An LVM-backed shared volume moved between a running original and its
 * running clone with `vmclone switch-volume`, on real Xen (blkback, the
 * block script's check_sharing on a phy device). Each guest's /init prints what it reads
 * from xvdb when it appears and writes a line naming its boot: the clone must
 * read the original's line, the original the clone's. The original keeps the
 * volume open the second time it gets it (a busy guest): the next switch is
 * either refused cleanly (the guest says so; the volume stays) or, with a
 * guest kernel that no longer refuses, goes through; the note `busy_guest`
 * says which. After every step at most one domain has the volume.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.js';
import { ensureIsolationBridge } from '../../src/core/clones/bridge.js';
import {
  assertTrue,
  destroyQuietly,
  ensureBridge,
  guestConfig,
  readConsole,
  run,
  waitConsole,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario } from '../runner/types.js';
import { makeRoot, makeThinPool, startNetMonitor, vmclone } from '../runner/zynclone-tools.js';

const VM = 'zc-vol';

const HOTPLUG = `#!/bin/sh
[ "$1" = add ] || exit 0
dev=$(xenstore-read "$XENBUS_PATH/params") || exit 1
xenstore-write "$XENBUS_PATH/physical-device" "$(stat -L -c %t:%T "$dev")" \\
  "$XENBUS_PATH/physical-device-path" "$dev" "$XENBUS_PATH/hotplug-status" connected
`;
const CLONE = `${VM}-clone`;

/** Domains that have `file` attached, from xl list -l. */
async function holdersOf(file: string): Promise<string[]> {
  const { stdout } = await run('xl', ['list', '-l'], { timeoutMs: 60_000 });
  const doms = JSON.parse(stdout) as {
    config?: { c_info?: { name?: string }; disks?: { pdev_path?: string }[] };
  }[];
  return doms
    .filter((d) => (d.config?.disks ?? []).some((x) => x.pdev_path === file))
    .map((d) => d.config?.c_info?.name ?? '?');
}

const scenario: Scenario = {
  name: 'shared-volume',
  title: 'vmclone switch-volume of an LVM-backed volume between two running guests',
  // Two disks through hotplug scripts under TCG: xl create alone took over 90 s on a loaded host.
  timeoutMs: 900_000,
  async run(ctx) {
    const log = ctx.log;
    await ensureBridge(log);
    await ensureIsolationBridge('zc-isolated', 'zcv');
    const pool = await makeThinPool(ctx.workDir, 'zcvol', log);
    const netmon = await startNetMonitor({ log, signal: ctx.signal });
    let volume = '';
    const oneHolder = async (want: string[]) => {
      const h = await holdersOf(volume);
      log(`volume attached to: ${h.join(' ') || 'none'}`);
      assertTrue(h.length <= 1, 'LANE_TWO_WRITERS', `the volume is attached to ${h.join(', ')}`);
      assertTrue(
        h.join() === want.join(),
        'LANE_HOLDER',
        `attached to [${h.join(', ')}], wanted [${want.join(', ')}]`,
      );
    };
    try {
      // An LV (blkback, no loop device).
      volume = await pool.thinLv('shared', '8M');
      const disk = await pool.thinLv('disk', '32M');
      const root = await makeRoot(ctx.workDir, {
        storage_backend: 'auto',
        shared_volumes: ['xvdb'],
      });
      const spec = {
        name: VM,
        ip: '10.0.0.31/24',
        disks: [`format=raw, vdev=xvda, access=rw, target=${disk}`],
      };
      // Its hotplug script does what the block script does for a phy device
      // (physical-device, hotplug-status) without the lock and the scan of
      // every backend, which under TCG on a loaded host outran libxl's 40 s
      // hotplug timeout. Sharing is vmclone's check here.
      const hotplug = join(ctx.workDir, 'block-lv');
      await writeFile(hotplug, HOTPLUG, { mode: 0o755 });
      const volumeSpec = `format=raw, vdev=xvdb, access=rw, script=${hotplug}, target=${volume}`;
      // vmclone reads the VM's config with both disks; the guest boots with
      // its root disk and gets the volume hot-plugged, one hotplug script at a time.
      await writeFile(
        join(root, 'etc/xen', `${VM}.cfg`),
        guestConfig({ ...spec, disks: [...spec.disks, volumeSpec] }),
      );
      const boot = join(ctx.workDir, `${VM}-boot.cfg`);
      await writeFile(boot, guestConfig(spec));
      await xl(['create', boot], { timeoutMs: 240_000, log });
      await xl(['block-attach', VM, volumeSpec], { timeoutMs: 120_000, log });
      const up = await waitConsole(VM, /ZC-GUEST-UP name=\S+ token=(\S+)/, {
        timeoutMs: 120_000,
        signal: ctx.signal,
      });
      const origToken = up[1]!;
      await waitConsole(VM, /ZC-GUEST-XVDB wrote=/, { timeoutMs: 60_000, signal: ctx.signal });

      await vmclone(root, ['create', VM, '--online', '-q'], { log });
      const cup = await waitConsole(CLONE, /ZC-GUEST-UP name=\S+ token=(\S+)/, {
        timeoutMs: 120_000,
        signal: ctx.signal,
      });
      const cloneToken = cup[1]!;
      await oneHolder([VM]);

      // To the clone: it reads what the original wrote.
      const toClone = await vmclone(
        root,
        ['switch-volume', VM, 'xvdb', '--to', 'clone', '--json'],
        {
          log,
        },
      );
      const r1 = JSON.parse(toClone.stdout) as {
        detachMs: number;
        attachMs: number;
        totalMs: number;
      };
      ctx.note('switch_ms', Math.round(r1.totalMs));
      ctx.note('detach_ms', Math.round(r1.detachMs));
      ctx.note('attach_ms', Math.round(r1.attachMs));
      await oneHolder([CLONE]);
      const read1 = await waitConsole(CLONE, /ZC-GUEST-XVDB read=(\S*)/, {
        timeoutMs: 60_000,
        signal: ctx.signal,
      });
      assertTrue(
        read1[1] === `ZCVOL:${origToken}`,
        'LANE_DATA_TO_CLONE',
        `the clone read '${read1[1]}', wanted ZCVOL:${origToken}`,
      );
      await waitConsole(CLONE, /ZC-GUEST-XVDB wrote=/, { timeoutMs: 60_000, signal: ctx.signal });

      // Back: the original reads the clone's line, and keeps the volume open.
      const before = (await readConsole(VM)).length;
      await vmclone(root, ['switch-volume', VM, 'xvdb', '--to', 'original'], { log });
      await oneHolder([VM]);
      const read2 = await waitConsole(VM, /ZC-GUEST-XVDB read=(\S*)/, {
        timeoutMs: 60_000,
        signal: ctx.signal,
        after: before,
      });
      assertTrue(
        read2[1] === `ZCVOL:${cloneToken}`,
        'LANE_DATA_TO_ORIGINAL',
        `the original read '${read2[1]}', wanted ZCVOL:${cloneToken}`,
      );
      await waitConsole(VM, /ZC-GUEST-XVDB holding/, {
        timeoutMs: 60_000,
        signal: ctx.signal,
        after: before,
      });

      // A busy guest: refused cleanly (volume stays), or the kernel lets go.
      const busy = await vmclone(root, ['switch-volume', VM, 'xvdb', '--to', 'clone'], {
        log,
        expect: EXIT.REFUSED,
      }).catch((err: Error) => {
        if (!/exited with 0 /.test(err.message)) throw err;
        return undefined;
      });
      if (busy !== undefined) {
        ctx.note('busy_guest', 'refused');
        assertTrue(
          /VOLUME_GUEST_REFUSED/.test(busy.stderr),
          'LANE_BUSY_CODE',
          `refused without VOLUME_GUEST_REFUSED: ${busy.stderr}`,
        );
        await oneHolder([VM]);
      } else {
        ctx.note('busy_guest', 'released');
        await oneHolder([CLONE]);
      }

      await vmclone(root, ['remove', VM, '-q'], { log });
      await oneHolder([VM]);
    } finally {
      await destroyQuietly(CLONE, log);
      await destroyQuietly(VM, log);
      await netmon.stop();
      await pool.cleanup();
    }
  },
};

export default scenario;
