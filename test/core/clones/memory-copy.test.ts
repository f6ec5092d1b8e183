// What vmclone says about a live memory copy: rounds and the final round,
// and whether the round limit ended a copy the guest outran.
import { describe, expect, it } from 'vitest';
import { type MemoryCopy, describeLiveCopy } from '../../../src/core/clones/memory-copy.js';

const copy = (rounds: number | null, finalRoundPages: number | null): MemoryCopy => ({
  method: 'live',
  fallback: null,
  copyMs: 900,
  rounds,
  finalRoundPages,
});

describe('describeLiveCopy', () => {
  it('reports a copy that converged', () => {
    expect(describeLiveCopy('web', 812.34, copy(3, 420))).toBe(
      'web was paused for 812.3 ms (live pre-copy; 3 rounds, 420 pages in the final one)',
    );
  });

  it('says when the guest outran the copy and the round limit ended it', () => {
    const text = describeLiveCopy('web', 4000, copy(7, 12288));
    expect(text).toContain(
      '7 rounds: web dirtied memory as fast as it was copied, so the round limit ended the copy',
    );
    expect(text).toContain('the final round copied 12288 pages with web suspended');
  });

  it('says nothing of rounds a helper did not report', () => {
    expect(describeLiveCopy('web', 5, copy(null, null))).toBe(
      'web was paused for 5.0 ms (live pre-copy)',
    );
  });
});
