/**
 * The online-clone primitive on real Xen: `xl save -p` keeps the running
 * guest (paused), `xl unpause` resumes it, and `xl restore -p` with an edited
 * config brings up a copy under a new name and UUID. Both must run afterwards;
 * the copy continues the original's heartbeat counter, which shows that the
 * memory state, not a fresh boot, was restored.
 */
import { randomUUID } from 'node:crypto';
import { rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  assertTrue,
  destroyQuietly,
  domainByName,
  guestConfig,
  lastHeartbeat,
  readConsole,
  waitConsole,
  waitFor,
  writeGuestConfig,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario } from '../runner/types.js';

interface XlLongEntry {
  domid?: number;
  config?: { c_info?: { name?: string; uuid?: string } };
}

async function uuidOf(name: string): Promise<string | undefined> {
  const { stdout } = await xl(['list', '-l', name], { timeoutMs: 60_000 });
  const parsed = JSON.parse(stdout) as XlLongEntry[];
  return parsed[0]?.config?.c_info?.uuid;
}

const scenario: Scenario = {
  name: 'save-restore',
  title: 'xl save -p, xl unpause, xl restore -p of a copy with a new name and UUID',
  timeoutMs: 240_000,
  async run(ctx) {
    const log = ctx.log;
    const orig = 'zc-orig';
    const clone = 'zc-clone';
    const image = join(ctx.workDir, `${orig}.save`);
    const cfg = await writeGuestConfig(ctx.workDir, { name: orig });
    try {
      await xl(['create', cfg], { timeoutMs: 90_000, log });
      await waitConsole(orig, /ZC-GUEST-HEARTBEAT 2\b/, { timeoutMs: 120_000, signal: ctx.signal });
      const origUuid = await uuidOf(orig);
      assertTrue(origUuid, 'LANE_NO_UUID', `xl list -l ${orig} has no uuid`);

      const saved = await xl(['save', '-p', orig, image], { timeoutMs: 180_000, log });
      ctx.note('save_ms', saved.ms);
      ctx.note('image_mb', Math.round((await stat(image)).size / 1048576));
      const afterSave = await domainByName(orig);
      assertTrue(afterSave, 'LANE_ORIG_GONE', `${orig} was destroyed by xl save -p`);
      assertTrue(
        afterSave.state.includes('p'),
        'LANE_NOT_PAUSED',
        `${orig} state after save -p is ${afterSave.state}`,
      );
      const beatAtSave = await lastHeartbeat(orig);

      await xl(['unpause', orig], { timeoutMs: 60_000, log });
      await waitFor(
        `${orig} to beat again after unpause`,
        async () => ((await lastHeartbeat(orig)) > beatAtSave ? true : undefined),
        { timeoutMs: 60_000, signal: ctx.signal },
      );

      const cloneUuid = randomUUID();
      const cloneCfg = join(ctx.workDir, `${clone}.cfg`);
      await writeFile(cloneCfg, guestConfig({ name: clone, uuid: cloneUuid }));
      const restored = await xl(['restore', '-p', cloneCfg, image], { timeoutMs: 180_000, log });
      ctx.note('restore_ms', restored.ms);
      const c = await domainByName(clone);
      assertTrue(c, 'LANE_NO_CLONE', `${clone} not listed after xl restore -p`);
      assertTrue(
        c.state.includes('p'),
        'LANE_CLONE_NOT_PAUSED',
        `${clone} state after restore -p is ${c.state}`,
      );
      const gotUuid = await uuidOf(clone);
      assertTrue(
        gotUuid === cloneUuid,
        'LANE_CLONE_UUID',
        `${clone} has uuid ${gotUuid}, expected ${cloneUuid} (original ${origUuid})`,
      );

      await xl(['unpause', clone], { timeoutMs: 60_000, log });
      // The copy resumes the saved counter: a beat above the one at save time
      // and no boot banner in its console.
      await waitFor(
        `${clone} to beat after unpause`,
        async () => ((await lastHeartbeat(clone)) > beatAtSave ? true : undefined),
        { timeoutMs: 90_000, signal: ctx.signal },
      );
      const cloneConsole = await readConsole(clone);
      assertTrue(
        !cloneConsole.includes('ZC-GUEST-BOOT'),
        'LANE_CLONE_REBOOTED',
        `${clone} booted afresh instead of resuming the saved state`,
      );
      const o1 = await lastHeartbeat(orig);
      const c1 = await lastHeartbeat(clone);
      await waitFor(
        'both domains to keep beating',
        async () =>
          (await lastHeartbeat(orig)) > o1 && (await lastHeartbeat(clone)) > c1 ? true : undefined,
        { timeoutMs: 60_000, signal: ctx.signal },
      );
      const both = [await domainByName(orig), await domainByName(clone)];
      log(`states: ${both.map((d) => `${d?.name}=${d?.state}`).join(' ')}`);
      ctx.note('heartbeat_at_save', beatAtSave);
    } finally {
      await destroyQuietly(clone, log);
      await destroyQuietly(orig, log);
      await rm(image, { force: true });
    }
  },
};

export default scenario;
