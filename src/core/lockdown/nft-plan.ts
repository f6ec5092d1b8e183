/**
 * Backend lockdown planning: from what `/tool/zynclone/vm` says (a snapshot,
 * read by the net monitor) to the two interface-name sets the nftables table
 * matches on, and from one set state to the next (a diff). Pure functions, so
 * the same input always gives the same sets in the same order.
 *
 * The rules of the XenStore contract (docs/xenstore-contract.md):
 * - a clone vif is allowed only when its `masked` node is exactly `0`; every
 *   other clone vif stays dropped by the standing prefix rule;
 * - an original vif is dropped while its VM's clone is `running` or `active`
 *   and the vif is masked (`masked = 1`, or, without a `masked` node, its
 *   device id is in `original-vif-mask`).
 */
import { isMasked, parseVifMask } from './vif-mask.js';

/** Linux's IFNAMSIZ minus the NUL. */
export const IFNAME_MAX = 15;

/**
 * Interface names the net monitor puts in nftables. Narrower than what Linux
 * accepts: no quote or backslash (the name goes inside a quoted nft string)
 * and no `*` (nft reads a trailing `*` as a wildcard).
 */
const IFNAME = /^[A-Za-z0-9_.@+-]+$/;

export function isValidIfname(name: string): boolean {
  return (
    name.length >= 1 &&
    name.length <= IFNAME_MAX &&
    IFNAME.test(name) &&
    name !== '.' &&
    name !== '..'
  );
}

/** A clone vif prefix must leave room for at least one more character. */
export function isValidVifPrefix(prefix: string): boolean {
  return prefix.length < IFNAME_MAX && isValidIfname(prefix);
}

export interface VifInput {
  devid: number;
  /** Raw `name` node; undefined if absent. */
  name: string | undefined;
  /** Raw `masked` node; undefined if absent. */
  masked: string | undefined;
}

/** One `vm/$VM` subtree as read from XenStore; values raw, nothing trusted yet. */
export interface VmInput {
  vm: string;
  state: string | undefined;
  generation: string | undefined;
  originalVifMask: string | undefined;
  cloneVifs: readonly VifInput[];
  originalVifs: readonly VifInput[];
}

export interface VmPlan {
  vm: string;
  /** The generation this plan answers, if the VM published a valid one. */
  generation: number | undefined;
  allowedCloneVifs: string[];
  droppedOriginalVifs: string[];
  /** Anything in the VM's subtree that could not be honoured as written. */
  problems: string[];
  /**
   * True if every lockdown the VM asked for is in the sets: only then may its
   * generation be acknowledged. A clone vif that cannot be allowed does not
   * block (it stays dropped: fail closed); an original vif that must be
   * dropped but has no usable name does.
   */
  complete: boolean;
}

/** The content of the table's two sets, each sorted and without duplicates. */
export interface NftSets {
  cloneAllowed: string[];
  masked: string[];
}

export interface LockdownPlan {
  sets: NftSets;
  /** Sorted by VM name. */
  vms: VmPlan[];
}

export interface PlanOptions {
  cloneVifPrefix: string;
}

const LOCKING_STATES = new Set(['running', 'active']);
const GENERATION = /^(0|[1-9][0-9]{0,15})$/;

function sortedUnique(names: Iterable<string>): string[] {
  return [...new Set(names)].sort();
}

function byDevid(a: VifInput, b: VifInput): number {
  return a.devid - b.devid;
}

export function planVm(input: VmInput, opts: PlanOptions): VmPlan & { extraMasked: string[] } {
  const problems: string[] = [];
  let complete = true;
  const allowed: string[] = [];
  const extraMasked: string[] = [];
  const dropped: string[] = [];

  const generation =
    input.generation !== undefined && GENERATION.test(input.generation)
      ? Number(input.generation)
      : undefined;
  if (generation === undefined) {
    problems.push(
      input.generation === undefined
        ? 'no generation'
        : `generation ${JSON.stringify(input.generation)} is not a decimal integer`,
    );
  }

  for (const vif of [...input.cloneVifs].sort(byDevid)) {
    const what = `clone vif ${vif.devid}`;
    if (vif.name === undefined || !isValidIfname(vif.name)) {
      if (vif.masked === '0') {
        problems.push(`${what}: cannot allow it, ${describeBadName(vif.name)}`);
      }
      continue;
    }
    if (vif.masked === '0') {
      allowed.push(vif.name);
    } else if (!vif.name.startsWith(opts.cloneVifPrefix)) {
      // The standing prefix rule does not see it: drop it by name instead.
      problems.push(
        `${what}: ${vif.name} does not start with the clone vif prefix ${opts.cloneVifPrefix}`,
      );
      extraMasked.push(vif.name);
    }
  }

  if (input.state !== undefined && LOCKING_STATES.has(input.state)) {
    let mask: ReturnType<typeof parseVifMask> | undefined;
    let maskProblem: string | undefined;
    if (input.originalVifMask !== undefined) {
      try {
        mask = parseVifMask(input.originalVifMask);
      } catch (err) {
        maskProblem = (err as Error).message;
      }
    }
    for (const vif of [...input.originalVifs].sort(byDevid)) {
      const what = `original vif ${vif.devid}`;
      let drop: boolean;
      if (vif.masked === '1') drop = true;
      else if (vif.masked === '0') drop = false;
      else if (mask !== undefined) drop = isMasked(mask, vif.devid);
      else {
        // Nothing says whether to lock it: lock it (fail closed), and say so.
        drop = true;
        problems.push(
          `${what}: no valid masked node and ${maskProblem ?? 'no original-vif-mask'}; dropping it`,
        );
      }
      if (!drop) continue;
      if (vif.name === undefined || !isValidIfname(vif.name)) {
        problems.push(`${what}: cannot drop it, ${describeBadName(vif.name)}`);
        complete = false;
        continue;
      }
      dropped.push(vif.name);
    }
  } else if (input.state !== undefined && input.state !== 'inactive') {
    problems.push(`unknown state ${JSON.stringify(input.state)}; original vifs not locked`);
  }

  return {
    vm: input.vm,
    generation,
    allowedCloneVifs: sortedUnique(allowed),
    droppedOriginalVifs: sortedUnique(dropped),
    problems,
    complete: complete && generation !== undefined,
    extraMasked,
  };
}

function describeBadName(name: string | undefined): string {
  if (name === undefined) return 'it has no name node';
  return `its name ${JSON.stringify(name.slice(0, 40))} is not a valid interface name`;
}

/** The whole table's sets for a snapshot of every VM. */
export function planLockdown(vms: readonly VmInput[], opts: PlanOptions): LockdownPlan {
  const plans = vms.map((vm) => planVm(vm, opts)).sort((a, b) => (a.vm < b.vm ? -1 : 1));
  const masked = sortedUnique(plans.flatMap((p) => [...p.droppedOriginalVifs, ...p.extraMasked]));
  const maskedSet = new Set(masked);
  for (const p of plans) {
    for (const name of p.allowedCloneVifs.filter((n) => maskedSet.has(n))) {
      p.problems.push(`clone vif ${name} is also a masked vif of some VM: it stays dropped`);
    }
    p.allowedCloneVifs = p.allowedCloneVifs.filter((n) => !maskedSet.has(n));
  }
  const cloneAllowed = sortedUnique(plans.flatMap((p) => p.allowedCloneVifs));
  return {
    sets: { cloneAllowed, masked },
    vms: plans.map(({ extraMasked: _unused, ...p }) => p),
  };
}

export interface SetDiff {
  add: string[];
  remove: string[];
}

export interface NftSetsDiff {
  cloneAllowed: SetDiff;
  masked: SetDiff;
}

function diffOne(from: readonly string[], to: readonly string[]): SetDiff {
  const a = new Set(from);
  const b = new Set(to);
  return {
    add: [...b].filter((n) => !a.has(n)).sort(),
    remove: [...a].filter((n) => !b.has(n)).sort(),
  };
}

export function diffSets(from: NftSets, to: NftSets): NftSetsDiff {
  return {
    cloneAllowed: diffOne(from.cloneAllowed, to.cloneAllowed),
    masked: diffOne(from.masked, to.masked),
  };
}

export function isEmptyDiff(d: NftSetsDiff): boolean {
  return (
    d.cloneAllowed.add.length === 0 &&
    d.cloneAllowed.remove.length === 0 &&
    d.masked.add.length === 0 &&
    d.masked.remove.length === 0
  );
}

/** What `net/applied/$VM` holds (JSON), per the contract. */
export interface AppliedRecord {
  generation: number;
  allowedCloneVifs: string[];
  droppedOriginalVifs: string[];
  problems?: string[];
}

export function appliedRecord(p: VmPlan & { generation: number }): AppliedRecord {
  const rec: AppliedRecord = {
    generation: p.generation,
    allowedCloneVifs: p.allowedCloneVifs,
    droppedOriginalVifs: p.droppedOriginalVifs,
  };
  if (p.problems.length > 0) rec.problems = p.problems;
  return rec;
}
