/**
 * The net monitor's nftables table, as `nft -f` scripts. One script is one
 * nftables transaction: the kernel applies all of it or none of it, and a
 * packet sees either the old or the new ruleset, never a mix.
 *
 * The same table name exists in three families, because no single family sees
 * every frame of a vif:
 * - bridge: frames entering a bridge port (prerouting, both forwarded and
 *   delivered to the network domain itself) and leaving one (postrouting,
 *   both forwarded and sent by the network domain);
 * - inet: IPv4/IPv6 on a vif that is not (or not yet) a bridge port, e.g. one
 *   with an address of its own in the network domain;
 * - arp: ARP on such a vif (the inet family does not see ARP).
 * Each family gets the same two sets and the same four rules; a set lookup is
 * a hash lookup, so the cost per packet does not grow with the number of vifs.
 *
 * Rules (per family, `in` = iifname at the ingress hook, `out` = oifname at
 * the egress hook):
 *   in  "zcv*" != @clone_allowed drop      standing rule: clone vifs are born locked
 *   in  @masked drop                        the originals' masked vifs
 * and the same with `out`.
 */
import { ZynCloneError } from '../../errors/index.js';
import { type NftSets, type NftSetsDiff, isValidIfname, isValidVifPrefix } from './nft-plan.js';

export const NFT_FAMILIES = ['bridge', 'inet', 'arp'] as const;
export type NftFamily = (typeof NFT_FAMILIES)[number];

const HOOKS: Record<NftFamily, { in: string; out: string }> = {
  bridge: { in: 'prerouting', out: 'postrouting' },
  inet: { in: 'prerouting', out: 'postrouting' },
  arp: { in: 'input', out: 'output' },
};

/**
 * Before every other hook of the same kind (raw / dstnat is -300), so a
 * locked frame creates no conntrack entry and no other table sees it. A drop
 * is final whatever other tables say, so this is about cost, not correctness.
 */
export const NFT_PRIORITY = -300;

export const SET_CLONE_ALLOWED = 'clone_allowed';
export const SET_MASKED = 'masked';
const CHAIN_IN = 'vif_in';
const CHAIN_OUT = 'vif_out';

export interface NftTableSpec {
  table: string;
  cloneVifPrefix: string;
}

export class NftScriptError extends ZynCloneError<'NFT_SCRIPT_INVALID'> {
  constructor(message: string) {
    super('NFT_SCRIPT_INVALID', message);
  }
}

const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

export function checkTableSpec(spec: NftTableSpec): void {
  if (!TABLE_NAME.test(spec.table)) {
    throw new NftScriptError(
      `invalid nftables table name ${JSON.stringify(spec.table)}: use a letter then letters, digits or _ (at most 32)`,
    );
  }
  if (!isValidVifPrefix(spec.cloneVifPrefix)) {
    throw new NftScriptError(
      `invalid clone vif prefix ${JSON.stringify(spec.cloneVifPrefix)}: use 1-14 of A-Z a-z 0-9 _ . @ + -`,
    );
  }
}

function quoted(names: readonly string[]): string {
  for (const n of names) {
    // The planner never lets an invalid name through; this guards the script syntax itself.
    if (!isValidIfname(n)) throw new NftScriptError(`refusing interface name ${JSON.stringify(n)}`);
  }
  return names.map((n) => `"${n}"`).join(', ');
}

function elements(
  verb: 'add' | 'delete',
  family: NftFamily,
  table: string,
  set: string,
  names: readonly string[],
): string[] {
  if (names.length === 0) return [];
  return [`${verb} element ${family} ${table} ${set} { ${quoted(names)} }`];
}

/**
 * Creates the table if missing, or brings an existing one back to exactly
 * this content, in one transaction. Existing sets and chains are flushed and
 * refilled inside the transaction, so a packet never sees them empty; the
 * table itself is never deleted, so a restart never opens a gap.
 */
export function renderReconcileScript(
  spec: NftTableSpec,
  sets: NftSets,
  families: readonly NftFamily[] = NFT_FAMILIES,
): string {
  checkTableSpec(spec);
  const { table, cloneVifPrefix } = spec;
  const prefixMatch = `"${cloneVifPrefix}*"`;
  const lines: string[] = [];
  for (const family of families) {
    const hooks = HOOKS[family];
    const t = `${family} ${table}`;
    lines.push(
      `add table ${t}`,
      `add set ${t} ${SET_CLONE_ALLOWED} { type ifname; }`,
      `add set ${t} ${SET_MASKED} { type ifname; }`,
      `add chain ${t} ${CHAIN_IN} { type filter hook ${hooks.in} priority ${NFT_PRIORITY}; policy accept; }`,
      `add chain ${t} ${CHAIN_OUT} { type filter hook ${hooks.out} priority ${NFT_PRIORITY}; policy accept; }`,
      `flush chain ${t} ${CHAIN_IN}`,
      `flush chain ${t} ${CHAIN_OUT}`,
      `flush set ${t} ${SET_CLONE_ALLOWED}`,
      `flush set ${t} ${SET_MASKED}`,
      `add rule ${t} ${CHAIN_IN} iifname ${prefixMatch} iifname != @${SET_CLONE_ALLOWED} counter drop`,
      `add rule ${t} ${CHAIN_IN} iifname @${SET_MASKED} counter drop`,
      `add rule ${t} ${CHAIN_OUT} oifname ${prefixMatch} oifname != @${SET_CLONE_ALLOWED} counter drop`,
      `add rule ${t} ${CHAIN_OUT} oifname @${SET_MASKED} counter drop`,
      ...elements('add', family, table, SET_CLONE_ALLOWED, sets.cloneAllowed),
      ...elements('add', family, table, SET_MASKED, sets.masked),
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Creates the table, with empty sets, in the families where it is missing;
 * the caller leaves the others exactly as they are. Run at start-up before
 * XenStore is reached, so clone vifs are dropped even while the monitor cannot
 * tell which to allow, and the last applied lockdown of a previous run holds.
 */
export function renderCreateScript(spec: NftTableSpec, missing: readonly NftFamily[]): string {
  if (missing.length === 0) return '';
  return renderReconcileScript(spec, { cloneAllowed: [], masked: [] }, missing);
}

/** The element changes only; '' when there is nothing to do. */
export function renderDiffScript(spec: NftTableSpec, diff: NftSetsDiff): string {
  checkTableSpec(spec);
  const lines: string[] = [];
  for (const family of NFT_FAMILIES) {
    lines.push(
      ...elements('delete', family, spec.table, SET_CLONE_ALLOWED, diff.cloneAllowed.remove),
      ...elements('delete', family, spec.table, SET_MASKED, diff.masked.remove),
      ...elements('add', family, spec.table, SET_MASKED, diff.masked.add),
      ...elements('add', family, spec.table, SET_CLONE_ALLOWED, diff.cloneAllowed.add),
    );
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}
