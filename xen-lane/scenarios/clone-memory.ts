/**
 * `vmclone create --memory` of a running guest. First without a net monitor:
 * the lockdown is never acknowledged, so the create fails with
 * LOCKDOWN_TIMEOUT (exit 7) and is rolled back: no clone domain, the original
 * running and not paused, no memory image left. Then with the net monitor:
 * the original is paused only for save + snapshot, the clone is restored
 * under a new name and UUID, unpaused only after the ack, and continues the
 * original's heartbeat counter without booting. Finally remove.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureIsolationBridge } from '../../src/core/clones/bridge.js';
import {
  assertTrue,
  destroyQuietly,
  ensureBridge,
  guestConfig,
  lastHeartbeat,
  listDomains,
  readConsole,
  waitConsole,
  waitFor,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario } from '../runner/types.js';
import {
  type NetMonitorHandle,
  assertBothRun,
  makeRoot,
  startNetMonitor,
  vmclone,
  xlUuid,
} from '../runner/zynclone-tools.js';

const VM = 'zc-mem';
const CLONE = `${VM}-clone`;

const scenario: Scenario = {
  name: 'clone-memory',
  title: 'vmclone create --memory: refused without an ack, then resumed clone; remove',
  timeoutMs: 420_000,
  async run(ctx) {
    const log = ctx.log;
    await ensureBridge(log);
    await ensureIsolationBridge('zc-isolated', 'zcv');
    const root = await makeRoot(ctx.workDir, { lockdown_ack_timeout_ms: 4000 });
    const cfg = join(root, 'etc/xen', `${VM}.cfg`);
    await writeFile(cfg, guestConfig({ name: VM, ip: '10.0.0.31/24' }));
    const saveDir = join(root, 'var/lib/zynclone/save');
    let netmon: NetMonitorHandle | undefined;
    try {
      await xl(['create', cfg], { timeoutMs: 90_000, log });
      await waitConsole(VM, /ZC-GUEST-HEARTBEAT 2\b/, { timeoutMs: 120_000, signal: ctx.signal });
      const origUuid = await xlUuid(VM);

      // 1. No net monitor: never unpaused, rolled back.
      const refused = await vmclone(root, ['create', VM, '--memory'], { log, expect: 7 });
      assertTrue(
        refused.stderr.includes('[LOCKDOWN_TIMEOUT]'),
        'LANE_NO_LOCKDOWN_TIMEOUT',
        `expected LOCKDOWN_TIMEOUT, got: ${refused.stderr.trim().split('\n').slice(-2).join(' | ')}`,
      );
      ctx.note('refused_ms', refused.ms);
      const doms = await listDomains();
      log(`after the refused create: ${doms.map((d) => `${d.name}=${d.state}`).join(' ')}`);
      assertTrue(!doms.some((d) => d.name === CLONE), 'LANE_ROLLBACK_DOM', `${CLONE} was left`);
      const o1 = doms.find((d) => d.name === VM);
      assertTrue(o1 && !o1.state.includes('p'), 'LANE_ROLLBACK_ORIG', `${VM}: ${o1?.state}`);
      const images = await readdir(saveDir).catch(() => [] as string[]);
      assertTrue(images.length === 0, 'LANE_IMAGE_LEFT', `left in ${saveDir}: ${images.join(' ')}`);
      await vmclone(root, ['status', VM], { log, expect: 4 });

      // 2. With the net monitor.
      await vmclone(root, ['config', VM, '--set', 'lockdown_ack_timeout_ms=60000'], { log });
      netmon = await startNetMonitor({ log, signal: ctx.signal });
      const beatBefore = await lastHeartbeat(VM);
      const created = await vmclone(root, ['create', VM, '--memory', '--json'], { log });
      const r = JSON.parse(created.stdout) as {
        clone: { cloneUuid: string; state: string };
        originalPauseMs: number | null;
      };
      ctx.note('create_ms', created.ms);
      ctx.note('pause_ms', Math.round(r.originalPauseMs ?? Number.NaN));
      assertTrue(r.clone.state === 'running', 'LANE_CLONE_STATE', `clone is ${r.clone.state}`);
      // The progress lines: the ack came before the clone was unpaused.
      const lines = created.stderr.split('\n');
      const ackAt = lines.findIndex((l) => l.includes('acknowledge lockdown generation'));
      const unpauseAt = lines.findIndex((l) => l.includes(`unpausing clone ${CLONE}`));
      assertTrue(
        ackAt >= 0 && unpauseAt > ackAt,
        'LANE_ORDER',
        `progress does not show the ack wait before the unpause (lines ${ackAt}, ${unpauseAt})`,
      );
      const st = JSON.parse((await vmclone(root, ['status', VM, '--json'], { log })).stdout) as {
        lockdown: { generation: number | null; ack: number | null };
      };
      assertTrue(
        st.lockdown.ack !== null &&
          st.lockdown.generation !== null &&
          st.lockdown.ack >= st.lockdown.generation,
        'LANE_ACK',
        `lockdown ${JSON.stringify(st.lockdown)}`,
      );

      await assertBothRun(VM, CLONE, r.clone.cloneUuid, origUuid, log);
      await waitFor(
        `${CLONE} to beat`,
        async () => ((await lastHeartbeat(CLONE)) > beatBefore ? true : undefined),
        { timeoutMs: 60_000, signal: ctx.signal },
      );
      assertTrue(
        !(await readConsole(CLONE)).includes('ZC-GUEST-BOOT'),
        'LANE_CLONE_REBOOTED',
        `${CLONE} booted afresh instead of resuming`,
      );
      const ob = await lastHeartbeat(VM);
      await waitFor(
        `${VM} to keep beating`,
        async () => ((await lastHeartbeat(VM)) > ob ? true : undefined),
        { timeoutMs: 30_000, signal: ctx.signal },
      );
      ctx.note('clone_heartbeat', await lastHeartbeat(CLONE));

      await vmclone(root, ['remove', VM], { log });
      const after = await listDomains();
      log(`after remove: ${after.map((d) => `${d.name}=${d.state}`).join(' ')}`);
      assertTrue(!after.some((d) => d.name === CLONE), 'LANE_REMOVE_DOM', `${CLONE} left`);
      assertTrue(
        after.some((d) => d.name === VM),
        'LANE_REMOVE_ORIG',
        `${VM} is gone`,
      );
      const left = await readdir(saveDir).catch(() => [] as string[]);
      assertTrue(left.length === 0, 'LANE_IMAGE_LEFT', `left in ${saveDir}: ${left.join(' ')}`);
    } finally {
      await destroyQuietly(CLONE, log);
      await destroyQuietly(VM, log);
      await netmon?.stop();
    }
  },
};

export default scenario;
