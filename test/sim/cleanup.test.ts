// `sim down` removes every namespace, process, socket, mount, loop device and
// file the simulator made, also after the daemon was killed with SIGKILL.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findProcesses } from '../../src/sim/journal.js';
import { simPaths } from '../../src/sim/paths.js';
import { skipWithout } from '../prerequisites.js';
import {
  SimFixture,
  canMountLoop,
  exec,
  isRoot,
  loopsBackedUnder,
  mountsBelow,
} from './helpers.js';

const fixtures: SimFixture[] = [];

afterEach(async () => {
  for (const fx of fixtures.splice(0)) await fx.dispose();
});

async function leftovers(fx: SimFixture) {
  const p = simPaths(fx.root);
  const ns = await exec('ip', ['netns', 'list']);
  const image = await exec('losetup', ['-j', p.storageImage]);
  return {
    namespaces: ns.stdout.split('\n').filter((l) => l.startsWith(`${p.prefix}-`)),
    processes: findProcesses(fx.root),
    files: readdirSync(fx.root).filter((f) => !f.endsWith('.cfg')),
    mounts: mountsBelow(fx.root),
    loops: [...loopsBackedUnder(fx.root), ...image.stdout.split('\n').filter((l) => l !== '')],
  };
}

const nothing = { namespaces: [], processes: [], files: [], mounts: [], loops: [] };

async function populate(fx: SimFixture, ...upArgs: string[]): Promise<void> {
  const up = await fx.sim('up', ...upArgs);
  expect(up.code, up.stderr).toBe(0);
  writeFileSync(
    join(fx.root, 'g.cfg'),
    `name = "g"\nmemory = 16\nvif = [ 'bridge=xenbr0', 'bridge=xenbr1' ]\nsim_ip = [ "10.9.0.2/24", "10.9.1.2/24" ]\nvnc = 1\n`,
  );
  const c = await fx.xl('create', '-q', 'g.cfg');
  expect(c.code, c.stderr).toBe(0);
  expect(findProcesses(fx.root).length).toBeGreaterThanOrEqual(2);
}

describe('sim down', () => {
  it('removes everything after a normal run', async () => {
    const fx = await SimFixture.create('zc-sim-down-');
    fixtures.push(fx);
    await populate(fx);
    const down = await fx.sim('down');
    expect(down.code).toBe(0);
    expect(await leftovers(fx)).toEqual(nothing);
  });

  it('removes everything after the daemon was killed with SIGKILL', async () => {
    const fx = await SimFixture.create('zc-sim-kill-');
    fixtures.push(fx);
    await populate(fx);
    const pid = Number(readFileSync(join(fx.root, 'run/sim.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    const before = await leftovers(fx);
    if (isRoot) expect(before.namespaces.length).toBe(2);
    const down = await fx.sim('down');
    expect(down.code).toBe(0);
    expect(await leftovers(fx)).toEqual(nothing);
    expect(existsSync(join(fx.root, 'run'))).toBe(false);
  });

  it.skipIf(skipWithout(canMountLoop, 'root, /dev/loop-control and mkfs.xfs'))(
    'unmounts the XFS, detaches its loop device and deletes its image after SIGKILL',
    async () => {
      const fx = await SimFixture.create('zc-sim-xfs-kill-');
      fixtures.push(fx);
      await populate(fx, '--storage', 'xfs');
      const p = simPaths(fx.root);
      writeFileSync(join(p.varDir, 'data'), 'written on the simulated host\n');
      const pid = Number(readFileSync(join(fx.root, 'run/sim.pid'), 'utf8'));
      process.kill(pid, 'SIGKILL');
      const before = await leftovers(fx);
      expect(before.mounts).toEqual([p.varDir]);
      expect(before.loops.length).toBeGreaterThanOrEqual(1);
      const down = await fx.sim('down');
      expect(down.code, down.stderr).toBe(0);
      expect(down.stdout).toMatch(/mount .*\/var, loop device \/dev\/loop\d+, file .*var\.img/);
      expect(await leftovers(fx)).toEqual(nothing);
    },
  );
});
