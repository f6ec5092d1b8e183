/**
 * `vmclone create --online` of a running guest whose disk is a thin LV: the
 * original is paused only while its disk is snapshotted, the clone cold-boots
 * from the snapshot under its own name, with its vif on the isolation bridge
 * and the net monitor's ack. Then stop, start and remove through vmclone:
 * afterwards only the original runs and no clone LV is left.
 */
import { randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureIsolationBridge } from '../../src/core/clones/bridge.js';
import {
  assertTrue,
  destroyQuietly,
  domainByName,
  ensureBridge,
  guestConfig,
  lastHeartbeat,
  readConsole,
  waitConsole,
  waitFor,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario } from '../runner/types.js';
import {
  assertBothRun,
  bridgePorts,
  makeRoot,
  makeThinPool,
  startNetMonitor,
  vmclone,
  writeFirstLine,
  xlUuid,
} from '../runner/zynclone-tools.js';

const VM = 'zc-on';
const CLONE = `${VM}-clone`;
const ISOLATION = 'zc-isolated';

const scenario: Scenario = {
  name: 'clone-online',
  title: 'vmclone create --online (thin LV disk), stop, start, remove',
  timeoutMs: 360_000,
  async run(ctx) {
    const log = ctx.log;
    await ensureBridge(log);
    // Under a root other than / the lifecycle leaves bridges to the network
    // domain; here dom0 is that domain, so the scenario plays its part.
    await ensureIsolationBridge(ISOLATION, 'zcv');
    const pool = await makeThinPool(ctx.workDir, 'zconline', log);
    const netmon = await startNetMonitor({ log, signal: ctx.signal });
    try {
      const disk = await pool.thinLv('disk', '32M');
      const marker = `ZCDISK:online-${randomBytes(4).toString('hex')}`;
      await writeFirstLine(disk, marker);
      const root = await makeRoot(ctx.workDir, { storage_backend: 'auto' });
      const cfg = join(root, 'etc/xen', `${VM}.cfg`);
      await writeFile(
        cfg,
        guestConfig({
          name: VM,
          ip: '10.0.0.21/24',
          disks: [`format=raw, vdev=xvda, access=rw, target=${disk}`],
        }),
      );
      await xl(['create', cfg], { timeoutMs: 90_000, log });
      await waitConsole(VM, /ZC-GUEST-UP/, { timeoutMs: 120_000, signal: ctx.signal });
      const origUuid = await xlUuid(VM);

      const created = await vmclone(root, ['create', VM, '--online', '--json'], { log });
      const r = JSON.parse(created.stdout) as {
        clone: { cloneName: string; cloneUuid: string; state: string; snapshots: unknown[] };
        originalPauseMs: number | null;
        vifs: { name: string; masked: boolean; bridge: string }[];
      };
      ctx.note('create_ms', created.ms);
      ctx.note('pause_ms', Math.round((r.originalPauseMs ?? Number.NaN) * 10) / 10);
      assertTrue(r.originalPauseMs !== null, 'LANE_NO_PAUSE', 'create --online reported no pause');
      assertTrue(r.clone.state === 'running', 'LANE_CLONE_STATE', `clone is ${r.clone.state}`);
      const backends = (r.clone.snapshots as { backend?: string }[]).map((s) => s.backend);
      ctx.note('backend', backends.join(','));
      assertTrue(
        backends.length === 1 && backends[0] === 'lvm-thin',
        'LANE_BACKEND',
        `expected one lvm-thin snapshot, got ${JSON.stringify(backends)}`,
      );

      await assertBothRun(VM, CLONE, r.clone.cloneUuid, origUuid, log);
      const vif = r.vifs[0];
      assertTrue(vif?.masked, 'LANE_VIF_UNMASKED', `clone vif: ${JSON.stringify(r.vifs)}`);
      const iso = await bridgePorts(ISOLATION);
      assertTrue(
        iso.includes(vif.name),
        'LANE_VIF_NOT_ISOLATED',
        `${vif.name} is not on ${ISOLATION} (ports: ${iso.join(' ') || 'none'})`,
      );
      const lvs = await pool.lvNames();
      log(`LVs: ${lvs.join(' ')}`);
      assertTrue(lvs.includes(`${CLONE}.xvda`), 'LANE_NO_CLONE_LV', `no LV ${CLONE}.xvda`);
      const m = await waitConsole(CLONE, /ZC-GUEST-DISK xvda marker=(\S*)/, {
        timeoutMs: 120_000,
        signal: ctx.signal,
      });
      assertTrue(m[1] === marker, 'LANE_CLONE_DISK', `clone read '${m[1]}', wanted '${marker}'`);
      const beat = await lastHeartbeat(VM);
      await waitFor(
        `${VM} to keep beating`,
        async () => ((await lastHeartbeat(VM)) > beat ? true : undefined),
        { timeoutMs: 30_000, signal: ctx.signal },
      );

      // stop (forced: the test guest has no shutdown handler), start, remove.
      const stopped = await vmclone(root, ['stop', VM, '--force'], { log });
      ctx.note('stop_ms', stopped.ms);
      assertTrue(!(await domainByName(CLONE)), 'LANE_STOP', `${CLONE} still runs after stop`);
      const st = await vmclone(root, ['status', VM, '--json'], { log });
      const status = JSON.parse(st.stdout) as { clone: { state: string } };
      assertTrue(status.clone.state === 'active', 'LANE_STOP_STATE', `state ${status.clone.state}`);

      const before = (await readConsole(CLONE)).length;
      const started = await vmclone(root, ['start', VM], { log });
      ctx.note('start_ms', started.ms);
      const again = await domainByName(CLONE);
      assertTrue(again && !again.state.includes('p'), 'LANE_START', `${CLONE}: ${again?.state}`);
      await waitConsole(CLONE, /ZC-GUEST-UP/, {
        timeoutMs: 120_000,
        signal: ctx.signal,
        after: before,
      });

      const removed = await vmclone(root, ['remove', VM], { log });
      ctx.note('remove_ms', removed.ms);
      const left = (await xl(['list'], { timeoutMs: 30_000 })).stdout;
      log(left.trim().replace(/\n/g, ' | '));
      assertTrue(!(await domainByName(CLONE)), 'LANE_REMOVE_DOM', `${CLONE} still exists`);
      const still = await domainByName(VM);
      assertTrue(still && !still.state.includes('p'), 'LANE_REMOVE_ORIG', `${VM}: ${still?.state}`);
      const lvsAfter = await pool.lvNames();
      assertTrue(
        !lvsAfter.some((n) => n.startsWith(CLONE)),
        'LANE_LV_LEFT',
        `clone LV left after remove: ${lvsAfter.join(' ')}`,
      );
      const clonesDir = join(root, 'var/lib/zynclone/clones');
      const files = await readdir(clonesDir).catch(() => [] as string[]);
      assertTrue(files.length === 0, 'LANE_FILES_LEFT', `left in ${clonesDir}: ${files.join(' ')}`);
      assertTrue(
        !(await bridgePorts(ISOLATION)).some((p) => p.startsWith('zcv')),
        'LANE_VIF_LEFT',
        `a clone vif is still on ${ISOLATION}`,
      );
    } finally {
      await destroyQuietly(CLONE, log);
      await destroyQuietly(VM, log);
      await netmon.stop();
      await pool.cleanup();
    }
  },
};

export default scenario;
