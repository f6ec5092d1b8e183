// The one XenStore layout module against docs/xenstore-contract.md, and the one
// reader of vm/ (the net monitor's and the doctor's) against a real xenstored.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SUBTREES,
  ZC_ROOT,
  contractNodes,
  readPublishedVms,
  vifLeaf,
  vmLeaf,
  vmOfPath,
} from '../../../src/core/xenstore/index.js';
import { XenstoreServer } from '../../../src/sim/xenstored/server.js';
import { XsClient } from '../../../src/xenstore/client.js';
import type { XsOps } from '../../../src/xenstore/types.js';

const contract = readFileSync(resolve(__dirname, '../../../docs/xenstore-contract.md'), 'utf8');

describe('docs/xenstore-contract.md', () => {
  it('documents exactly the nodes of the layout module', () => {
    const documented = [...contract.matchAll(/^#### (\S+) = /gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(contractNodes().sort());
  });

  it('has an ownership row for every top-level subtree, and no other', () => {
    const rows = [...contract.matchAll(/^\| `([\w-]+)\/(?:\$\w+\/)?\.\.\.` \|/gm)].map((m) => m[1]);
    expect(rows.sort()).toEqual(Object.keys(SUBTREES).sort());
    for (const path of Object.values(SUBTREES)) expect(path.startsWith(`${ZC_ROOT}/`)).toBe(true);
  });

  it('names the VM of a watch path under vm/ only', () => {
    expect(vmOfPath(vmLeaf('web01', 'generation'))).toBe('web01');
    expect(vmOfPath(SUBTREES.vm)).toBeUndefined();
    expect(vmOfPath(`${SUBTREES.net}/ack/web01`)).toBeUndefined();
  });
});

describe('readPublishedVms', () => {
  let dir: string;
  let server: XenstoreServer;
  let xs: XsClient;
  let other: XsClient;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'zc-layout-'));
    const path = join(dir, 'socket');
    server = await XenstoreServer.start({ socketPath: path, domainSocketDir: join(dir, 'd') });
    xs = await XsClient.connect({ path, transport: 'socket' });
    other = await XsClient.connect({ path, transport: 'socket' });
  });
  afterAll(async () => {
    await xs?.close();
    await other?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function publish(vm: string, generation: number, masked: '0' | '1'): Promise<void> {
    await other.transaction(async (tx) => {
      await tx.write(vmLeaf(vm, 'state'), 'running');
      await tx.write(vmLeaf(vm, 'original-vif-mask'), 'none');
      await tx.write(vifLeaf(vm, 'clone-vif', 0, 'name'), 'zcv5.0');
      await tx.write(vifLeaf(vm, 'clone-vif', 0, 'masked'), masked);
      await tx.write(vmLeaf(vm, 'generation'), String(generation));
    });
  }

  /**
   * `xs` where another connection publishes `vm` again right after each of
   * the first `times` reads of its generation: between the reader's first
   * and second look at it.
   */
  function racing(vm: string, times: number): XsOps {
    let left = times;
    let generation = 100;
    return new Proxy(xs, {
      get(target, prop) {
        if (prop !== 'tryRead') return Reflect.get(target, prop).bind(target);
        return async (path: string) => {
          const value = await target.tryRead(path);
          if (path === vmLeaf(vm, 'generation') && left-- > 0) {
            await publish(vm, ++generation, generation % 2 === 0 ? '1' : '0');
          }
          return value;
        };
      },
    });
  }

  it('reads every VM, sorted, as one publication', async () => {
    await publish('web02', 3, '1');
    await publish('web01', 7, '1');
    const vms = await readPublishedVms(xs);
    expect(vms.map((v) => [v.vm, v.generation, v.state])).toEqual([
      ['web01', '7', 'running'],
      ['web02', '3', 'running'],
    ]);
    expect(vms[0]!.cloneVifs).toEqual([{ devid: 0, name: 'zcv5.0', masked: '1' }]);
  });

  it('reads again when a publication lands in between, and never mixes two', async () => {
    await publish('web01', 7, '1');
    const [web01] = (await readPublishedVms(racing('web01', 2))).filter((v) => v.vm === 'web01');
    // The first pass saw generation 7 (masked) and then 101 (unmasked) and
    // 102 (masked) landed: the result is the last publication, whole.
    expect(await xs.read(vmLeaf('web01', 'generation'))).toBe('102');
    expect(web01).toMatchObject({ generation: '102', cloneVifs: [{ masked: '1' }] });
  });

  it('trusts no generation of a subtree that keeps changing while read', async () => {
    await publish('web01', 7, '1');
    const [web01] = (await readPublishedVms(racing('web01', 100))).filter((v) => v.vm === 'web01');
    expect(web01!.generation).toBeUndefined();
  });
});
