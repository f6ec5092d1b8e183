// Reads `vm/$VM` subtrees (docs/xenstore-contract.md) into planner input.
//
// No XenStore transaction: clone_monitor writes `generation` last in the same
// transaction as the rest, so reading the generation before and after the
// subtree and finding it unchanged proves no publish landed in between (a
// seqlock). Reads of one stage go out together; XsClient multiplexes them.
import type { VifInput, VmInput } from '../../core/lockdown/nft-plan.js';
import { type XsOps, isXsErrno } from '../../xenstore/index.js';

export const ZYNCLONE_ROOT = '/tool/zynclone';
export const VM_ROOT = `${ZYNCLONE_ROOT}/vm`;
export const NET_ROOT = `${ZYNCLONE_ROOT}/net`;

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

async function readVifs(xs: XsOps, dir: string, ids: string[] | undefined): Promise<VifInput[]> {
  const devids = (ids ?? []).filter((d) => DEVID.test(d));
  return Promise.all(
    devids.map(async (d) => {
      const [name, masked] = await Promise.all([
        xs.tryRead(`${dir}/${d}/name`),
        xs.tryRead(`${dir}/${d}/masked`),
      ]);
      return { devid: Number(d), name, masked };
    }),
  );
}

/** One VM's subtree; undefined once `vm/$VM` is gone (the clone was removed). */
export async function readVm(xs: XsOps, vm: string): Promise<VmInput | undefined> {
  const base = `${VM_ROOT}/${vm}`;
  let last: VmInput | undefined;
  for (let attempt = 0; attempt < SEQLOCK_ATTEMPTS; attempt++) {
    const [generation, state, originalVifMask, cloneIds, originalIds] = await Promise.all([
      xs.tryRead(`${base}/generation`),
      xs.tryRead(`${base}/state`),
      xs.tryRead(`${base}/original-vif-mask`),
      tryDirectory(xs, `${base}/clone-vif`),
      tryDirectory(xs, `${base}/original-vif`),
    ]);
    const [cloneVifs, originalVifs, after] = await Promise.all([
      readVifs(xs, `${base}/clone-vif`, cloneIds),
      readVifs(xs, `${base}/original-vif`, originalIds),
      // Sent after the vif reads on the same connection, so answered after them.
      xs.tryRead(`${base}/generation`),
    ]);
    if (generation === undefined && state === undefined && cloneIds === undefined) {
      if ((await tryDirectory(xs, base)) === undefined) return undefined;
    }
    last = { vm, state, generation, originalVifMask, cloneVifs, originalVifs };
    if (after === generation) return last;
  }
  // Kept changing under us: use what we saw (its sets are the latest we know)
  // but acknowledge nothing; the watch event of the last change brings us back.
  return last === undefined ? undefined : { ...last, generation: undefined };
}

/** Every VM under `vm/`; an absent `vm/` is no VM at all. */
export async function readAllVms(xs: XsOps): Promise<VmInput[]> {
  const names = (await tryDirectory(xs, VM_ROOT)) ?? [];
  const out: (VmInput | undefined)[] = new Array(names.length);
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const i = next++;
      out[i] = await readVm(xs, names[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(VM_CONCURRENCY, names.length) }, worker));
  return out.filter((vm): vm is VmInput => vm !== undefined);
}

/** The VM a watch event under `vm/` concerns; undefined for `vm/` itself or anything else. */
export function vmOfPath(path: string): string | undefined {
  if (!path.startsWith(`${VM_ROOT}/`)) return undefined;
  const name = path.slice(VM_ROOT.length + 1).split('/')[0];
  return name === '' ? undefined : name;
}
