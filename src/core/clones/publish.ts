/**
 * A VM's clone lockdown as published in XenStore under /tool/zynclone/vm/$VM
 * (docs/xenstore-contract.md). The lifecycle publishes while it runs an
 * operation on the VM, clone_monitor at all other times; both publish what
 * cloneLockdown (lockdown.ts) demands.
 */
import { waitForValue } from '../../xen/xs-wait.js';
import type { XsClient } from '../../xenstore/client.js';
import { isXsErrno } from '../../xenstore/errors.js';
import type { XsOps } from '../../xenstore/types.js';
import type { CloneState } from '../state/types.js';
import { CloneError } from './errors.js';
import type { ConsoleType } from './plan.js';

import { ackNode, vmNode } from '../xenstore/layout.js';
export { ZC_ROOT, ackNode, vmNode } from '../xenstore/layout.js';

export interface PublishedVif {
  readonly devid: number;
  readonly name: string;
  readonly masked: boolean;
}

export interface VmPublication {
  readonly vm: string;
  readonly state: CloneState;
  readonly cloneName: string;
  /** Absent while the clone has no domain. */
  readonly cloneDomid?: number | undefined;
  /** Absent while the original is not running. */
  readonly originalDomid?: number | undefined;
  readonly cloneVifMask: string;
  readonly originalVifMask: string;
  readonly cloneVifs: readonly PublishedVif[];
  readonly originalVifs: readonly PublishedVif[];
  readonly console: { readonly type: ConsoleType; readonly enabled: boolean };
}

/** What publishVm and the net monitor need from a client (XsClient has it). */
export type PublishClient = Pick<XsClient, 'transaction' | 'tryRead' | 'watch' | 'directory'>;

async function rmIfPresent(tx: XsOps, path: string): Promise<void> {
  try {
    await tx.rm(path);
  } catch (err) {
    if (!isXsErrno(err, 'ENOENT')) throw err;
  }
}

/**
 * Writes every node of `pub` and bumps the generation, written last, in one
 * transaction, so a reader never sees a half-written lockdown. Returns the
 * new generation.
 */
export async function publishVm(xs: PublishClient, pub: VmPublication): Promise<number> {
  return (await publish(xs, pub, undefined))!;
}

/**
 * publishVm only if vm/$VM/generation is still `expected` (undefined: absent)
 * when the transaction reads it, so a publisher that decided on an older view
 * never overwrites a newer publication. Returns the new generation, or
 * undefined when someone published since.
 */
export async function publishVmIf(
  xs: PublishClient,
  pub: VmPublication,
  expected: string | undefined,
): Promise<number | undefined> {
  return publish(xs, pub, { expected });
}

async function publish(
  xs: PublishClient,
  pub: VmPublication,
  guard: { expected: string | undefined } | undefined,
): Promise<number | undefined> {
  const base = vmNode(pub.vm);
  return xs.transaction(async (tx) => {
    // Above any ack too: after a remove, vm/$VM starts afresh, but a stale ack
    // of the old clone must never count for the new one.
    const num = (v: string | undefined) => {
      const n = Number(v ?? '0');
      return Number.isSafeInteger(n) && n >= 0 ? n : 0;
    };
    const current = await tx.tryRead(`${base}/generation`);
    if (guard !== undefined && current !== guard.expected) return undefined;
    const previous = num(current);
    const acked = num(await tx.tryRead(ackNode(pub.vm)));
    const generation = Math.max(previous, acked) + 1;
    // Vifs and domids that went away must not linger.
    await rmIfPresent(tx, `${base}/clone-vif`);
    await rmIfPresent(tx, `${base}/original-vif`);
    await rmIfPresent(tx, `${base}/clone-domid`);
    await rmIfPresent(tx, `${base}/original-domid`);
    await tx.write(`${base}/state`, pub.state);
    await tx.write(`${base}/clone-name`, pub.cloneName);
    if (pub.cloneDomid !== undefined) await tx.write(`${base}/clone-domid`, String(pub.cloneDomid));
    if (pub.originalDomid !== undefined) {
      await tx.write(`${base}/original-domid`, String(pub.originalDomid));
    }
    await tx.write(`${base}/clone-vif-mask`, pub.cloneVifMask);
    await tx.write(`${base}/original-vif-mask`, pub.originalVifMask);
    for (const [dir, vifs] of [
      ['clone-vif', pub.cloneVifs],
      ['original-vif', pub.originalVifs],
    ] as const) {
      for (const v of vifs) {
        await tx.write(`${base}/${dir}/${v.devid}/name`, v.name);
        await tx.write(`${base}/${dir}/${v.devid}/masked`, v.masked ? '1' : '0');
      }
    }
    await tx.write(`${base}/console/type`, pub.console.type);
    await tx.write(`${base}/console/enabled`, pub.console.enabled ? '1' : '0');
    await tx.write(`${base}/generation`, String(generation));
    return generation;
  });
}

/** Removes vm/$VM (the clone is gone: every lockdown is lifted). Safe to repeat. */
export async function unpublishVm(xs: PublishClient, vm: string): Promise<void> {
  await xs.transaction(async (tx) => rmIfPresent(tx, vmNode(vm)));
}

/** The published generation of `vm`, or undefined. */
export async function publishedGeneration(
  xs: Pick<XsClient, 'tryRead'>,
  vm: string,
): Promise<number | undefined> {
  const v = await xs.tryRead(`${vmNode(vm)}/generation`);
  return v === undefined ? undefined : Number(v);
}

/**
 * Waits (by XenStore watch) until the net monitor acknowledged `generation`
 * of `vm`; throws LOCKDOWN_TIMEOUT after `timeoutMs`.
 */
export async function waitForAck(
  xs: PublishClient,
  vm: string,
  generation: number,
  timeoutMs: number,
): Promise<number> {
  try {
    const v = await waitForValue(
      xs,
      ackNode(vm),
      (value) => /^[0-9]+$/.test(value.trim()) && Number(value) >= generation,
      { timeoutMs },
    );
    return Number(v);
  } catch (err) {
    if ((err as { code?: string }).code === 'XEN_WAIT_TIMEOUT') {
      const seen = await xs.tryRead(ackNode(vm)).catch(() => undefined);
      throw new CloneError(
        'LOCKDOWN_TIMEOUT',
        `the network monitor did not acknowledge lockdown generation ${generation} of ${vm} within ${timeoutMs} ms ` +
          `(${ackNode(vm)} is ${seen === undefined ? 'absent' : seen}); is clone_net_monitor running? ` +
          'The clone was not unpaused (config key lockdown_ack_timeout_ms sets the wait)',
        { cause: err },
      );
    }
    throw err;
  }
}
