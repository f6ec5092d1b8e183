// `sim down` removes every namespace, process, socket and file the simulator
// made, also after the daemon was killed with SIGKILL.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findProcesses } from '../../src/sim/journal.js';
import { simPaths } from '../../src/sim/paths.js';
import { SimFixture, exec, isRoot } from './helpers.js';

const fixtures: SimFixture[] = [];

afterEach(async () => {
  for (const fx of fixtures.splice(0)) await fx.dispose();
});

async function leftovers(fx: SimFixture) {
  const p = simPaths(fx.root);
  const ns = await exec('ip', ['netns', 'list']);
  return {
    namespaces: ns.stdout.split('\n').filter((l) => l.startsWith(`${p.prefix}-`)),
    processes: findProcesses(fx.root),
    files: readdirSync(fx.root).filter((f) => !f.endsWith('.cfg')),
  };
}

async function populate(fx: SimFixture): Promise<void> {
  const up = await fx.sim('up');
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
    expect(await leftovers(fx)).toEqual({ namespaces: [], processes: [], files: [] });
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
    expect(await leftovers(fx)).toEqual({ namespaces: [], processes: [], files: [] });
    expect(existsSync(join(fx.root, 'run'))).toBe(false);
  });
});
