/**
 * Per-domain limits of C xenstored (tools/xenstored/domain.c defaults).
 * Privileged connections (dom0) are never limited.
 */
export interface Quotas {
  /** Nodes a domain may own. */
  nodesPerDomain: number;
  /** Bytes in one node's value. */
  maxValueSize: number;
  /** Watches a domain may hold across its connections. */
  watchesPerDomain: number;
  /** Open transactions a domain may hold across its connections. */
  transactionsPerDomain: number;
  /** Permission entries on one node. */
  permsPerNode: number;
  /** Path length after the `/local/domain/<id>/` prefix. */
  maxPathLength: number;
  /** Requests of one connection read and not yet answered (quota-outstanding); more wait unread. */
  outstandingRequests: number;
  /** Watch events kept for a connection that does not read them; more are dropped. */
  queuedWatchEvents: number;
  /** Writes a second a domain may make (the write rate limit; 0 turns it off)... */
  writeRate: number;
  /** ...and at once. */
  writeBurst: number;
}

export const DEFAULT_QUOTAS: Readonly<Quotas> = Object.freeze({
  nodesPerDomain: 1000,
  maxValueSize: 2048,
  watchesPerDomain: 128,
  transactionsPerDomain: 10,
  permsPerNode: 5,
  maxPathLength: 2048,
  outstandingRequests: 20,
  queuedWatchEvents: 256,
  writeRate: 200,
  writeBurst: 10,
});

export function resolveQuotas(partial: Partial<Quotas> | undefined): Quotas {
  const q: Quotas = { ...DEFAULT_QUOTAS, ...(partial ?? {}) };
  for (const [key, value] of Object.entries(q)) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`xenstored quota ${key} must be a non-negative integer, got ${value}`);
    }
  }
  return q;
}
