// One flooding connection against the others: C xenstored serves connections
// in turn, one request each per pass, holds a domain to its write rate, and
// does not keep unbounded watch events for a client that does not read them.
// Counted; where time matters (the write rate) it is bounded from the side a
// slow machine cannot break.
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

async function connect(socket: string): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  clients.push(c);
  return c;
}

/** Domain `domid` introduced, owning its `data`, with one client on its socket. */
async function guest(admin: RawClient, domid: number): Promise<RawClient> {
  await admin.call(XsType.INTRODUCE, `${domid}\x00123\0${domid + 1}\0`);
  await admin.write(`/local/domain/${domid}/data`, '');
  await admin.call(XsType.SET_PERMS, `/local/domain/${domid}/data\0n${domid}\0`);
  return connect(ts.server.domainSocketPath(domid));
}

const writeFrame = (reqId: number, path: string, value: string) =>
  encodeFrame({
    type: XsType.WRITE,
    reqId,
    txId: 0,
    payload: Buffer.from(`${path}\0${value}`, 'latin1'),
  });

describe('a flooding connection', () => {
  it('gets one request served per pass, so another connection is answered next', async () => {
    // Turns alone: the write rate limit would hold the flood back anyway.
    await ts.stop();
    ts = await startTestServer({ quotas: { writeRate: 0 } });
    const admin = await connect(ts.socketPath);
    const flooder = await guest(admin, 2);
    const other = await connect(ts.socketPath);
    await flooder.write('data/n', '0');
    await other.read('/local/domain/2/data/n');

    // 5000 writes in one go (over 100 KiB, more than one read of the socket),
    // then one read from another connection: the value it reads says how
    // many of the flood's writes were served before it.
    const FLOOD = 5000;
    const frames = Array.from({ length: FLOOD }, (_, i) =>
      writeFrame(1000 + i, 'data/n', `${i + 1}`),
    );
    const answered = flooder.repliesReceived + FLOOD;
    flooder.sendRaw(Buffer.concat(frames));
    const servedBefore = Number(await other.read('/local/domain/2/data/n'));
    expect(servedBefore).toBeLessThanOrEqual(2);

    // The flood is served in full, in order, nothing lost.
    await flooder.waitFor(
      () => (flooder.repliesReceived >= answered ? true : undefined),
      'the replies to the flood',
      20_000,
    );
    expect(await other.read('/local/domain/2/data/n')).toBe(String(FLOOD));
    // Its requests waited in its socket, not in the server's memory.
    expect(ts.server.domainLoad(2).queuedRequests).toBe(0);
  });

  it('has its writes held to the write rate limit, spent before they are read', async () => {
    await ts.stop();
    ts = await startTestServer({ quotas: { writeRate: 100, writeBurst: 10 } });
    const admin = await connect(ts.socketPath);
    const flooder = await guest(admin, 2);
    await admin.write('/local/domain/2/data/n', '0');
    const started = performance.now();
    const answered = flooder.repliesReceived + 60;
    flooder.sendRaw(
      Buffer.concat(
        Array.from({ length: 60 }, (_, i) => writeFrame(1000 + i, 'data/n', `${i + 1}`)),
      ),
    );
    // However fast or slow this machine is, no more than the burst plus what
    // the elapsed time paid for has been written...
    const seen = Number(await admin.read('/local/domain/2/data/n'));
    expect(seen).toBeLessThanOrEqual(10 + 1 + Math.ceil((performance.now() - started) / 10));
    // ...so the 49 writes past the burst took at least 490 ms; none was refused.
    await flooder.waitFor(
      () => (flooder.repliesReceived >= answered ? true : undefined),
      'the replies to the flood',
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(480);
    expect(await admin.read('/local/domain/2/data/n')).toBe('60');
    // dom0 is never limited.
    for (let i = 0; i < 50; i++) await admin.write('/local/domain/2/data/m', String(i));
  });

  it('has its unread watch events capped, while dom0 and its own requests go on', async () => {
    await ts.stop();
    ts = await startTestServer({ quotas: { queuedWatchEvents: 50 } });
    const admin = await connect(ts.socketPath);
    const sleeper = await guest(admin, 3);
    await sleeper.call(XsType.WATCH, 'data\0t\0');
    await sleeper.waitFor(() => (sleeper.events.length === 1 ? true : undefined), 'first event');
    sleeper.events.length = 0;
    // The guest stops reading its socket.
    sleeper.socket.pause();

    const WRITES = 20_000;
    const value = 'v'.repeat(64);
    const answered = admin.repliesReceived + WRITES;
    admin.sendRaw(
      Buffer.concat(
        Array.from({ length: WRITES }, (_, i) =>
          writeFrame(1000 + i, `/local/domain/3/data/k${i}`, value),
        ),
      ),
    );
    await admin.waitFor(
      () => (admin.repliesReceived >= answered ? true : undefined),
      "dom0's writes",
      20_000,
    );
    const { droppedWatchEvents } = ts.server.domainLoad(3);
    // The socket holds what it can (its kernel buffer, which varies), the
    // server 50 more; the rest is dropped and counted.
    expect(droppedWatchEvents).toBeGreaterThan(0);

    sleeper.socket.resume();
    expect(await sleeper.read('data/k0')).toBe(value);
    expect(sleeper.events.length + droppedWatchEvents).toBe(WRITES);
    expect(sleeper.events.every((e) => e.token === 't')).toBe(true);
  });
});
