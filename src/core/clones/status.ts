/** A clone as the state store, xl and XenStore see it now (`vmclone status`). */
import type { XlListEntry } from '../../xen/index.js';
import type { VmName } from '../paths.js';
import type { CloneRecord, OperationRecord } from '../state/types.js';
import { ackNode, vmLeaf } from '../xenstore/layout.js';
import type { LifecycleContext } from './context.js';

export interface CloneStatus {
  readonly vm: string;
  readonly clone: CloneRecord | undefined;
  /** The clone's domain as xl lists it now. */
  readonly domain: { domid: number; state: string; paused: boolean } | undefined;
  readonly originalDomain: { domid: number; state: string } | undefined;
  readonly generation: number | undefined;
  readonly ack: number | undefined;
  readonly running: OperationRecord | undefined;
  readonly configFile: string | undefined;
  /** Why the state changed without an operation (the domain went away outside ZynClone). */
  readonly note: string | undefined;
}

export async function cloneStatus(ctx: LifecycleContext, vm: VmName): Promise<CloneStatus> {
  const { store } = ctx;
  const clone = store.getClone(vm);
  const domains = await ctx.xl.list().catch(() => [] as XlListEntry[]);
  const d = clone ? domains.find((x) => x.name === clone.cloneName) : undefined;
  const orig = domains.find((x) => x.name === vm);
  let generation: number | undefined;
  let ack: number | undefined;
  try {
    const xs = await ctx.xs();
    const g = await xs.tryRead(vmLeaf(vm, 'generation'));
    const a = await xs.tryRead(ackNode(vm));
    generation = g === undefined ? undefined : Number(g);
    ack = a === undefined ? undefined : Number(a);
  } catch {
    // XenStore unreachable: status shows what the store knows.
  }
  const [last] = store.auditLog({ vm, limit: 1 });
  const note =
    clone !== undefined && last?.action === 'reconcile'
      ? String((last.detail as { note?: unknown } | null)?.note ?? '')
      : undefined;
  return {
    vm,
    clone,
    note,
    domain: d ? { domid: d.domid, state: d.state, paused: d.flags.paused } : undefined,
    originalDomain: orig ? { domid: orig.domid, state: orig.state } : undefined,
    generation,
    ack,
    running: store.runningOperation(vm),
    configFile: clone ? ctx.cloneConfigFile(clone.cloneName) : undefined,
  };
}
