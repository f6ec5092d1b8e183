// The test lab itself: a lab whose creation fails leaves no namespace behind,
// since the test that asked for it never gets it to destroy.
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { skipWithout } from '../../prerequisites.js';
import { Lab, run } from './lab.js';

const isRoot = process.getuid?.() === 0;

describe.skipIf(skipWithout(isRoot, 'root'))('net monitor test lab (root)', () => {
  const saved = process.env.PATH;
  let bin = '';
  afterEach(() => {
    process.env.PATH = saved;
    if (bin !== '') rmSync(bin, { recursive: true, force: true });
  });

  it('deletes its namespace when its creation fails half-way', async () => {
    // `ip` is there, `sysctl` is not: the namespace is made, its setup fails.
    bin = mkdtempSync(join(tmpdir(), 'zc-lab-bin-'));
    const ip = (await run('sh', ['-c', 'command -v ip'])).stdout.trim();
    symlinkSync(ip, join(bin, 'ip'));
    process.env.PATH = bin;
    await expect(Lab.create('lk')).rejects.toThrow(/sysctl/);
    process.env.PATH = saved;
    const left = (await run('ip', ['netns', 'list'])).stdout
      .split('\n')
      .filter((l) => l.startsWith(`zclk${process.pid % 10000}`));
    expect(left).toEqual([]);
  });
});
