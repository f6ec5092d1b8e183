// The simulated host's /var: an XFS with reflink on a loop device for the demo
// (so ZynClone's clones are reflinks), or a plain directory with the reason.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { simPaths } from '../../src/sim/paths.js';
import { SimFixture, canMountLoop, exec, mountsBelow } from './helpers.js';

const fixtures: SimFixture[] = [];

afterEach(async () => {
  for (const fx of fixtures.splice(0)) await fx.dispose();
});

async function fixture(prefix: string): Promise<SimFixture> {
  const fx = await SimFixture.create(prefix);
  fixtures.push(fx);
  return fx;
}

describe('sim storage', () => {
  it('falls back to a plain DIR/var and says why when XFS cannot be made', async () => {
    const fx = await fixture('zc-sim-plain-');
    const emptyBin = join(fx.work, 'empty-bin');
    mkdirSync(emptyBin);
    // No mkfs.xfs (nor anything else) on PATH: as root the reason is the missing tool.
    const up = await exec(
      process.execPath,
      [fx.entry, 'sim', 'up', '--no-network', '--storage', 'xfs', '--root', fx.root],
      { ...fx.env, PATH: emptyBin },
    );
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toMatch(
      /storage: .*\/var is a plain directory \(no reflink\): (not running as root|mkfs\.xfs not found)/,
    );
    const p = simPaths(fx.root);
    expect(statSync(p.varDir).isDirectory()).toBe(true);
    expect(mountsBelow(fx.root)).toEqual([]);
    expect(existsSync(p.storageImage)).toBe(false);
    const down = await fx.sim('down');
    expect(down.code).toBe(0);
    expect(readdirSync(fx.root)).toEqual([]);
  });

  it('refuses an unknown --storage', async () => {
    const fx = await fixture('zc-sim-badstorage-');
    const r = await fx.sim('up', '--storage', 'zfs');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--storage must be plain or xfs, not 'zfs'");
  });

  it('puts the demo VMs where a Xen host has them, disks on a reflink filesystem', async () => {
    const fx = await fixture('zc-sim-demo-');
    const demo = await fx.sim('demo', '--no-network', '--no-monitors');
    expect(demo.code, demo.stderr).toBe(0);
    const p = simPaths(fx.root);
    expect(readdirSync(p.xenConfigDir).sort()).toEqual(['db01.cfg', 'web01.cfg', 'win01.cfg']);
    expect(readdirSync(p.images).sort()).toEqual([
      'db01-root.img',
      'shared-data.img',
      'web01-root.img',
      'web01-www.img',
      'win01-c.img',
    ]);
    expect(readFileSync(join(p.xenConfigDir, 'web01.cfg'), 'utf8')).toContain(
      `target=${p.images}/web01-root.img`,
    );
    const list = await fx.xl('list');
    expect(
      list.stdout
        .split('\n')
        .slice(1, -1)
        .map((l) => l.split(/\s+/)[0]),
    ).toEqual(['Domain-0', 'web01', 'win01', 'db01']);
    if (canMountLoop) {
      expect(demo.stdout).toMatch(/storage: .*\/var is XFS with reflink on \/dev\/loop\d+/);
      expect(mountsBelow(fx.root)).toEqual([p.varDir]);
      // What ZynClone's reflink snapshot does: a clone into storage_dir shares the disk's blocks.
      const volumes = join(p.varDir, 'lib/zynclone/volumes');
      mkdirSync(volumes, { recursive: true });
      const copy = join(volumes, 'web01-clone.xvda.img');
      execFileSync('cp', ['--reflink=always', join(p.images, 'web01-root.img'), copy]);
      expect(execFileSync('filefrag', ['-v', copy], { encoding: 'utf8' })).toMatch(/\bshared\b/);
    } else {
      expect(demo.stdout).toContain('is a plain directory (no reflink)');
    }
    const down = await fx.sim('down');
    expect(down.code).toBe(0);
    expect(mountsBelow(fx.root)).toEqual([]);
    expect(readdirSync(fx.root)).toEqual([]);
  });
});
