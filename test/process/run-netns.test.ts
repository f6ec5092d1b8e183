// The runner inside a real network namespace (root).
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { RunError, run } from '../../src/process/index.js';
import { skipWithout } from '../prerequisites.js';

const isRoot = process.getuid?.() === 0;

describe.skipIf(skipWithout(isRoot, 'root (network namespaces)'))(
  'run in a network namespace',
  () => {
    const ns = `zc-run-${process.pid}`;
    afterAll(() => {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {}
    });

    it('runs the program inside the namespace it is given', async () => {
      execFileSync('ip', ['netns', 'add', ns]);
      const inside = await run(['ip', '-o', 'link', 'show'], { netns: ns });
      expect(inside.argv.slice(0, 4)).toEqual(['ip', 'netns', 'exec', ns]);
      expect(
        inside.stdout
          .trim()
          .split('\n')
          .map((l) => l.split(': ')[1]),
      ).toEqual(['lo']);
      const err = await run(['true'], { netns: `${ns}-missing` }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RunError);
      expect((err as RunError).code).toBe('RUN_FAILED');
      expect((err as RunError).stderr).toMatch(
        /No such file or directory|Cannot open network namespace/,
      );
    });
  },
);
