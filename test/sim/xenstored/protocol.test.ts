import { existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { XsType, encodeFrame } from '../../../src/xenstore/wire.js';
import { RawClient, type TestServer, startTestServer } from './helpers.js';

let ts: TestServer;
const clients: RawClient[] = [];

beforeEach(async () => {
  ts = await startTestServer();
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await ts.stop();
});

async function connect(socket = ts.socketPath): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  clients.push(c);
  return c;
}

async function guest(domid: number, admin: RawClient): Promise<RawClient> {
  if (!existsSync(ts.server.domainSocketPath(domid))) {
    await admin.call(XsType.INTRODUCE, `${domid}\x00123\0${domid + 1}\0`);
  }
  return connect(ts.server.domainSocketPath(domid));
}

/** Waits until `c` has received exactly these events (in order), then clears them. */
async function expectEvents(c: RawClient, want: Array<[string, string]>): Promise<void> {
  await c.waitFor(() => (c.events.length >= want.length ? true : undefined), 'watch events');
  // One round trip more, so that an unexpected extra event would have arrived too.
  await c.call(XsType.GET_DOMAIN_PATH, '0\0');
  expect(c.events.map((e) => [e.path, e.token])).toEqual(want);
  c.events.length = 0;
}

describe('payload encoding', () => {
  it('answers like C xenstored', async () => {
    const c = await connect();
    expect((await c.call(XsType.WRITE, '/p/v\0bin\0ary\xff')).toString('latin1')).toBe('OK\0');
    expect((await c.call(XsType.READ, '/p/v\0')).toString('latin1')).toBe('bin\0ary\xff');
    await c.write('/p/w', '');
    expect((await c.call(XsType.DIRECTORY, '/p\0')).toString()).toBe('v\0w\0');
    expect((await c.call(XsType.DIRECTORY, '/p/v\0')).length).toBe(0);
    expect((await c.call(XsType.GET_PERMS, '/p\0')).toString()).toBe('n0\0');
    expect((await c.call(XsType.GET_DOMAIN_PATH, '7\0')).toString()).toBe('/local/domain/7\0');
    expect((await c.call(XsType.IS_DOMAIN_INTRODUCED, '7\0')).toString()).toBe('F\0');
    expect((await c.call(XsType.IS_DOMAIN_INTRODUCED, '0\0')).toString()).toBe('T\0');
    const tx = (await c.call(XsType.TRANSACTION_START, '\0')).toString();
    expect(tx).toMatch(/^[1-9]\d*\0$/);
    const reply = await c.request(XsType.READ, '/p/v\0', Number.parseInt(tx, 10));
    expect(reply.txId).toBe(Number.parseInt(tx, 10));
    expect(await c.errno(XsType.READ, '/nope\0')).toBe('ENOENT');
  });

  it('pages a directory with DIRECTORY_PART', async () => {
    const c = await connect();
    const names = Array.from({ length: 600 }, (_, i) => `child-number-${i}`);
    for (const n of names) await c.write(`/big/${n}`, '');
    expect(await c.errno(XsType.DIRECTORY, '/big\0')).toBe('E2BIG');
    const got: string[] = [];
    let gen: string | undefined;
    let offset = 0;
    for (;;) {
      const part = (await c.call(XsType.DIRECTORY_PART, `/big\0${offset}\0`)).toString();
      const [g, ...rest] = part.split('\0');
      gen ??= g;
      expect(g).toBe(gen);
      // The list is complete when it ends with an empty string.
      const complete = part.endsWith('\0\0');
      const chunk = rest.filter((x) => x !== '');
      expect(chunk.length).toBeGreaterThan(0);
      got.push(...chunk);
      // The offset counts bytes of the NUL-separated child list.
      offset += chunk.reduce((n, x) => n + x.length + 1, 0);
      if (complete) break;
    }
    expect(got).toEqual(names);
    await c.write('/big/one-more', '');
    const after = (await c.call(XsType.DIRECTORY_PART, '/big\x00999999\0')).toString();
    expect(after.split('\0')[0]).not.toBe(gen);
    expect(after.endsWith('\0\0')).toBe(true);
  });
});

describe('tree semantics', () => {
  it('creates parents, removes subtrees, and treats rm of a missing leaf as done', async () => {
    const c = await connect();
    await c.call(XsType.MKDIR, '/m/n/o\0');
    expect(await c.directory('/m/n')).toEqual(['o']);
    expect(await c.errno(XsType.RM, '/m/n/missing\0')).toBe('OK');
    expect(await c.errno(XsType.RM, '/m/nothing/missing\0')).toBe('ENOENT');
    expect(await c.errno(XsType.RM, '/m\0')).toBe('OK');
    expect(await c.errno(XsType.READ, '/m/n/o\0')).toBe('ENOENT');
    expect(await c.errno(XsType.RM, '/\0')).toBe('EINVAL');
  });

  it('rejects bad paths and argument counts with EINVAL', async () => {
    const c = await connect();
    for (const p of ['/a//b', '/a/', '/a b', '/a\x01', '@foo', '']) {
      expect(await c.errno(XsType.READ, `${p}\0`)).toBe('EINVAL');
    }
    expect(await c.errno(XsType.READ, '/a')).toBe('EINVAL');
    expect(await c.errno(XsType.READ, '/a\0/b\0')).toBe('EINVAL');
    expect(await c.errno(XsType.WRITE, '/nonul')).toBe('EINVAL');
    expect(await c.errno(XsType.WATCH, '/a\0')).toBe('EINVAL');
    expect(await c.errno(XsType.TRANSACTION_END, 'X\0', 0)).toBe('EINVAL');
    expect(await c.errno(XsType.TRANSACTION_END, 'T\0', 0)).toBe('ENOENT');
    expect(await c.errno(XsType.READ, '/a\0', 4242)).toBe('ENOENT');
    expect(await c.errno(XsType.SET_PERMS, '/local\0q1\0')).toBe('EINVAL');
    expect(await c.errno(XsType.READ, `/${'x'.repeat(3000)}\0`)).toBe('EINVAL');
  });

  it('answers unknown operations with ENOSYS and keeps the connection', async () => {
    const c = await connect();
    expect(await c.errno(99, '/a\0')).toBe('ENOSYS');
    expect(await c.errno(XsType.WATCH_EVENT, '/a\0t\0')).toBe('ENOSYS');
    expect(await c.errno(XsType.ERROR, 'EINVAL\0')).toBe('ENOSYS');
    expect((await c.call(XsType.GET_DOMAIN_PATH, '1\0')).toString()).toBe('/local/domain/1\0');
  });

  it('drops only the client that announces an oversized frame', async () => {
    const bad = await connect();
    const good = await connect();
    const header = encodeFrame({ type: XsType.READ, reqId: 1, txId: 0, payload: Buffer.alloc(0) });
    header.writeUInt32LE(5000, 12);
    bad.sendRaw(header);
    await bad.waitFor(() => (bad.closed ? true : undefined), 'the server to close the connection');
    expect(await good.directory('/tool')).toEqual(['xenstored']);
  });
});

describe('permissions', () => {
  it('inherits parent permissions and gives a guest ownership of what it creates', async () => {
    const admin = await connect();
    await admin.write('/local/domain/3/data/x', '');
    await admin.call(XsType.SET_PERMS, '/local/domain/3/data\0n0\0b3\0r4\0');
    await admin.write('/local/domain/3/data/from-dom0/leaf', 'v');
    expect(
      (await admin.call(XsType.GET_PERMS, '/local/domain/3/data/from-dom0/leaf\0')).toString(),
    ).toBe('n0\0b3\0r4\0');
    const g = await guest(3, admin);
    await g.write('data/mine/deep', 'g');
    expect((await admin.call(XsType.GET_PERMS, '/local/domain/3/data/mine\0')).toString()).toBe(
      'n3\0b3\0r4\0',
    );
    // An owner may change the ACL but not give the node away.
    expect(await g.errno(XsType.SET_PERMS, 'data/mine\0n3\0r5\0')).toBe('OK');
    expect(await g.errno(XsType.SET_PERMS, 'data/mine\0n5\0')).toBe('EPERM');
    // Not the owner of data itself (b3 grants read/write only).
    expect(await g.errno(XsType.SET_PERMS, 'data\0n3\0')).toBe('EACCES');
    expect(await g.errno(XsType.WRITE, '/local/domain/4/x\0v')).toBe('EACCES');
    expect(await g.errno(XsType.MKDIR, '/tool/x\0')).toBe('EACCES');
    expect(await g.errno(XsType.RM, '/tool/xenstored\0')).toBe('EACCES');
    expect(await g.errno(XsType.DIRECTORY, '/\0')).toBe('EACCES');
    expect(await g.errno(XsType.IS_DOMAIN_INTRODUCED, '3\0')).toBe('EACCES');
  });

  it('delivers watch events only to watchers that may read the node', async () => {
    const admin = await connect();
    await admin.write('/local/domain/8/data/open', '');
    await admin.call(XsType.SET_PERMS, '/local/domain/8/data\0n0\0r8\0');
    const g = await guest(8, admin);
    await g.call(XsType.WATCH, '/local/domain/8\0tok\0');
    await expectEvents(g, [['/local/domain/8', 'tok']]);
    await admin.write('/local/domain/8/hidden', 'secret');
    await admin.write('/local/domain/8/data/open', 'visible');
    await expectEvents(g, [['/local/domain/8/data/open', 'tok']]);
  });
});

describe('domains', () => {
  it('lets a domain act for its SET_TARGET target, and RESET_WATCHES clears watches and transactions', async () => {
    const admin = await connect();
    await admin.write('/local/domain/12/device-model', 'state');
    await admin.call(XsType.SET_PERMS, '/local/domain/12/device-model\0n12\0');
    const dm = await guest(11, admin);
    await guest(12, admin);
    expect(await dm.errno(XsType.READ, '/local/domain/12/device-model\0')).toBe('EACCES');
    expect(await admin.errno(XsType.SET_TARGET, '11\x0012\0')).toBe('OK');
    expect(await dm.read('/local/domain/12/device-model')).toBe('state');
    expect(await admin.errno(XsType.SET_TARGET, '11\x0099\0')).toBe('ENOENT');
    expect(await dm.errno(XsType.SET_TARGET, '11\x0012\0')).toBe('EACCES');

    await dm.call(XsType.WATCH, '/local/domain/12\0w\0');
    const tx = Number.parseInt((await dm.call(XsType.TRANSACTION_START, '\0')).toString(), 10);
    expect(await dm.errno(XsType.RESET_WATCHES, '')).toBe('OK');
    expect(await dm.errno(XsType.READ, '/local/domain/12/device-model\0', tx)).toBe('ENOENT');
    dm.events.length = 0;
    await admin.write('/local/domain/12/device-model', 'changed');
    await expectEvents(dm, []);
  });
});

describe('watches', () => {
  it('fires for the node, its descendants and the removal of an ancestor', async () => {
    const c = await connect();
    await c.write('/a/b/c', '1');
    const w = await connect();
    await w.call(XsType.WATCH, '/a/b\0T1\0');
    await expectEvents(w, [['/a/b', 'T1']]);
    await c.write('/a/b/c', '2');
    await c.write('/a/other', 'x');
    await expectEvents(w, [['/a/b/c', 'T1']]);
    await c.call(XsType.RM, '/a\0');
    await expectEvents(w, [['/a/b', 'T1']]);
    await c.call(XsType.SET_PERMS, '/local\0n0\0r1\0');
    expect(await w.errno(XsType.WATCH, '/a/b\0T1\0')).toBe('EEXIST');
    expect(await w.errno(XsType.UNWATCH, '/a/b\0T1\0')).toBe('OK');
    expect(await w.errno(XsType.UNWATCH, '/a/b\0T1\0')).toBe('ENOENT');
    await c.write('/a/b', 'again');
    await expectEvents(w, []);
  });

  it('reports relative paths for relative watches and fires special watches', async () => {
    const admin = await connect();
    await admin.call(XsType.WATCH, '@introduceDomain\0intro\0');
    await admin.call(XsType.WATCH, '@releaseDomain\0rel\0');
    await expectEvents(admin, [
      ['@introduceDomain', 'intro'],
      ['@releaseDomain', 'rel'],
    ]);
    await admin.write('/local/domain/9/data/x', '');
    await admin.call(XsType.SET_PERMS, '/local/domain/9\0n9\0');
    await admin.call(XsType.SET_PERMS, '/local/domain/9/data/x\0n9\0');
    const g = await guest(9, admin);
    await expectEvents(admin, [['@introduceDomain', 'intro']]);
    await g.call(XsType.WATCH, 'data\0rel-tok\0');
    await g.call(XsType.WATCH, '@introduceDomain\0gi\0');
    await expectEvents(g, [
      ['data', 'rel-tok'],
      ['@introduceDomain', 'gi'],
    ]);
    await admin.write('/local/domain/9/data/x', 'y');
    await expectEvents(g, [['data/x', 'rel-tok']]);
    // Only privileged watchers hear about other domains arriving.
    await admin.call(XsType.INTRODUCE, '10\0\x31\0\x31\0');
    await expectEvents(admin, [['@introduceDomain', 'intro']]);
    await expectEvents(g, []);

    // Release closes the guest's connections and socket and removes its watches.
    expect(await admin.errno(XsType.RELEASE, '9\0')).toBe('OK');
    await expectEvents(admin, [['@releaseDomain', 'rel']]);
    await g.waitFor(() => (g.closed ? true : undefined), 'guest connection to close');
    expect(existsSync(ts.server.domainSocketPath(9))).toBe(false);
    expect((await admin.call(XsType.IS_DOMAIN_INTRODUCED, '9\0')).toString()).toBe('F\0');
    // Its nodes pass to dom0.
    expect((await admin.call(XsType.GET_PERMS, '/local/domain/9\0')).toString()).toBe('n0\0');
    expect(await admin.errno(XsType.RELEASE, '9\0')).toBe('ENOENT');
    expect(await admin.errno(XsType.RELEASE, '0\0')).toBe('EINVAL');
    expect(await admin.errno(XsType.INTRODUCE, 'x\0\x31\0\x31\0')).toBe('EINVAL');
  });
});

describe('transactions', () => {
  it('isolates writes until commit and fires watches only then', async () => {
    const a = await connect();
    const w = await connect();
    await a.write('/t/x', 'old');
    await w.call(XsType.WATCH, '/t\0tw\0');
    await expectEvents(w, [['/t', 'tw']]);
    const tx = Number.parseInt((await a.call(XsType.TRANSACTION_START, '\0')).toString(), 10);
    await a.write('/t/x', 'new', tx);
    await a.write('/t/y/z', 'fresh', tx);
    expect(await a.read('/t/x', tx)).toBe('new');
    expect(await a.read('/t/x')).toBe('old');
    expect(await a.errno(XsType.READ, '/t/y/z\0')).toBe('ENOENT');
    expect(await a.errno(XsType.TRANSACTION_START, '\0', tx)).toBe('EBUSY');
    await expectEvents(w, []);
    expect(await a.errno(XsType.TRANSACTION_END, 'T\0', tx)).toBe('OK');
    expect(await a.read('/t/y/z')).toBe('fresh');
    await expectEvents(w, [
      ['/t/x', 'tw'],
      ['/t/y/z', 'tw'],
    ]);
    expect(await a.errno(XsType.READ, '/t/x\0', tx)).toBe('ENOENT');
  });

  it('fails the commit with EAGAIN on a conflict and discards an aborted transaction', async () => {
    const a = await connect();
    const b = await connect();
    await a.write('/c/x', '0');
    const tx = Number.parseInt((await a.call(XsType.TRANSACTION_START, '\0')).toString(), 10);
    expect(await a.read('/c/x', tx)).toBe('0');
    await b.write('/c/x', '1');
    await a.write('/c/y', 'from-tx', tx);
    expect(await a.errno(XsType.TRANSACTION_END, 'T\0', tx)).toBe('EAGAIN');
    expect(await a.errno(XsType.READ, '/c/y\0')).toBe('ENOENT');

    const tx2 = Number.parseInt((await a.call(XsType.TRANSACTION_START, '\0')).toString(), 10);
    await a.write('/c/z', 'never', tx2);
    expect(await a.errno(XsType.TRANSACTION_END, 'F\0', tx2)).toBe('OK');
    expect(await a.errno(XsType.READ, '/c/z\0')).toBe('ENOENT');

    // Creating a node that someone else created meanwhile conflicts too.
    const tx3 = Number.parseInt((await a.call(XsType.TRANSACTION_START, '\0')).toString(), 10);
    expect(await a.errno(XsType.READ, '/c/new\0', tx3)).toBe('ENOENT');
    await b.write('/c/new', 'b');
    await a.write('/c/new', 'a', tx3);
    expect(await a.errno(XsType.TRANSACTION_END, 'T\0', tx3)).toBe('EAGAIN');
    expect(await a.read('/c/new')).toBe('b');
  });

  it('keeps the value a transaction first saw or wrote after a write outside it, then fails the commit', async () => {
    const a = await connect();
    const b = await connect();
    await a.write('/s/read', 'before');
    await a.write('/s/written', 'before');
    const tx = Number.parseInt((await a.call(XsType.TRANSACTION_START, '\0')).toString(), 10);
    expect(await a.read('/s/read', tx)).toBe('before');
    await a.write('/s/written', 'tx', tx);
    expect(await a.errno(XsType.READ, '/s/absent\0', tx)).toBe('ENOENT');
    const listed = (await a.call(XsType.DIRECTORY, '/s\0', tx)).toString();

    await b.write('/s/read', 'outside');
    await b.write('/s/written', 'outside');
    await b.write('/s/absent', 'outside');

    expect(await a.read('/s/read', tx)).toBe('before');
    expect(await a.read('/s/written', tx)).toBe('tx');
    expect(await a.errno(XsType.READ, '/s/absent\0', tx)).toBe('ENOENT');
    expect((await a.call(XsType.DIRECTORY, '/s\0', tx)).toString()).toBe(listed);
    expect(await a.errno(XsType.TRANSACTION_END, 'T\0', tx)).toBe('EAGAIN');
    expect(await a.read('/s/written')).toBe('outside');
  });
});

describe('quotas', () => {
  it('refuses each limit with the errno C xenstored uses, and never limits dom0', async () => {
    await ts.stop();
    ts = await startTestServer({
      quotas: {
        nodesPerDomain: 6,
        maxValueSize: 16,
        watchesPerDomain: 2,
        transactionsPerDomain: 2,
        permsPerNode: 3,
      },
    });
    const admin = await connect();
    await admin.write('/local/domain/2/data', '');
    await admin.call(XsType.SET_PERMS, '/local/domain/2/data\0n0\0b2\0');
    const g = await guest(2, admin);
    const g2 = await connect(ts.server.domainSocketPath(2));

    expect(await g.errno(XsType.WRITE, `data/v\0${'x'.repeat(16)}`)).toBe('OK');
    expect(await g.errno(XsType.WRITE, `data/v\0${'x'.repeat(17)}`)).toBe('ENOSPC');
    expect(await admin.errno(XsType.WRITE, `/local/domain/2/data/v\0${'x'.repeat(100)}`)).toBe(
      'OK',
    );

    expect(await g.errno(XsType.SET_PERMS, 'data/v\0n2\0r1\0r3\0')).toBe('OK');
    expect(await g.errno(XsType.SET_PERMS, 'data/v\0n2\0r1\0r3\0r4\0')).toBe('ENOSPC');

    // The quota counts a domain's watches and transactions over all its connections.
    expect(await g.errno(XsType.WATCH, 'data\0w1\0')).toBe('OK');
    expect(await g2.errno(XsType.WATCH, 'data\0w2\0')).toBe('OK');
    expect(await g.errno(XsType.WATCH, 'data\0w3\0')).toBe('E2BIG');
    expect(await g.errno(XsType.TRANSACTION_START, '\0')).toBe('OK');
    expect(await g2.errno(XsType.TRANSACTION_START, '\0')).toBe('OK');
    expect(await g.errno(XsType.TRANSACTION_START, '\0')).toBe('ENOSPC');
    for (let i = 0; i < 5; i++) expect(await admin.errno(XsType.WATCH, `/x\0t${i}\0`)).toBe('OK');

    // data/v is the guest's first node; five more fit, a path needing more fails whole.
    expect(await g.errno(XsType.WRITE, 'data/a/b/c/d\0')).toBe('OK');
    expect(await g.errno(XsType.WRITE, 'data/e/f\0')).toBe('ENOSPC');
    expect(await g.errno(XsType.READ, 'data/e\0')).toBe('ENOENT');
    expect(await g.errno(XsType.WRITE, 'data/e\0')).toBe('OK');
    expect(await g.errno(XsType.MKDIR, 'data/f\0')).toBe('ENOSPC');
    for (let i = 0; i < 20; i++) await admin.write(`/local/domain/2/data/dom0-${i}`, '');
    // Removing frees quota.
    expect(await g.errno(XsType.RM, 'data/a\0')).toBe('OK');
    expect(await g.errno(XsType.MKDIR, 'data/f\0')).toBe('OK');
  });
});
