/**
 * Our XenStore client against the real daemons: C xenstored in the first
 * boot, oxenstored in the second. Socket and /dev/xen/xenbus transports;
 * read/write/directory/permissions, a transaction that really conflicts,
 * watches, and @introduceDomain/@releaseDomain around a real guest.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { XsClient } from '../../src/xenstore/client.js';
import { isXsErrno } from '../../src/xenstore/errors.js';
import type { WatchItem, XsWatch } from '../../src/xenstore/types.js';
import {
  destroyQuietly,
  domainByName,
  waitFor,
  writeGuestConfig,
  xl,
} from '../runner/dom0-tools.js';
import type { Scenario, ScenarioContext } from '../runner/types.js';

/** Collects a watch's items in the background so waits never steal events. */
class WatchLog {
  readonly items: WatchItem[] = [];
  private readonly done: Promise<void>;
  constructor(readonly watch: XsWatch) {
    this.done = (async () => {
      for await (const item of watch) this.items.push(item);
    })().catch(() => {});
  }
  paths(): string[] {
    return this.items.flatMap((i) => (i.kind === 'event' ? [i.path] : []));
  }
  async waitPath(path: string, ctx: ScenarioContext, from = 0): Promise<number> {
    return waitFor(
      `a watch event for ${path} on ${this.watch.path}`,
      () => {
        const idx = this.paths().indexOf(path, from);
        return idx >= 0 ? idx : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, signal: ctx.signal },
    );
  }
  async close(): Promise<void> {
    await this.watch.close();
    await this.done;
  }
}

async function basicOps(xs: XsClient, base: string, ctx: ScenarioContext): Promise<void> {
  assert.equal(await xs.read('/local/domain/0/name'), 'Domain-0');
  await xs.write(`${base}/a`, 'one');
  await xs.write(`${base}/b`, Buffer.from('two'));
  await xs.mkdir(`${base}/dir`);
  assert.equal(await xs.read(`${base}/a`), 'one');
  assert.deepEqual((await xs.directory(base)).sort(), ['a', 'b', 'dir']);
  assert.equal(await xs.tryRead(`${base}/missing`), undefined);
  await assert.rejects(xs.read(`${base}/missing`), (e) => isXsErrno(e, 'ENOENT'));
  await xs.rm(`${base}/b`);
  assert.deepEqual((await xs.directory(base)).sort(), ['a', 'dir']);
  ctx.log(`basic ops ok under ${base}`);
}

async function permissions(xs: XsClient, base: string, ctx: ScenarioContext): Promise<void> {
  const node = `${base}/perm`;
  await xs.write(node, 'p');
  const perms = [
    { domid: 0, access: 'none' as const },
    { domid: 7, access: 'read' as const },
    { domid: 9, access: 'write' as const },
  ];
  await xs.setPerms(node, perms);
  assert.deepEqual(await xs.getPerms(node), perms);
  // Children inherit the parent's permissions when created.
  await xs.write(`${node}/child`, 'c');
  assert.deepEqual(await xs.getPerms(`${node}/child`), perms);
  ctx.log('permissions ok');
}

async function conflict(
  a: XsClient,
  b: XsClient,
  base: string,
  ctx: ScenarioContext,
): Promise<void> {
  const key = `${base}/counter`;
  await a.write(key, '0');
  const tx = await a.startTransaction();
  const seen = await tx.read(key);
  await b.write(key, 'from-b');
  await tx.write(key, String(Number(seen) + 1));
  await assert.rejects(
    tx.commit(),
    (e) => isXsErrno(e, 'EAGAIN'),
    'commit after a conflicting write',
  );
  assert.equal(await a.read(key), 'from-b', 'the conflicting transaction left no trace');

  let attempts = 0;
  const result = await a.transaction(async (t) => {
    attempts++;
    const v = await t.read(key);
    if (attempts === 1) await b.write(key, 'again-from-b');
    await t.write(key, `${v}+tx`);
    return v;
  });
  assert.equal(attempts, 2, 'the helper retried once after EAGAIN');
  assert.equal(result, 'again-from-b');
  assert.equal(await a.read(key), 'again-from-b+tx');
  ctx.note('tx_conflict', 'EAGAIN');
  ctx.log('transaction conflict ok');
}

async function watches(
  a: XsClient,
  b: XsClient,
  base: string,
  ctx: ScenarioContext,
): Promise<void> {
  const path = `${base}/watched`;
  await a.write(path, '');
  const w = new WatchLog(await a.watch(path, `zc-lane-${ctx.xenstored}`));
  try {
    await w.waitPath(path, ctx);
    const from = w.paths().length;
    await b.write(`${path}/child`, 'x');
    await w.waitPath(`${path}/child`, ctx, from);
  } finally {
    await w.close();
  }
  ctx.log('watch ok');
}

async function domainEvents(xs: XsClient, ctx: ScenarioContext): Promise<void> {
  const intro = new WatchLog(await xs.watch('@introduceDomain'));
  const release = new WatchLog(await xs.watch('@releaseDomain'));
  const name = 'zc-xs1';
  try {
    // Special watches fire once on registration, too.
    await intro.waitPath('@introduceDomain', ctx);
    await release.waitPath('@releaseDomain', ctx);
    const i0 = intro.paths().length;
    const r0 = release.paths().length;
    const cfg = await writeGuestConfig(ctx.workDir, { name });
    await xl(['create', cfg], { timeoutMs: 90_000, log: ctx.log });
    await intro.waitPath('@introduceDomain', ctx, i0);
    const dom = await domainByName(name);
    assert.ok(dom, `${name} not listed`);
    assert.equal(await xs.getDomainPath(dom.domid), `/local/domain/${dom.domid}`);
    assert.equal(await xs.isDomainIntroduced(dom.domid), true);
    assert.equal(await xs.read(`/local/domain/${dom.domid}/name`), name);
    await xl(['destroy', name], { timeoutMs: 60_000, log: ctx.log });
    await release.waitPath('@releaseDomain', ctx, r0);
    await waitFor(
      `/local/domain/${dom.domid} to disappear`,
      async () =>
        (await xs.tryRead(`/local/domain/${dom.domid}/name`)) === undefined ? true : undefined,
      { timeoutMs: 30_000, signal: ctx.signal },
    );
    ctx.log(`@introduceDomain and @releaseDomain seen for domid ${dom.domid}`);
  } finally {
    await destroyQuietly(name, ctx.log);
    await intro.close();
    await release.close();
  }
}

const scenario: Scenario = {
  name: 'xenstore-client',
  title: 'XenStore client against xenstored and oxenstored (socket and xenbus)',
  timeoutMs: 180_000,
  xenstoreds: ['xenstored', 'oxenstored'],
  async run(ctx) {
    const tag = randomBytes(4).toString('hex');
    const root = `/tool/zc-lane-${tag}`;
    const a = await XsClient.connect({ transport: 'socket' });
    const b = await XsClient.connect({ transport: 'socket' });
    const bus = await XsClient.connect({ transport: 'xenbus' });
    try {
      assert.equal(a.transportKind, 'socket');
      assert.equal(bus.transportKind, 'xenbus');
      await basicOps(a, `${root}/socket`, ctx);
      await permissions(a, `${root}/socket`, ctx);
      await conflict(a, b, `${root}/socket`, ctx);
      await watches(a, b, `${root}/socket`, ctx);
      // The same through the kernel's xenbus device.
      await basicOps(bus, `${root}/xenbus`, ctx);
      await conflict(bus, a, `${root}/xenbus`, ctx);
      await watches(bus, a, `${root}/xenbus`, ctx);
      await domainEvents(a, ctx);
      ctx.note('transports', 'socket+xenbus');
    } finally {
      await a.rm(root).catch(() => {});
      await Promise.all([a.close(), b.close(), bus.close()]);
    }
  },
};

export default scenario;
