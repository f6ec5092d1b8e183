// The xenbus transport reads and writes a file descriptor from the threadpool.
// No /dev/xen/xenbus here, so FIFOs stand in for the character device.
import { execFileSync } from 'node:child_process';
import { constants, closeSync, open as fsOpen, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { XsClient } from '../../src/xenstore/client.js';
import { type XsTransport, fdTransport } from '../../src/xenstore/transport.js';
import { FrameDecoder, XsType, encodeFrame, joinNul, splitNul } from '../../src/xenstore/wire.js';
import { tempDir } from './helpers/fake-xenstored.js';

let tmp: ReturnType<typeof tempDir>;
const cleanups: Array<() => Promise<void> | void> = [];

function openFd(path: string, flags: string): Promise<number> {
  return new Promise((resolve, reject) =>
    fsOpen(path, flags, (err, fd) => (err ? reject(err) : resolve(fd))),
  );
}

function mkfifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

beforeEach(() => {
  tmp = tempDir('xs-xenbus-');
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  tmp.cleanup();
});

describe('xenbus (file descriptor) transport', () => {
  it('carries requests, replies and watch events over a pair of pipes', async () => {
    const c2s = join(tmp.dir, 'c2s');
    const s2c = join(tmp.dir, 's2c');
    mkfifo(c2s);
    mkfifo(s2c);
    // Open in pairs: a FIFO open blocks until its other end is opened too.
    const [clientIn, serverOut] = await Promise.all([openFd(s2c, 'r'), openFd(s2c, 'w')]);
    const [clientOut, serverIn] = await Promise.all([openFd(c2s, 'w'), openFd(c2s, 'r')]);

    const server: XsTransport = fdTransport('xenbus', 'fifo', serverIn, serverOut);
    const decoder = new FrameDecoder();
    const seen: number[] = [];
    server.start({
      data(chunk) {
        for (const f of decoder.push(chunk)) {
          seen.push(f.type);
          const [path, token] = splitNul(f.payload);
          const reply = (payload: string) =>
            server.send(encodeFrame({ ...f, payload: Buffer.from(payload) }));
          if (f.type === XsType.WATCH) {
            reply('OK\0');
            server.send(
              encodeFrame({
                type: XsType.WATCH_EVENT,
                reqId: 0,
                txId: 0,
                payload: joinNul([path!, token!]),
              }),
            );
          } else if (f.type === XsType.READ) reply(`value of ${path}`);
          else reply('OK\0');
        }
      },
      closed() {},
    });
    cleanups.push(() => server.close());

    const transport = fdTransport('xenbus', 'fifo', clientIn, clientOut);
    // Drive the client through its public API on this transport.
    const client = XsClient.fromTransport(transport, { reconnect: false });
    cleanups.unshift(() => client.close());

    expect(client.transportKind).toBe('xenbus');
    const reads = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client.read(`data/key${i}`)),
    );
    expect(reads[49]).toBe('value of data/key49');
    const w = await client.watch('device');
    expect((await w.next()).value).toEqual({ kind: 'event', path: 'device', token: w.token });
    await client.write('data/x', 'y'.repeat(3000));
    expect(seen.filter((t) => t === XsType.READ)).toHaveLength(50);
    expect(seen).toContain(XsType.WRITE);
  });

  it("'auto' falls back to the xenbus device when no socket answers", async () => {
    // A FIFO opened read-write echoes every frame: the "reply" is the request itself.
    const dev = join(tmp.dir, 'xenbus');
    mkfifo(dev);
    const client = await XsClient.connect({
      transport: 'auto',
      path: join(tmp.dir, 'no-socket'),
      xenbusPath: dev,
      reconnect: false,
    });
    cleanups.push(async () => {
      await client.close();
      // The read loop is blocked in the kernel; give it a byte so its thread returns.
      try {
        const fd = openSync(dev, constants.O_WRONLY | constants.O_NONBLOCK);
        writeSync(fd, 'x');
        closeSync(fd);
      } catch {
        // No reader left: nothing is blocked.
      }
    });
    expect(client.transportKind).toBe('xenbus');
    expect(await client.read('/echo')).toBe('/echo\0');
  });
});
