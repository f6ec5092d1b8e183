import { PERM_READ, type Principal, permFor } from './perms.js';
import { type ChangeEvent, eventMatches } from './tree.js';

export interface Watch {
  /** Canonical (absolute or `@special`) path. */
  path: string;
  token: string;
  /** Characters to strip from event paths: set when registered with a relative path. */
  prefixLength: number;
}

/**
 * watch_permitted() of C xenstored: the watcher must be able to read the node
 * or its parent; on a permission change the old permissions count too.
 */
export function watchPermitted(who: Principal, event: ChangeEvent): boolean {
  if (event.oldPerms && permFor(who, event.oldPerms) & PERM_READ) return true;
  if (event.perms && permFor(who, event.perms) & PERM_READ) return true;
  if (event.parentPerms && permFor(who, event.parentPerms) & PERM_READ) return true;
  return false;
}

/** The event paths one connection's watches report for an event, in registration order. */
export function matchingWatches(watches: readonly Watch[], event: ChangeEvent): Watch[] {
  return watches.filter((w) => eventMatches(event, w.path));
}

export function reportedPath(watch: Watch, path: string): string {
  return path.slice(watch.prefixLength);
}
