import { type XsOps, isXsErrno } from '../../xenstore/index.js';
// Reads the published vm/* subtrees (docs/xenstore-contract.md) as the net
// monitor's planner takes them, for comparisons in `vmclone doctor`.
import type { VifInput, VmInput } from '../lockdown/nft-plan.js';

const VM_ROOT = '/tool/zynclone/vm';
const DEVID = /^(0|[1-9][0-9]{0,3})$/;

async function dir(xs: XsOps, path: string): Promise<string[]> {
  try {
    return await xs.directory(path);
  } catch (err) {
    if (isXsErrno(err, 'ENOENT')) return [];
    throw err;
  }
}

async function vifs(xs: XsOps, base: string): Promise<VifInput[]> {
  const ids = (await dir(xs, base)).filter((d) => DEVID.test(d));
  return Promise.all(
    ids.map(async (d) => ({
      devid: Number(d),
      name: await xs.tryRead(`${base}/${d}/name`),
      masked: await xs.tryRead(`${base}/${d}/masked`),
    })),
  );
}

export async function readVmInputs(xs: XsOps): Promise<VmInput[]> {
  const names = (await dir(xs, VM_ROOT)).sort();
  return Promise.all(
    names.map(async (vm) => {
      const base = `${VM_ROOT}/${vm}`;
      return {
        vm,
        state: await xs.tryRead(`${base}/state`),
        generation: await xs.tryRead(`${base}/generation`),
        originalVifMask: await xs.tryRead(`${base}/original-vif-mask`),
        cloneVifs: await vifs(xs, `${base}/clone-vif`),
        originalVifs: await vifs(xs, `${base}/original-vif`),
      };
    }),
  );
}
