/**
 * The transitions that only take a clone down or move its lockdowns: `stop`
 * (running -> active), `activate` (inactive -> active, acknowledged) and
 * `deactivate` (active -> inactive). Each step is safe to repeat, so
 * recovery finishes them (`existing`: the operation it adopted).
 */
import type { VmName } from '../paths.js';
import type { CloneRecord, CloneState, OperationRecord } from '../state/types.js';
import { type LifecycleContext, errText } from './context.js';
import { CloneError } from './errors.js';
import type { CloneMeta } from './meta.js';
import { publishVm, waitForAck } from './publish.js';
import { domainUuid } from './undo.js';

export interface StopOptions {
  readonly force?: boolean;
  readonly timeoutMs?: number;
}

/** running -> active: shuts the clone down (destroys it after `timeoutMs`, at once with force). */
export async function stopClone(
  ctx: LifecycleContext,
  vm: VmName,
  opts: StopOptions = {},
  existing?: OperationRecord,
): Promise<CloneRecord> {
  const c = ctx.requireClone(vm);
  return ctx.operate(
    vm,
    'stop',
    { force: opts.force ?? false },
    async (op) => {
      const cur = ctx.requireClone(vm);
      if (existing === undefined) ctx.refuseState(cur, 'stop', ['running'], 'it is not running');
      const meta = ctx.readMeta(cur.cloneName);
      await op.step('stop-domain', { name: c.cloneName, force: opts.force ?? false }, null, () =>
        ctx.timed(`stopping clone ${c.cloneName}`, () => stopDomain(ctx, meta, opts)),
      );
      const pub = (await ctx.lockdownOf(meta, 'active')).publication;
      await op.step('publish', { state: 'active' }, null, async () =>
        publishVm(await ctx.xs(), pub),
      );
      return op.step('record', { state: 'active' }, null, async () =>
        ctx.store.updateClone(vm, { state: 'active', cloneDomid: null }),
      );
    },
    existing,
  );
}

async function stopDomain(
  ctx: LifecycleContext,
  meta: CloneMeta,
  opts: StopOptions,
): Promise<void> {
  const uuid = await domainUuid(ctx.xl, meta.cloneName);
  if (uuid === undefined) return;
  if (uuid !== meta.cloneUuid) {
    throw new CloneError(
      'CLONE_STATE',
      `domain ${meta.cloneName} has UUID ${uuid}, not the clone's ${meta.cloneUuid}; not touching it`,
    );
  }
  if (!opts.force) {
    try {
      await ctx.xl.shutdown(meta.cloneName, { wait: true, timeoutMs: opts.timeoutMs ?? 60_000 });
      return;
    } catch (err) {
      if ((err as { code?: string }).code === 'XL_NO_SUCH_DOMAIN') return;
      ctx.emit(
        'warn',
        `clean shutdown of ${meta.cloneName} failed (${errText(err)}); destroying it`,
      );
    }
  }
  await ctx.undoAction({ action: 'destroy-domain', name: meta.cloneName, uuid: meta.cloneUuid });
}

/** inactive -> active (lockdowns enforced, acknowledged) and active -> inactive (lifted). */
export async function setLockdownState(
  ctx: LifecycleContext,
  vm: VmName,
  what: 'activate' | 'deactivate',
  existing?: OperationRecord,
): Promise<CloneRecord> {
  ctx.requireClone(vm);
  const target: CloneState = what === 'activate' ? 'active' : 'inactive';
  return ctx.operate(
    vm,
    what,
    {},
    async (op) => {
      const cur = ctx.requireClone(vm);
      if (existing === undefined) {
        ctx.refuseState(
          cur,
          what,
          what === 'activate' ? ['inactive'] : ['active'],
          what === 'activate'
            ? 'it is already active or running'
            : cur.state === 'running'
              ? 'stop it first'
              : 'it is already inactive',
        );
      }
      const meta = ctx.readMeta(cur.cloneName);
      const pub = (await ctx.lockdownOf(meta, target)).publication;
      const generation = await op.step('publish', { state: target }, null, async () =>
        publishVm(await ctx.xs(), pub),
      );
      if (what === 'activate') {
        const timeout = ctx.ackTimeout(vm);
        await op.step('wait-ack', { generation, timeoutMs: timeout }, null, () =>
          ctx.timed('waiting for the network monitor to acknowledge the lockdown', async () =>
            waitForAck(await ctx.xs(), vm, generation, timeout),
          ),
        );
      }
      return op.step('record', { state: target }, null, async () =>
        ctx.store.updateClone(vm, { state: target, cloneDomid: null }),
      );
    },
    existing,
  );
}
