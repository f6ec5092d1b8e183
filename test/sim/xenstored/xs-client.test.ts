import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { XsClient } from '../../../src/xenstore/client.js';
import { type TestServer, startTestServer } from './helpers.js';

// Cross-check with the project's own client (Debian's clients are in debian-tools.test.ts).
let ts: TestServer;
const clients: XsClient[] = [];

beforeEach(async () => {
  ts = await startTestServer();
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await ts.stop();
});

async function connect(path = ts.socketPath): Promise<XsClient> {
  const c = await XsClient.connect({ path, transport: 'socket', reconnect: false });
  clients.push(c);
  return c;
}

describe('XsClient against the simulated xenstored', () => {
  it('lists a directory too big for one reply, and retries a conflicting transaction', async () => {
    const xs = await connect();
    const names = Array.from({ length: 400 }, (_, i) => `a-rather-long-child-name-${i}`);
    for (const n of names) await xs.write(`/big/${n}`, '');
    expect(await xs.directory('/big')).toEqual(names);

    const other = await connect();
    await xs.write('/counter', '0');
    let runs = 0;
    await xs.transaction(async (tx) => {
      runs++;
      const n = Number(await tx.read('/counter'));
      if (runs === 1) await other.write('/counter', '10');
      await tx.write('/counter', String(n + 1));
    });
    expect(runs).toBe(2);
    expect(await xs.read('/counter')).toBe('11');
  });

  it('acts as a guest on a domain socket', async () => {
    const xs = await connect();
    await xs.introduce(3, 0x10003, 1);
    await xs.write('/local/domain/3/data/x', 'v');
    await xs.setPerms('/local/domain/3/data', [
      { domid: 0, access: 'none' },
      { domid: 3, access: 'both' },
    ]);
    await xs.setPerms('/local/domain/3/data/x', [{ domid: 3, access: 'none' }]);
    const guest = await connect(ts.server.domainSocketPath(3));
    expect(await guest.read('data/x')).toBe('v');
    await expect(guest.read('/local/domain/0/name')).rejects.toMatchObject({ code: 'XS_EACCES' });
  });
});
