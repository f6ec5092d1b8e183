/**
 * `start`, active|inactive -> running: the clone's xl config is locked down
 * anew from the current configuration, the clone boots (or is restored from
 * a memory clone's image) paused, and runs once that lockdown is acknowledged.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { parseVif } from '../../xen/index.js';
import { writeFileAtomic } from '../config/index.js';
import type { VmName } from '../paths.js';
import type { CloneRecord, Json } from '../state/types.js';
import { bootClone } from './boot.js';
import { refuseProductionBridge } from './bridge.js';
import type { LifecycleContext } from './context.js';
import { CloneError } from './errors.js';
import { cloneLockdown, configOrError, liveDomains, lockedCloneConfig } from './lockdown.js';
import { XL_DEFAULT_BRIDGE } from './plan.js';
import { publishVm } from './publish.js';

export async function startClone(ctx: LifecycleContext, vm: VmName): Promise<CloneRecord> {
  const c = ctx.requireClone(vm);
  return ctx.operate(vm, 'start', { cloneName: c.cloneName }, async (op) => {
    const cur = ctx.requireClone(vm);
    ctx.refuseState(cur, 'start', ['active', 'inactive'], 'it is already running');
    const meta = ctx.readMeta(cur.cloneName);
    const live = await liveDomains(ctx.xl, vm, cur.cloneName);
    if (live.cloneDomid !== undefined) {
      throw new CloneError('CLONE_EXISTS', `a domain named ${cur.cloneName} already exists`);
    }
    // A clone never boots on an old lockdown: an unreadable configuration stops here.
    const config = configOrError(vm, ctx.paths);
    if (config instanceof Error) throw config;
    refuseProductionBridge(config.isolation_bridge, {
      vm,
      clonePrefix: config.clone_vif_prefix,
      productionBridges: meta.cloneVifs.map(
        (v) => parseVif(v.productionSpec).bridge ?? XL_DEFAULT_BRIDGE,
      ),
    });
    const lockdown = cloneLockdown(vm, cur.cloneName, meta, 'running', config, live);
    const before = cloneLockdown(vm, cur.cloneName, meta, cur.state, config, live).publication;
    const configFile = ctx.cloneConfigFile(cur.cloneName);
    await op.step(
      'write-config',
      {
        configFile,
        vifs: lockdown.cloneVifs.map((v) => ({ devid: v.devid, bridge: v.bridge })),
      },
      null,
      async () =>
        writeFileAtomic(
          configFile,
          lockedCloneConfig(readFileSync(configFile, 'utf8'), configFile, lockdown),
        ),
    );
    await op.step(
      'publish',
      { state: 'running' },
      { action: 'republish', publication: before as unknown as Json },
      async () => publishVm(await ctx.xs(), lockdown.publication),
    );
    const image =
      meta.saveImage !== undefined && existsSync(meta.saveImage) ? meta.saveImage : undefined;
    const domid = await bootClone(
      ctx,
      op,
      meta,
      lockdown,
      () =>
        image === undefined
          ? ctx.xl.create(configFile, { paused: true })
          : ctx.xl.restore(image, { paused: true, cfgPath: configFile }),
      image === undefined ? 'create-domain' : 'restore-domain',
    );
    if (image !== undefined) {
      // Restored once; from now on the clone cold-boots from its disks.
      await op.step('remove-save-image', { saveFile: image }, null, async () =>
        rmSync(image, { force: true }),
      );
    }
    return op.step(
      'record',
      { state: 'running', domid },
      { action: 'restore-clone-record', record: cur as unknown as Json },
      async () => ctx.store.updateClone(vm, { state: 'running', cloneDomid: domid }),
    );
  });
}
