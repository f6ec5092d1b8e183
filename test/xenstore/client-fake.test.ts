// Client behaviour only a scripted peer can provoke. Functional tests against
// the simulator's xenstored live in client-server.test.ts.
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { XsClient } from '../../src/xenstore/client.js';
import {
  XsArgumentError,
  XsConnectionError,
  XsLimitError,
  XsProtocolError,
  XsRemoteError,
  XsTimeoutError,
} from '../../src/xenstore/errors.js';
import type { WatchItem, XsStatus } from '../../src/xenstore/types.js';
import { WATCH_QUEUE_MAX } from '../../src/xenstore/watch-registry.js';
import { type XsFrame, XsType, joinNul, splitNul } from '../../src/xenstore/wire.js';
import {
  type FakeConn,
  type FakeHandler,
  FakeXenstored,
  memoryStore,
  tempDir,
} from './helpers/fake-xenstored.js';

let tmp: ReturnType<typeof tempDir>;
let sock: string;
const fakes: FakeXenstored[] = [];
const clients: XsClient[] = [];

async function fake(handler: FakeHandler): Promise<FakeXenstored> {
  const f = await FakeXenstored.start(sock, handler);
  fakes.push(f);
  return f;
}

async function connect(opts: Parameters<typeof XsClient.connect>[0] = {}): Promise<XsClient> {
  const c = await XsClient.connect({ path: sock, transport: 'socket', ...opts });
  clients.push(c);
  return c;
}

function nextItem(w: AsyncIterator<WatchItem>): Promise<WatchItem> {
  return w.next().then((r) => {
    if (r.done) throw new Error('watch ended');
    return r.value;
  });
}

function statusReached(c: XsClient, want: XsStatus): Promise<void> {
  return new Promise((resolve) => {
    if (c.status === want) resolve();
    const on = (s: XsStatus) => {
      if (s === want) {
        c.off('status', on);
        resolve();
      }
    };
    c.on('status', on);
  });
}

beforeEach(() => {
  tmp = tempDir();
  sock = join(tmp.dir, 'xenstored.sock');
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const f of fakes.splice(0)) await f.stop();
  tmp.cleanup();
});

describe('XsClient against a scripted peer', () => {
  it('matches replies that come back out of order by req_id', async () => {
    const held: Array<{ frame: XsFrame; conn: FakeConn }> = [];
    await fake((frame, conn) => {
      held.push({ frame, conn });
      if (held.length === 3) {
        for (const { frame: f, conn: c } of held.reverse())
          c.reply(f, `value of ${splitNul(f.payload)[0]}`);
      }
    });
    const c = await connect();
    const values = await Promise.all([c.read('/a'), c.read('/b'), c.read('/c')]);
    expect(values).toEqual(['value of /a', 'value of /b', 'value of /c']);
  });

  it('routes watch events by type before req_id, to the watch of their token', async () => {
    const store = memoryStore();
    await fake(store);
    const c = await connect();
    const wa = await c.watch('/a', 'ta');
    const wb = await c.watch('/b', 'tb');
    expect(await nextItem(wa)).toEqual({ kind: 'event', path: '/a', token: 'ta' });
    expect(await nextItem(wb)).toEqual({ kind: 'event', path: '/b', token: 'tb' });
    await c.write('/b/x', '1');
    await c.write('/a/y', '2');
    expect(await nextItem(wa)).toEqual({ kind: 'event', path: '/a/y', token: 'ta' });
    expect(await nextItem(wb)).toEqual({ kind: 'event', path: '/b/x', token: 'tb' });
    expect(wa.backlog + wb.backlog).toBe(0);
  });

  it('delivers an event that arrives inside a batch of replies without confusing the replies', async () => {
    let token = '';
    await fake((frame, conn) => {
      if (frame.type === XsType.WATCH) {
        token = splitNul(frame.payload)[1]!;
        conn.reply(frame, 'OK\0');
        return;
      }
      // An event with req_id equal to the request's, sent before its reply.
      conn.send({
        type: XsType.WATCH_EVENT,
        reqId: frame.reqId,
        txId: 0,
        payload: joinNul(['/w/ev', token]),
      });
      conn.reply(frame, 'v');
    });
    const c = await connect();
    const w = await c.watch('/w');
    expect(await c.read('/x')).toBe('v');
    expect(await nextItem(w)).toEqual({ kind: 'event', path: '/w/ev', token: w.token });
  });

  it('turns XS_ERROR into XsRemoteError with errno, op and path', async () => {
    await fake((frame, conn) =>
      conn.error(frame, frame.type === XsType.WRITE ? 'EACCES' : 'ENOENT'),
    );
    const c = await connect();
    const err = await c.read('/nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XsRemoteError);
    expect(err).toMatchObject({ code: 'XS_ENOENT', errno: 'ENOENT', op: 'read', path: '/nope' });
    await expect(c.write('/ro', 'x')).rejects.toMatchObject({
      code: 'XS_EACCES',
      op: 'write',
      path: '/ro',
    });
    expect(await c.tryRead('/nope')).toBeUndefined();
    expect(await c.exists('/nope')).toBe(false);
    await expect(c.rm('/x')).rejects.toThrow('xenstore rm /x: ENOENT');
  });

  it('closes the connection and fails every waiter when a reply has the wrong type', async () => {
    const f = await fake((frame, conn) => {
      if (frame.reqId % 3 === 0) conn.reply(frame, 'OK\0', XsType.MKDIR);
    });
    const c = await connect({ reconnect: false });
    const results = await Promise.allSettled([c.read('/a'), c.read('/b'), c.read('/c')]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(XsProtocolError);
    }
    expect(String((results[2] as PromiseRejectedResult).reason.message)).toMatch(
      /reply type MKDIR is neither READ nor ERROR/,
    );
    expect(c.status).toBe('closed');
    await expect(c.read('/d')).rejects.toBeInstanceOf(XsConnectionError);
    await expect.poll(() => f.conns[0]!.socket.destroyed).toBe(true);
  });

  it('treats a reply to no request and an oversize frame as protocol errors', async () => {
    await fake((frame, conn) => {
      if (splitNul(frame.payload)[0] === '/stray') {
        conn.send({ type: XsType.READ, reqId: 999_999, txId: 0, payload: Buffer.from('x') });
      } else {
        const head = Buffer.alloc(16);
        head.writeUInt32LE(XsType.READ, 0);
        head.writeUInt32LE(frame.reqId, 4);
        head.writeUInt32LE(5000, 12);
        conn.socket.write(head);
      }
    });
    const c1 = await connect({ reconnect: false });
    await expect(c1.read('/stray')).rejects.toThrow(/req_id 999999 matches no request/);
    const c2 = await connect({ reconnect: false });
    const err = await c2.read('/big').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XsProtocolError);
    expect((err as Error).message).toMatch(/5000 bytes/);
  });

  it('checks payload and path limits before sending anything', async () => {
    const f = await fake(memoryStore());
    const c = await connect();
    await expect(c.write('/a', 'x'.repeat(4096))).rejects.toBeInstanceOf(XsLimitError);
    await expect(c.read(`/${'p'.repeat(3072)}`)).rejects.toThrow(
      /3073 bytes is over the 3072-byte limit/,
    );
    await expect(c.read('p'.repeat(2049))).rejects.toThrow(/relative path of 2049 bytes/);
    await expect(c.read('')).rejects.toBeInstanceOf(XsArgumentError);
    await expect(c.watch('/a', 'bad\0token')).rejects.toBeInstanceOf(XsArgumentError);
    expect(f.received).toEqual([]);
    await c.write('/a', 'x'.repeat(4093));
    expect(await c.read('/a')).toHaveLength(4093);
  });

  it('purges queued events on unwatch and ends the iterator', async () => {
    const f = await fake(memoryStore());
    const c = await connect();
    const w = await c.watch('/q');
    for (let i = 0; i < 5; i++) await c.write(`/q/${i}`, 'x');
    await expect.poll(() => w.backlog).toBe(6);
    await w.close();
    expect(w.backlog).toBe(0);
    expect(await w.next()).toEqual({ value: undefined, done: true });
    expect(f.seen(XsType.UNWATCH).map((fr) => splitNul(fr.payload))).toEqual([['/q', w.token]]);
    // Events for the token after it is gone are dropped, not misrouted.
    f.conns[0]!.event('/q/late', w.token);
    expect(await c.read('/q/0')).toBe('x');
  });

  it('collapses the backlog of a watch nobody reads into one resync', async () => {
    const f = await fake(memoryStore());
    const c = await connect();
    const w = await c.watch('/flood');
    for (let i = 0; i < WATCH_QUEUE_MAX + 10; i++) f.conns[0]!.event(`/flood/${i}`, w.token);
    await c.read('/flood').catch(() => undefined); // a round trip: every event is in
    expect(w.backlog).toBeLessThanOrEqual(WATCH_QUEUE_MAX);
    expect(await nextItem(w)).toEqual({ kind: 'resync' });
    // What came after the collapse is still delivered in order.
    const rest: WatchItem[] = [];
    while (w.backlog > 0) rest.push(await nextItem(w));
    expect(rest.at(-1)).toEqual({
      kind: 'event',
      path: `/flood/${WATCH_QUEUE_MAX + 9}`,
      token: w.token,
    });
  });

  it('unregisters a watch when a for-await loop over it is left', async () => {
    const f = await fake(memoryStore());
    const c = await connect();
    const w = await c.watch('/loop');
    await c.write('/loop/a', '1');
    const seen: string[] = [];
    for await (const item of w) {
      if (item.kind === 'event') seen.push(item.path);
      if (seen.length === 2) break;
    }
    expect(seen).toEqual(['/loop', '/loop/a']);
    expect(f.seen(XsType.UNWATCH)).toHaveLength(1);
    expect(w.closed).toBe(true);
  });

  it("'auto' picks the xenstored socket when it answers", async () => {
    await fake(memoryStore());
    const c = await connect({ transport: 'auto', xenbusPath: join(tmp.dir, 'no-device') });
    expect(c.transportKind).toBe('socket');
    await c.write('/auto', 'ok');
    expect(await c.read('/auto')).toBe('ok');
  });

  it('refuses a watch token already in use', async () => {
    await fake(memoryStore());
    const c = await connect();
    await c.watch('/a', 'same');
    await expect(c.watch('/b', 'same')).rejects.toThrow(/token 'same' is already in use/);
  });

  it('reads a large directory with DIRECTORY_PART after E2BIG, restarting on a generation change', async () => {
    const names = Array.from({ length: 900 }, (_, i) => `child-number-${i}`);
    const list = Buffer.from(`${names.join('\0')}\0\0`);
    let parts = 0;
    const f = await fake((frame, conn) => {
      if (frame.type === XsType.DIRECTORY) return conn.error(frame, 'E2BIG');
      const off = Number(splitNul(frame.payload)[1]);
      parts++;
      // The second part comes from a newer generation: the client must start over.
      const gen = parts === 2 ? '8' : '7';
      const slice = list.subarray(off, off + 2000);
      conn.reply(frame, Buffer.concat([Buffer.from(`${gen}\0`), slice]));
    });
    const c = await connect();
    expect(await c.directory('/many')).toEqual(names);
    const offsets = f.seen(XsType.DIRECTORY_PART).map((fr) => Number(splitNul(fr.payload)[1]));
    expect(offsets[0]).toBe(0);
    expect(offsets[2]).toBe(0);
    expect(offsets.at(-1)).toBeGreaterThan(0);
  });

  it('answers E2BIG when the server has no DIRECTORY_PART', async () => {
    await fake((frame, conn) =>
      conn.error(frame, frame.type === XsType.DIRECTORY ? 'E2BIG' : 'ENOSYS'),
    );
    const c = await connect();
    await expect(c.directory('/many')).rejects.toMatchObject({ code: 'XS_E2BIG', op: 'directory' });
  });

  it('retries a transaction on EAGAIN within its attempts', async () => {
    let conflicts = 2;
    const store = memoryStore();
    const f = await fake((frame, conn) => {
      if (
        frame.type === XsType.TRANSACTION_END &&
        splitNul(frame.payload)[0] === 'T' &&
        conflicts > 0
      ) {
        conflicts--;
        conn.error(frame, 'EAGAIN');
        return;
      }
      store(frame, conn);
    });
    const c = await connect();
    let runs = 0;
    const out = await c.transaction(async (tx) => {
      runs++;
      await tx.write('/counter', String(runs));
      return runs;
    });
    expect(out).toBe(3);
    expect(runs).toBe(3);
    // Every write went out inside its own transaction.
    const txIds = f.seen(XsType.WRITE).map((fr) => fr.txId);
    expect(new Set(txIds).size).toBe(3);
    expect(txIds.every((id) => id > 0)).toBe(true);

    conflicts = 5;
    await expect(
      c.transaction(async (tx) => tx.write('/c', '1'), { attempts: 2 }),
    ).rejects.toMatchObject({
      code: 'XS_EAGAIN',
    });
  });

  it('aborts the transaction and rethrows when the body fails', async () => {
    const f = await fake(memoryStore());
    const c = await connect();
    await expect(
      c.transaction(async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(f.seen(XsType.TRANSACTION_END).map((fr) => splitNul(fr.payload)[0])).toEqual(['F']);
  });

  it('refuses to use a transaction after commit', async () => {
    await fake(memoryStore());
    const c = await connect();
    const tx = await c.startTransaction();
    await tx.commit();
    await expect(tx.read('/a')).rejects.toMatchObject({ code: 'XS_TX_FINISHED' });
  });

  it('reconnects after xenstored restarts: watches come back with a resync, new events flow', async () => {
    const store = memoryStore();
    const f = await fake(store);
    const c = await connect({ reconnect: { initialDelayMs: 5, maxDelayMs: 50 } });
    const statuses: XsStatus[] = [];
    c.on('status', (s) => statuses.push(s));
    const w = await c.watch('/r', 'tr');
    expect(await nextItem(w)).toMatchObject({ kind: 'event', path: '/r' });
    const tx = await c.startTransaction();

    await f.stop();
    await statusReached(c, 'reconnecting');
    // Issued while xenstored is away: waits for the new connection.
    const pending = c.write('/r/while-down', 'yes');
    await f.listen();
    await pending;
    await c.whenReady();

    expect(await nextItem(w)).toEqual({ kind: 'resync' });
    expect(await nextItem(w)).toEqual({ kind: 'event', path: '/r', token: 'tr' });
    // The write issued while down may have fired before or after; skip to the next new event.
    await c.write('/r/after', '1');
    let item = await nextItem(w);
    while (item.kind === 'event' && item.path !== '/r/after') item = await nextItem(w);
    expect(item).toEqual({ kind: 'event', path: '/r/after', token: 'tr' });

    expect(f.seen(XsType.WATCH).map((fr) => splitNul(fr.payload))).toEqual([
      ['/r', 'tr'],
      ['/r', 'tr'],
    ]);
    expect(statuses).toEqual(['reconnecting', 'ready']);
    expect(f.connections).toBe(2);
    await expect(tx.write('/r/x', '1')).rejects.toBeInstanceOf(XsConnectionError);
    await expect(tx.commit()).rejects.toThrow(/transaction/);
  });

  it('fails requests in flight at disconnect, and bounded waits while reconnecting', async () => {
    const f = await fake(() => {
      /* never answers */
    });
    const c = await connect({
      requestTimeoutMs: 150,
      reconnect: { initialDelayMs: 5, maxDelayMs: 20 },
    });
    const inflight = c.read('/a');
    await expect.poll(() => f.received.length).toBe(1);
    await f.stop();
    await expect(inflight).rejects.toBeInstanceOf(XsConnectionError);
    const waiting = c.read('/b').catch((e: unknown) => e);
    const err = await waiting;
    expect(err).toBeInstanceOf(XsConnectionError);
    expect((err as Error).message).toMatch(/not connected to xenstored after 150 ms/);
    expect(c.status).toBe('reconnecting');
  });

  it('times out a request that gets no answer and ignores its late reply', async () => {
    const late: Array<() => void> = [];
    await fake((frame, conn) => {
      if (splitNul(frame.payload)[0] === '/slow') late.push(() => conn.reply(frame, 'late'));
      else conn.reply(frame, 'fast');
    });
    const c = await connect({ requestTimeoutMs: 100 });
    await expect(c.read('/slow')).rejects.toBeInstanceOf(XsTimeoutError);
    late[0]!();
    expect(await c.read('/quick')).toBe('fast');
    expect(c.status).toBe('ready');
  });

  it('without reconnect, ends watches with the error and closes', async () => {
    const f = await fake(memoryStore());
    const c = await connect({ reconnect: false });
    const w = await c.watch('/z');
    await f.stop();
    await statusReached(c, 'closed');
    await expect(w.next()).rejects.toBeInstanceOf(XsConnectionError);
    await expect(c.read('/z')).rejects.toMatchObject({ code: 'XS_CONNECTION' });
  });

  it('close() fails outstanding requests, ends watches and is idempotent', async () => {
    await fake((frame, conn) => {
      if (frame.type === XsType.WATCH) conn.reply(frame, 'OK\0');
    });
    const c = await XsClient.connect({ path: sock, transport: 'socket' });
    const w = await c.watch('/c');
    const p = c.read('/never');
    await c.close();
    await c.close();
    await expect(p).rejects.toThrow(/client was closed/);
    expect(await w.next()).toEqual({ value: undefined, done: true });
    expect(c.status).toBe('closed');
  });

  it('reports a clear error when nothing listens', async () => {
    await expect(XsClient.connect({ path: sock, transport: 'socket' })).rejects.toThrow(
      new RegExp(`cannot connect to xenstored socket ${sock}`),
    );
    await expect(XsClient.connect({ path: sock, transport: 'xenbus' })).rejects.toMatchObject({
      code: 'XS_CONNECTION',
    });
  });
});
