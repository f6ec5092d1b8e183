import { describe, expect, it } from 'vitest';
import { MissingPrerequisiteError, skipIfUnavailable, skipWithout } from './prerequisites.js';

describe('test prerequisites', () => {
  it('skips tests locally when a prerequisite is missing, and runs them when it is there', () => {
    expect(skipWithout(false, 'root', false)).toBe(true);
    expect(skipWithout(true, 'root', false)).toBe(false);
    expect(skipIfUnavailable('needs root', false)).toBe(true);
    expect(skipIfUnavailable(undefined, true)).toBe(false);
  });

  it('fails under CI instead of skipping, naming what is missing', () => {
    expect(() => skipWithout(false, 'qemu-img (qemu-utils)', true)).toThrow(
      MissingPrerequisiteError,
    );
    expect(() => skipIfUnavailable('missing tools: nft', true)).toThrow(/missing tools: nft/);
  });
});
