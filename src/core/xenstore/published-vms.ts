// Reads the published `vm/$VM` subtrees (docs/xenstore-contract.md) as the net
// monitor's planner takes them; the net monitor and `vmclone doctor` both
// read through here.
//
// No XenStore transaction: clone_monitor writes `generation` last in the same
// transaction as the rest, so reading the generation before and after the
// subtree and finding it unchanged proves no publish landed in between (a
// seqlock). Reads of one stage go out together; XsClient multiplexes them.
import { type XsOps, isXsErrno } from '../../xenstore/index.js';
import type { VifInput, VmInput } from '../lockdown/nft-plan.js';
import { VM_ROOT, type VifList, vifLeaf, vifListNode, vmLeaf, vmNode } from './layout.js';

const SEQLOCK_ATTEMPTS = 4;
/** VMs read at once during a full pass; bounds the requests in flight. */
const VM_CONCURRENCY = 64;
const DEVID = /^(0|[1-9][0-9]{0,3})$/;

async function tryDirectory(xs: XsOps, path: string): Promise<string[] | undefined> {
  try {
    return await xs.directory(path);
  } catch (err) {
    if (isXsErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

async function readVifs(
  xs: XsOps,
  vm: string,
  list: VifList,
  ids: string[] | undefined,
): Promise<VifInput[]> {
  const devids = (ids ?? []).filter((d) => DEVID.test(d));
  return Promise.all(
    devids.map(async (d) => {
      const [name, masked] = await Promise.all([
        xs.tryRead(vifLeaf(vm, list, d, 'name')),
        xs.tryRead(vifLeaf(vm, list, d, 'masked')),
      ]);
      return { devid: Number(d), name, masked };
    }),
  );
}

/**
 * One VM's subtree; undefined once `vm/$VM` is gone (the clone was removed).
 * Its `generation` is undefined when the subtree kept changing while read:
 * what was read must then not be acknowledged or trusted as one publication.
 */
export async function readPublishedVm(xs: XsOps, vm: string): Promise<VmInput | undefined> {
  let last: VmInput | undefined;
  for (let attempt = 0; attempt < SEQLOCK_ATTEMPTS; attempt++) {
    const [generation, state, originalVifMask, cloneIds, originalIds] = await Promise.all([
      xs.tryRead(vmLeaf(vm, 'generation')),
      xs.tryRead(vmLeaf(vm, 'state')),
      xs.tryRead(vmLeaf(vm, 'original-vif-mask')),
      tryDirectory(xs, vifListNode(vm, 'clone-vif')),
      tryDirectory(xs, vifListNode(vm, 'original-vif')),
    ]);
    const [cloneVifs, originalVifs, after] = await Promise.all([
      readVifs(xs, vm, 'clone-vif', cloneIds),
      readVifs(xs, vm, 'original-vif', originalIds),
      // Sent after the vif reads on the same connection, so answered after them.
      xs.tryRead(vmLeaf(vm, 'generation')),
    ]);
    if (generation === undefined && state === undefined && cloneIds === undefined) {
      if ((await tryDirectory(xs, vmNode(vm))) === undefined) return undefined;
    }
    last = { vm, state, generation, originalVifMask, cloneVifs, originalVifs };
    if (after === generation) return last;
  }
  // Kept changing under us: use what we saw (its sets are the latest we know)
  // but acknowledge nothing; the watch event of the last change brings us back.
  return last === undefined ? undefined : { ...last, generation: undefined };
}

/** Every VM under `vm/`, sorted by name; an absent `vm/` is no VM at all. */
export async function readPublishedVms(xs: XsOps): Promise<VmInput[]> {
  const names = ((await tryDirectory(xs, VM_ROOT)) ?? []).sort();
  const out: (VmInput | undefined)[] = new Array(names.length);
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const i = next++;
      out[i] = await readPublishedVm(xs, names[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(VM_CONCURRENCY, names.length) }, worker));
  return out.filter((vm): vm is VmInput => vm !== undefined);
}
