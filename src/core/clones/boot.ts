/**
 * The one way a clone's domain comes up, for create and start alike: paused,
 * on the bridges of the lockdown its xl config already holds, unpaused only
 * after the net monitor acknowledged that lockdown with the clone's domid.
 */
import { readFileSync } from 'node:fs';
import { assertDisksFree } from '../volumes/attachments.js';
import { ensureIsolationBridge } from './bridge.js';
import type { LifecycleContext } from './context.js';
import type { JournaledOperation } from './journal.js';
import type { CloneLockdown } from './lockdown.js';
import type { CloneMeta } from './meta.js';
import { publishVm, waitForAck } from './publish.js';

/**
 * Creates the clone's domain paused with `boot`, publishes `lockdown` with
 * the clone's domid, waits for the net monitor's ack of exactly that
 * generation, then unpauses it. Returns the domid.
 */
export async function bootClone(
  ctx: LifecycleContext,
  op: JournaledOperation,
  meta: CloneMeta,
  lockdown: CloneLockdown,
  boot: () => Promise<number>,
  bootStep: 'create-domain' | 'restore-domain',
): Promise<number> {
  if ((ctx.o.manageBridge ?? ctx.paths.root === '/') && lockdown.cloneVifs.some((v) => v.masked)) {
    await ensureIsolationBridge(lockdown.isolationBridge, lockdown.clonePrefix);
  }
  // vmclone refuses a second writer before Xen would (its check misses qdisk and same-UUID domains).
  const configFile = ctx.cloneConfigFile(meta.cloneName);
  await assertDisksFree(await ctx.xs(), readFileSync(configFile, 'utf8'), configFile);
  const domid = await op.step(
    bootStep,
    { name: meta.cloneName, uuid: meta.cloneUuid, config: configFile },
    { action: 'destroy-domain', name: meta.cloneName, uuid: meta.cloneUuid },
    () =>
      ctx.timed(
        `${bootStep === 'restore-domain' ? 'restoring' : 'creating'} clone domain ${meta.cloneName} (paused)`,
        boot,
      ),
    (d) => ({ domid: d }),
  );
  const pub = { ...lockdown.publication, cloneDomid: domid };
  const generation = await op.step('publish-domid', { generation: 'next', domid }, null, async () =>
    publishVm(await ctx.xs(), pub),
  );
  const timeout = ctx.ackTimeout(meta.vm);
  await op.step('wait-ack', { generation, timeoutMs: timeout }, null, () =>
    ctx.timed(
      `waiting for the network monitor to acknowledge lockdown generation ${generation}`,
      async () => waitForAck(await ctx.xs(), meta.vm, generation, timeout),
    ),
  );
  await op.step('unpause-clone', { name: meta.cloneName, domid }, null, () =>
    ctx.timed(`unpausing clone ${meta.cloneName}`, () => ctx.xl.unpause(meta.cloneName)),
  );
  return domid;
}
