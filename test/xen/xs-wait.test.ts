import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XenstoreServer } from '../../src/sim/xenstored/server.js';
import { XenbusState, domId, xsPaths } from '../../src/xen/paths.js';
import {
  waitForDomainGone,
  waitForDomainPresent,
  waitForValue,
  waitForXenbusState,
} from '../../src/xen/xs-wait.js';
import { XsClient } from '../../src/xenstore/client.js';

let dir: string;
let server: XenstoreServer;
let xs: XsClient;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zc-xen-wait-'));
  server = await XenstoreServer.start({ socketPath: join(dir, 'xenstored.sock') });
  xs = await XsClient.connect({ path: join(dir, 'xenstored.sock') });
});

afterAll(async () => {
  await xs?.close();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('XenStore waits (real server and client, watches only)', () => {
  it('waits for a backend state to reach Connected', async () => {
    const dom = domId(41);
    const be = xsPaths.vifBackend(domId(0), dom, 0);
    await xs.write(xsPaths.state(be), String(XenbusState.Initialising));
    const waiting = waitForXenbusState(xs, be, XenbusState.Connected, { timeoutMs: 5000 });
    await xs.write(xsPaths.state(be), String(XenbusState.InitWait));
    await xs.write(xsPaths.state(be), String(XenbusState.Connected));
    await expect(waiting).resolves.toBe(XenbusState.Connected);
  });

  it('resolves at once when the state is already there', async () => {
    const be = xsPaths.vbdBackend(domId(0), domId(42), 51712);
    await xs.write(xsPaths.state(be), '4');
    await expect(
      waitForXenbusState(xs, be, XenbusState.Connected, { timeoutMs: 5000 }),
    ).resolves.toBe(4);
  });

  it('waits for a domain to appear and to disappear', async () => {
    const dom = domId(43);
    const appearing = waitForDomainPresent(xs, dom, { timeoutMs: 5000 });
    await xs.write(xsPaths.name(dom), 'web1');
    await appearing;
    const gone = waitForDomainGone(xs, dom, { timeoutMs: 5000 });
    await xs.rm(xsPaths.domain(dom));
    await expect(gone).resolves.toBeUndefined();
  });

  it('times out with a clear error and leaves no watch behind', async () => {
    const path = '/local/domain/44/console/vnc-port';
    await expect(waitForValue(xs, path, undefined, { timeoutMs: 100 })).rejects.toMatchObject({
      code: 'XEN_WAIT_TIMEOUT',
      message: expect.stringContaining(path),
    });
    // A new wait on the same path works: the earlier watch was closed.
    const waiting = waitForValue(xs, path, (v) => v === '5901', { timeoutMs: 5000 });
    await xs.write(path, '5900');
    await xs.write(path, '5901');
    await expect(waiting).resolves.toBe('5901');
  });
});
