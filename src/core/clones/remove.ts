/**
 * `remove`, from any state: the clone's domain, published lockdown, shared
 * volumes, snapshots, files and record. Every step is safe to repeat, so it
 * also cleans up after a crash (`existing`: the operation recovery adopted).
 */
import { rmSync } from 'node:fs';
import type { VmName } from '../paths.js';
import type { OperationRecord } from '../state/types.js';
import { parseSnapshotPlan, remove as removeSnapshot } from '../storage/index.js';
import { VolumeSwitcher } from '../volumes/switch.js';
import type { LifecycleContext } from './context.js';
import { type CloneMeta, cloneMetaFile } from './meta.js';
import { unpublishVm } from './publish.js';

export async function removeClone(
  ctx: LifecycleContext,
  vm: VmName,
  existing?: OperationRecord,
): Promise<{ removed: boolean }> {
  return ctx.operate(
    vm,
    'remove',
    {},
    async (op) => {
      const c = ctx.store.getClone(vm);
      if (c === undefined) {
        // Nothing recorded; still lift a lockdown left behind.
        await op.step('unpublish', { vm }, null, async () => unpublishVm(await ctx.xs(), vm));
        return { removed: false };
      }
      // A damaged metadata file must not keep the clone from being removed.
      let meta: CloneMeta | undefined;
      try {
        meta = ctx.readMeta(c.cloneName);
      } catch {
        meta = undefined;
      }
      await op.step('destroy-domain', { name: c.cloneName }, null, () =>
        ctx.timed(`destroying clone domain ${c.cloneName}`, async () => {
          if (c.cloneUuid !== null) {
            await ctx.undoAction({
              action: 'destroy-domain',
              name: c.cloneName,
              uuid: c.cloneUuid,
            });
          }
        }),
      );
      await op.step('unpublish', { vm }, null, async () => unpublishVm(await ctx.xs(), vm));
      await op.step('return-volumes', { vm }, null, () =>
        new VolumeSwitcher(ctx.o).returnToOriginal(vm),
      );
      for (const s of c.snapshots) {
        const plan = parseSnapshotPlan(s);
        await op.step(`remove-snapshot:${plan.vdev}`, { dest: plan.dest }, null, () =>
          ctx.timed(`removing volume ${plan.dest}`, () => removeSnapshot(plan)),
        );
      }
      const files = [
        ...(meta?.saveImage === undefined ? [] : [meta.saveImage]),
        ctx.cloneConfigFile(c.cloneName),
        cloneMetaFile(ctx.paths, c.cloneName),
      ];
      await op.step('remove-files', { files }, null, async () => {
        for (const f of files) rmSync(f, { force: true });
      });
      await op.step('delete-record', { vm }, null, async () => ctx.store.deleteClone(vm));
      return { removed: true };
    },
    existing,
  );
}
