// Comparing what XenStore holds under vm/$VM with what should be there.
import type { VmPublication } from '../../core/clones/publish.js';
import { type XsOps, isXsErrno } from '../../xenstore/index.js';

/** Subtrees of vm/$VM that publishVm does not own (clone_monitor's frontend report). */
export const UNPUBLISHED_CHILDREN = new Set(['frontend']);

/** Bounds the walk: a tampered subtree must not make the monitor read forever. */
const MAX_NODES = 2048;

/** Every leaf under `base` (relative path -> value), without `skip`ped children of `base`. */
export async function readLeaves(
  xs: XsOps,
  base: string,
  skip: ReadonlySet<string> = UNPUBLISHED_CHILDREN,
): Promise<Map<string, string> | undefined> {
  const out = new Map<string, string>();
  let seen = 0;
  const walk = async (rel: string): Promise<boolean> => {
    const path = rel === '' ? base : `${base}/${rel}`;
    let children: string[];
    try {
      children = await xs.directory(path);
    } catch (err) {
      if (isXsErrno(err, 'ENOENT')) return false;
      throw err;
    }
    if (++seen > MAX_NODES) throw new Error(`${base} has more than ${MAX_NODES} nodes`);
    if (rel === '') children = children.filter((c) => !skip.has(c));
    if (children.length === 0) {
      if (rel !== '') {
        const v = await xs.tryRead(path);
        if (v !== undefined) out.set(rel, v);
      }
      return true;
    }
    await Promise.all(children.map((c) => walk(rel === '' ? c : `${rel}/${c}`)));
    return true;
  };
  return (await walk('')) ? out : undefined;
}

/** The leaves publishVm writes for `pub`, without `generation`. */
export function expectedLeaves(pub: VmPublication): Map<string, string> {
  const m = new Map<string, string>();
  m.set('state', pub.state);
  m.set('clone-name', pub.cloneName);
  if (pub.cloneDomid !== undefined) m.set('clone-domid', String(pub.cloneDomid));
  if (pub.originalDomid !== undefined) m.set('original-domid', String(pub.originalDomid));
  m.set('clone-vif-mask', pub.cloneVifMask);
  m.set('original-vif-mask', pub.originalVifMask);
  for (const [dir, vifs] of [
    ['clone-vif', pub.cloneVifs],
    ['original-vif', pub.originalVifs],
  ] as const) {
    for (const v of vifs) {
      m.set(`${dir}/${v.devid}/name`, v.name);
      m.set(`${dir}/${v.devid}/masked`, v.masked ? '1' : '0');
    }
  }
  m.set('console/type', pub.console.type);
  m.set('console/enabled', pub.console.enabled ? '1' : '0');
  return m;
}

/** True if `actual` holds exactly `expected` plus a decimal `generation`. */
export function matchesPublication(
  actual: ReadonlyMap<string, string>,
  expected: ReadonlyMap<string, string>,
): boolean {
  const gen = actual.get('generation');
  if (gen === undefined || !/^[1-9][0-9]*$/.test(gen)) return false;
  if (actual.size !== expected.size + 1) return false;
  for (const [k, v] of expected) if (actual.get(k) !== v) return false;
  return true;
}

export function fingerprint(leaves: ReadonlyMap<string, string>): string {
  return JSON.stringify([...leaves].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function publicationKey(pub: VmPublication): string {
  return fingerprint(expectedLeaves(pub));
}
