import type { XsWatch } from '../xenstore/types.js';
import { XenWaitTimeoutError } from './errors.js';
import { type DomId, XenbusState, releaseDomainWatch, xsPaths } from './paths.js';

/** What the waits need from a XenStore client (XsClient provides it). */
export interface XsWaitClient {
  tryRead(path: string): Promise<string | undefined>;
  watch(path: string, token: string): Promise<XsWatch> | XsWatch;
}

export interface WaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

let tokenSeq = 0;
const nextToken = (what: string) => `zynclone-xen-wait-${process.pid}-${++tokenSeq}-${what}`;

/**
 * Waits, by XenStore watches (no polling), until `check()` returns a value other
 * than undefined. `check` runs once after the watches are registered, then on each
 * event (and resync), so a change between registering and checking is not missed.
 */
export async function waitUntil<T>(
  xs: XsWaitClient,
  watchPaths: readonly string[],
  check: () => Promise<T | undefined>,
  what: string,
  opts: WaitOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const watches: XsWatch[] = [];
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    for (const p of watchPaths)
      watches.push(await xs.watch(p, nextToken(what.replace(/\W+/g, '-'))));
    const first = await check();
    if (first !== undefined) return first;

    const stop = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new XenWaitTimeoutError(what, timeoutMs)), timeoutMs);
      if (opts.signal) {
        onAbort = () => reject(opts.signal!.reason ?? new Error('aborted'));
        if (opts.signal.aborted) onAbort();
        else opts.signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    // Marked handled here; it is awaited through Promise.race below.
    stop.catch(() => {});
    const iterators = watches.map((w) => w[Symbol.asyncIterator]());
    const pending = new Map<number, Promise<{ i: number; done: boolean }>>();
    const pull = (i: number) =>
      pending.set(
        i,
        iterators[i]!.next().then((r) => ({ i, done: r.done === true })),
      );
    iterators.forEach((_, i) => pull(i));
    while (pending.size > 0) {
      const { i, done } = await Promise.race([...pending.values(), stop]);
      pending.delete(i);
      const v = await check();
      if (v !== undefined) return v;
      if (!done) pull(i);
    }
    throw new XenWaitTimeoutError(`${what} (the watches ended)`, timeoutMs);
  } finally {
    if (timer) clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
    await Promise.allSettled(watches.map((w) => w.close()));
  }
}

/** Resolves once `/local/domain/<domid>` is gone (watch on the node and on @releaseDomain). */
export async function waitForDomainGone(
  xs: XsWaitClient,
  domid: DomId,
  opts?: WaitOptions,
): Promise<void> {
  const path = xsPaths.domain(domid);
  await waitUntil(
    xs,
    [path, releaseDomainWatch],
    async () => ((await xs.tryRead(path)) === undefined ? true : undefined),
    `domain ${domid} to disappear from XenStore`,
    opts,
  );
}

/** Resolves once `/local/domain/<domid>` exists (e.g. after xl create). */
export async function waitForDomainPresent(
  xs: XsWaitClient,
  domid: DomId,
  opts?: WaitOptions,
): Promise<void> {
  const path = xsPaths.domain(domid);
  await waitUntil(
    xs,
    [path],
    async () => ((await xs.tryRead(path)) !== undefined ? true : undefined),
    `domain ${domid} to appear in XenStore`,
    opts,
  );
}

/**
 * Resolves with the state once `<deviceDir>/state` reaches `want` (default
 * Connected), e.g. a backend `/local/domain/0/backend/vif/<domid>/<devid>`.
 */
export async function waitForXenbusState(
  xs: XsWaitClient,
  deviceDir: string,
  want: XenbusState = XenbusState.Connected,
  opts?: WaitOptions,
): Promise<XenbusState> {
  const statePath = xsPaths.state(deviceDir);
  return waitUntil(
    xs,
    [statePath],
    async () => {
      const raw = await xs.tryRead(statePath);
      if (raw === undefined) return undefined;
      const n = Number(raw.trim());
      return n === want ? (n as XenbusState) : undefined;
    },
    `${statePath} to reach ${XenbusState[want]} (${want})`,
    opts,
  );
}

/** Resolves with the value once `path` exists and `accept(value)` holds. */
export async function waitForValue(
  xs: XsWaitClient,
  path: string,
  accept: (value: string) => boolean = () => true,
  opts?: WaitOptions,
): Promise<string> {
  return waitUntil(
    xs,
    [path],
    async () => {
      const v = await xs.tryRead(path);
      return v !== undefined && accept(v) ? v : undefined;
    },
    `${path}`,
    opts,
  );
}
