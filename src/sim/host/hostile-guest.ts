// A hostile guest for tests and benchmarks of what reads guest-written
// XenStore (the lessons of CVE-2020-29487 and XSA-349): a deterministic
// stream of writes and removals aimed at a request node: binary and
// non-UTF-8 values, oversized ones, deep paths below the node, forged and
// repeated ids, requests naming other VMs or domains, JSON bombs, and floods
// of fresh well-formed requests.
import type { XsClient } from '../../xenstore/index.js';

export type HostileOp =
  | { readonly kind: 'write'; readonly path: string; readonly value: Buffer }
  | { readonly kind: 'rm'; readonly path: string };

/** xorshift32: the same seed gives the same stream on every run. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

/** `count` hostile operations on `node` (a path relative to the guest's home). */
export function* hostileOps(node: string, count: number, seed = 1): Generator<HostileOp> {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const w = (value: string | Buffer, path = node): HostileOp => ({
    kind: 'write',
    path,
    value: typeof value === 'string' ? Buffer.from(value, 'latin1') : value,
  });
  const kinds: (() => HostileOp)[] = [
    () => w(bytes(int(300))),
    () => w(Buffer.concat([Buffer.from('h1 status '), bytes(1 + int(8))])),
    () => w(Buffer.from(`h${int(1e6)} create kind=memory é`, 'utf8')),
    () => w('A'.repeat(257 + int(1700))),
    () => w(`${pick(['../1', '/local/domain/0', 'a/b', 'x'.repeat(41), '', ' '])} create`),
    () => w(`h${int(1e9)} create vm=${pick(['db01', 'Domain-0', '../db01'])}`),
    () => w(`h${int(1e9)} status domid=${int(10)}`),
    () => w(`h${int(1e9)} ${pick(['create', 'remove', 'start', 'stop', 'status'])}`),
    () => w('h-repeated status'),
    () => w(`${'{"a":['.repeat(120)}1${']}'.repeat(120)}`),
    () => w(`h${int(1e9)} create ${'kind=memory '.repeat(int(20))}`),
    () => w('x', `${node}/${Array.from({ length: 1 + int(12) }, () => `d${int(10)}`).join('/')}`),
    () => ({ kind: 'rm', path: node }),
  ];
  for (let i = 0; i < count; i++) yield pick(kinds)();
}

export interface FloodResult {
  readonly ops: number;
  /** Refused by xenstored (quota, permissions, limits): expected for many. */
  readonly refused: number;
}

/**
 * Sends `ops` through `xs` (the guest's own connection), `window` at a time,
 * until `until()` is true or the ops run out; errors are counted, not thrown.
 */
export async function flood(
  xs: XsClient,
  ops: Iterable<HostileOp>,
  window = 32,
  until: () => boolean = () => false,
): Promise<FloodResult> {
  const it = ops[Symbol.iterator]();
  let done = 0;
  let refused = 0;
  const worker = async () => {
    for (;;) {
      if (until()) return;
      const next = it.next();
      if (next.done) return;
      const op = next.value;
      try {
        if (op.kind === 'write') await xs.write(op.path, op.value);
        else await xs.rm(op.path);
      } catch {
        refused++;
      }
      done++;
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  return { ops: done, refused };
}

/**
 * Registers up to `count` watches on paths under `paths` (xenstored's watch
 * quota stops it first), so that every write fires many events back.
 */
export async function watchFlood(xs: XsClient, paths: readonly string[], count: number) {
  const watches = [];
  for (let i = 0; i < count; i++) {
    try {
      const w = await xs.watch(paths[i % paths.length]!);
      // Drain so the client's own queue never matters.
      void (async () => {
        for await (const _ of w);
      })().catch(() => {});
      watches.push(w);
    } catch {
      break;
    }
  }
  return watches;
}
