// The dom0 side of /tool/zynclone's permissions (docs/xenstore-contract.md,
// "Ownership and permissions"). Only clone_monitor sets them: the daemons in
// the network and console domains cannot, and must find their subtrees
// writable before they start.
import { type XsOps, type XsPerm, formatPerm, isXsErrno } from '../../xenstore/index.js';

import { ZC_ROOT } from '../../core/xenstore/layout.js';
export { ZC_ROOT };

export interface DomainIds {
  /** The network driver domain (0 on a plain Xen host). */
  readonly netdd: number;
  /** The console domain (0 on a plain Xen host). */
  readonly console: number;
}

/** `n0`, then `access<domid>` for each domain that is not dom0, without duplicates. */
export function permsFor(access: XsPerm['access'], domids: readonly number[]): XsPerm[] {
  const out: XsPerm[] = [{ domid: 0, access: 'none' }];
  for (const domid of domids) {
    if (domid === 0 || out.some((p) => p.domid === domid)) continue;
    out.push({ domid, access });
  }
  return out;
}

/** Each node of the layout with the permissions it must have. */
export function treeLayout(ids: DomainIds): { path: string; perms: XsPerm[] }[] {
  const readers = permsFor('read', [ids.netdd, ids.console]);
  const net = permsFor('both', [ids.netdd]);
  const cons = permsFor('both', [ids.console]);
  return [
    { path: ZC_ROOT, perms: readers },
    { path: `${ZC_ROOT}/vm`, perms: readers },
    { path: `${ZC_ROOT}/daemons`, perms: readers },
    { path: `${ZC_ROOT}/control`, perms: permsFor('none', []) },
    { path: `${ZC_ROOT}/net`, perms: net },
    { path: `${ZC_ROOT}/daemons/net-monitor`, perms: net },
    { path: `${ZC_ROOT}/console`, perms: cons },
    { path: `${ZC_ROOT}/daemons/console-monitor`, perms: cons },
  ];
}

export function formatPerms(perms: readonly XsPerm[]): string {
  return perms.map(formatPerm).join(' ');
}

/**
 * Creates the nodes that are missing and gives every node its permissions.
 * XenStore copies a parent's ACL to a child only when the child is created,
 * so when a node's ACL is wrong (first start, the netdd's domid changed,
 * someone tampered) its whole existing subtree is set too, except subtrees
 * that have their own entry in the layout. Idempotent; cheap when all is
 * right (one read per layout node). Run at start and on every full pass.
 */
export async function ensureTree(xs: XsOps, ids: DomainIds): Promise<void> {
  const layout = treeLayout(ids);
  const own = new Set(layout.map((l) => l.path));
  for (const { path, perms } of layout) {
    await xs.mkdir(path);
    const current = await xs.getPerms(path);
    if (formatPerms(current) === formatPerms(perms)) continue;
    await setPermsRecursive(xs, path, perms, own);
  }
}

async function setPermsRecursive(
  xs: XsOps,
  path: string,
  perms: readonly XsPerm[],
  skip: ReadonlySet<string>,
): Promise<void> {
  await xs.setPerms(path, perms);
  let children: string[];
  try {
    children = await xs.directory(path);
  } catch (err) {
    if (isXsErrno(err, 'ENOENT')) return;
    throw err;
  }
  for (const c of children) {
    const child = `${path}/${c}`;
    if (skip.has(child)) continue;
    await setPermsRecursive(xs, child, perms, skip);
  }
}
