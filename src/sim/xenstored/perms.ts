import { type XsPerm, formatPerm, parsePerm } from '../../xenstore/wire.js';
import { fail } from './errors.js';

export const PERM_READ = 1;
export const PERM_WRITE = 2;
export const PERM_OWNER = 8;
const ALL = PERM_READ | PERM_WRITE | PERM_OWNER;

/** Xen's DOMID_ANY: an ACL entry naming it matches every domain. */
export const DOMID_ANY = 0x7ff5;

/** Who is asking: a domain, possibly acting for a target (SET_TARGET), maybe privileged. */
export interface Principal {
  domid: number;
  privileged: boolean;
  target?: number | undefined;
}

function accessBits(perm: XsPerm): number {
  switch (perm.access) {
    case 'none':
      return 0;
    case 'read':
      return PERM_READ;
    case 'write':
      return PERM_WRITE;
    case 'both':
      return PERM_READ | PERM_WRITE;
  }
}

function matches(who: Principal, perm: XsPerm): boolean {
  return perm.domid === who.domid || perm.domid === who.target || perm.domid === DOMID_ANY;
}

/** perm_for_conn(): owners and tools get everything; else first matching entry; else the default. */
export function permFor(who: Principal, perms: readonly XsPerm[]): number {
  const owner = perms[0];
  if (who.privileged || !owner || matches(who, owner)) return ALL;
  for (let i = 1; i < perms.length; i++) {
    const p = perms[i]!;
    if (matches(who, p)) return accessBits(p);
  }
  return accessBits(owner);
}

export function formatPerms(perms: readonly XsPerm[]): Buffer {
  return Buffer.from(perms.map((p) => `${formatPerm(p)}\0`).join(''), 'utf8');
}

export function parsePerms(texts: readonly string[]): XsPerm[] {
  return texts.map((t) => {
    try {
      return parsePerm(t);
    } catch {
      return fail('EINVAL', `bad permission '${t}'`);
    }
  });
}
