// The client against the simulator's xenstored, and interop with Debian's C
// client (xenstore-utils) in both directions.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { XenstoreServer } from '../../src/sim/xenstored/server.js';
import { XsClient } from '../../src/xenstore/client.js';
import { XsRemoteError } from '../../src/xenstore/errors.js';
import type { WatchItem } from '../../src/xenstore/types.js';
import { tempDir } from './helpers/fake-xenstored.js';

let tmp: ReturnType<typeof tempDir>;
let sock: string;
let server: XenstoreServer | undefined;
const clients: XsClient[] = [];

async function connect(
  path = sock,
  opts: Parameters<typeof XsClient.connect>[0] = {},
): Promise<XsClient> {
  const c = await XsClient.connect({ path, transport: 'socket', ...opts });
  clients.push(c);
  return c;
}

async function nextEvent(w: AsyncIterator<WatchItem>): Promise<WatchItem> {
  const r = await w.next();
  if (r.done) throw new Error('watch ended');
  return r.value;
}

/** Events until one for `path` arrives (xenstored may also fire for parents or spuriously). */
async function eventFor(w: AsyncIterator<WatchItem>, path: string): Promise<WatchItem> {
  for (;;) {
    const item = await nextEvent(w);
    if (item.kind === 'event' && item.path === path) return item;
  }
}

function cli(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env: { ...process.env, XENSTORED_PATH: sock }, timeout: 10_000 },
      (err, out, errOut) =>
        err ? reject(new Error(`${cmd} failed: ${errOut || err.message}`)) : resolve(out),
    );
  });
}

beforeEach(async () => {
  tmp = tempDir('xs-server-');
  sock = join(tmp.dir, 'xenstored.sock');
  server = await XenstoreServer.start({
    socketPath: sock,
    domainSocketDir: join(tmp.dir, 'domains'),
  });
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await server?.close();
  server = undefined;
  tmp.cleanup();
});

describe('XsClient against the simulator xenstored', () => {
  it('reads, writes, lists and removes nodes', async () => {
    const c = await connect();
    expect(await c.read('/local/domain/0/name')).toBe('Domain-0');
    await c.write('/tool/zynclone/vm1/state', 'running');
    await c.write('/tool/zynclone/vm1/name', Buffer.from('clone-1'));
    await c.mkdir('/tool/zynclone/vm2');
    expect(await c.read('/tool/zynclone/vm1/state')).toBe('running');
    expect((await c.directory('/tool/zynclone')).sort()).toEqual(['vm1', 'vm2']);
    expect((await c.directory('/tool/zynclone/vm1')).sort()).toEqual(['name', 'state']);
    expect(await c.read('/tool/zynclone/vm2')).toBe('');
    expect(await c.exists('/tool/zynclone/vm2')).toBe(true);
    await c.rm('/tool/zynclone/vm1');
    expect(await c.tryRead('/tool/zynclone/vm1/state')).toBeUndefined();
    expect(await c.exists('/tool/zynclone/vm1')).toBe(false);
    const err = await c.read('/tool/zynclone/vm1/state').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XsRemoteError);
    expect(err).toMatchObject({ code: 'XS_ENOENT', op: 'read', path: '/tool/zynclone/vm1/state' });
    expect(await c.getDomainPath(7)).toBe('/local/domain/7');
  });

  it('lists a directory too big for one reply through DIRECTORY_PART', async () => {
    const c = await connect();
    const names = Array.from(
      { length: 300 },
      (_, i) => `a-rather-long-child-name-${String(i).padStart(4, '0')}`,
    );
    await c.transaction(async (tx) => {
      for (const n of names) await tx.write(`/big/${n}`, '');
    });
    const got = await c.directory('/big');
    expect(got.sort()).toEqual(names);
  });

  it('sets and reads permissions, and a guest is held to them', async () => {
    const c = await connect();
    await c.write('/tool/zynclone/secret', 's3');
    expect(await c.getPerms('/tool/zynclone/secret')).toEqual([{ domid: 0, access: 'none' }]);

    await c.introduce(5, 0x1234, 11);
    expect(await c.isDomainIntroduced(5)).toBe(true);
    expect(await c.isDomainIntroduced(6)).toBe(false);
    await c.mkdir('/local/domain/5');
    await c.setPerms('/local/domain/5', [{ domid: 5, access: 'none' }]);
    expect(await c.getPerms('/local/domain/5')).toEqual([{ domid: 5, access: 'none' }]);

    const guest = await connect(server!.domainSocketPath(5));
    await expect(guest.read('/tool/zynclone/secret')).rejects.toMatchObject({ code: 'XS_EACCES' });
    await c.setPerms('/tool/zynclone/secret', [
      { domid: 0, access: 'none' },
      { domid: 5, access: 'read' },
    ]);
    expect(await guest.read('/tool/zynclone/secret')).toBe('s3');
    await expect(guest.write('/tool/zynclone/secret', 'x')).rejects.toMatchObject({
      code: 'XS_EACCES',
    });
    // Relative paths resolve under the guest's own home.
    await guest.write('data/zynclone/request', 'clone');
    expect(await c.read('/local/domain/5/data/zynclone/request')).toBe('clone');

    const released = await c.watch('@releaseDomain');
    expect(await nextEvent(released)).toMatchObject({ kind: 'event', path: '@releaseDomain' });
    await c.release(5);
    expect(await eventFor(released, '@releaseDomain')).toMatchObject({ kind: 'event' });
    expect(await c.isDomainIntroduced(5)).toBe(false);
  });

  it('fails a commit with EAGAIN after a conflicting write', async () => {
    const c = await connect();
    const other = await connect();
    await c.write('/tool/zynclone/counter', '0');
    const tx = await c.startTransaction();
    expect(await tx.read('/tool/zynclone/counter')).toBe('0');
    await other.write('/tool/zynclone/counter', '5');
    await tx.write('/tool/zynclone/counter', '1');
    const err = await tx.commit().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(XsRemoteError);
    expect(err).toMatchObject({ code: 'XS_EAGAIN', op: 'transaction-end' });
    expect(await c.read('/tool/zynclone/counter')).toBe('5');
  });

  it('the retry helper redoes a transaction that lost a race, and concurrent increments all land', async () => {
    const c = await connect();
    const other = await connect();
    await c.write('/tool/zynclone/n', '0');
    let runs = 0;
    await c.transaction(async (tx) => {
      runs++;
      const n = Number(await tx.read('/tool/zynclone/n'));
      if (runs === 1) await other.write('/tool/zynclone/n', '100');
      await tx.write('/tool/zynclone/n', String(n + 1));
    });
    expect(runs).toBe(2);
    expect(await c.read('/tool/zynclone/n')).toBe('101');

    await c.write('/tool/zynclone/m', '0');
    const workers = await Promise.all([connect(), connect(), connect(), connect()]);
    await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        workers[i % workers.length]!.transaction(
          async (tx) => {
            const n = Number(await tx.read('/tool/zynclone/m'));
            await tx.write('/tool/zynclone/m', String(n + 1));
          },
          { attempts: 50 },
        ),
      ),
    );
    expect(await c.read('/tool/zynclone/m')).toBe('12');
  });

  it('delivers the initial watch event, then changes below the path, until unwatched', async () => {
    const c = await connect();
    const writer = await connect();
    const w = await c.watch('/tool/zynclone', 'tok-1');
    expect(await nextEvent(w)).toEqual({ kind: 'event', path: '/tool/zynclone', token: 'tok-1' });
    await writer.write('/tool/zynclone/vm9/state', 'cloning');
    expect(await eventFor(w, '/tool/zynclone/vm9/state')).toEqual({
      kind: 'event',
      path: '/tool/zynclone/vm9/state',
      token: 'tok-1',
    });
    await writer.rm('/tool/zynclone/vm9');
    expect(await eventFor(w, '/tool/zynclone/vm9')).toMatchObject({ kind: 'event' });
    await w.close();
    expect(await w.next()).toEqual({ value: undefined, done: true });
  });

  it('reset-watches ends every watch and transaction, and new ones work', async () => {
    const c = await connect();
    const w = await c.watch('/tool');
    await nextEvent(w);
    const tx = await c.startTransaction();
    await c.resetWatches();
    expect(await w.next()).toEqual({ value: undefined, done: true });
    await expect(tx.read('/tool')).rejects.toMatchObject({ code: 'XS_CONNECTION' });
    const tx2 = await c.startTransaction();
    await tx2.write('/tool/zynclone/after-reset', '1');
    await tx2.commit();
    const w2 = await c.watch('/tool/zynclone/after-reset');
    expect(await nextEvent(w2)).toMatchObject({
      kind: 'event',
      path: '/tool/zynclone/after-reset',
    });
  });

  it('reconnects when xenstored is stopped and restarted on the same socket', async () => {
    const c = await connect(sock, { reconnect: { initialDelayMs: 5, maxDelayMs: 50 } });
    const w = await c.watch('/tool/zynclone');
    expect(await nextEvent(w)).toMatchObject({ kind: 'event', path: '/tool/zynclone' });
    const tx = await c.startTransaction();

    await server!.close();
    await expect.poll(() => c.status).toBe('reconnecting');
    await expect(tx.read('/local/domain/0/name')).rejects.toMatchObject({ code: 'XS_CONNECTION' });
    server = await XenstoreServer.start({
      socketPath: sock,
      domainSocketDir: join(tmp.dir, 'domains'),
    });
    await c.whenReady();

    expect(await nextEvent(w)).toEqual({ kind: 'resync' });
    const writer = await connect();
    await writer.write('/tool/zynclone/after', 'yes');
    expect(await eventFor(w, '/tool/zynclone/after')).toMatchObject({ kind: 'event' });
    expect(await c.read('/tool/zynclone/after')).toBe('yes');
  });

  it("interoperates with Debian's xenstore-read and xenstore-write", async () => {
    const c = await connect();
    await c.write('/tool/zynclone/from-ts', 'written by the TypeScript client');
    expect(await cli('xenstore-read', ['/tool/zynclone/from-ts'])).toBe(
      'written by the TypeScript client\n',
    );

    const w = await c.watch('/tool/zynclone/from-c');
    await nextEvent(w);
    await cli('xenstore-write', ['/tool/zynclone/from-c', 'written by C']);
    expect(await eventFor(w, '/tool/zynclone/from-c')).toMatchObject({ kind: 'event' });
    expect(await c.read('/tool/zynclone/from-c')).toBe('written by C');
    expect((await cli('xenstore-ls', ['/tool/zynclone'])).split('\n')).toContain(
      'from-c = "written by C"',
    );
  });
});
