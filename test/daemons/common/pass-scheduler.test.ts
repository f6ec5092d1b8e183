import { describe, expect, it } from 'vitest';
import { PassScheduler } from '../../../src/daemons/common/pass-scheduler.js';

function recorder(failFirst = 0) {
  const passes: Array<{ full: boolean; dirty: string[] }> = [];
  const errors: number[] = [];
  let failures = failFirst;
  const s = new PassScheduler({
    pass: async (full, dirty) => {
      passes.push({ full, dirty: [...dirty].sort() });
      if (failures-- > 0) throw new Error('boom');
    },
    onError: (_err, retryMs) => errors.push(retryMs),
    retryMinMs: 5,
    retryMaxMs: 20,
  });
  return { s, passes, errors };
}

describe('PassScheduler', () => {
  it('coalesces what arrives before a pass into that pass, one pass at a time', async () => {
    const { s, passes } = recorder();
    s.markDirty('a');
    s.markDirty('b');
    s.markDirty('a');
    await s.idle();
    expect(passes).toEqual([{ full: true, dirty: ['a', 'b'] }]);
    s.markDirty('c');
    await s.idle();
    expect(passes.at(-1)).toEqual({ full: false, dirty: ['c'] });
    await s.stop();
  });

  it('retries a failed pass as a full pass after a doubling delay', async () => {
    const { s, passes, errors } = recorder(2);
    s.markDirty('a');
    await new Promise((r) => setTimeout(r, 60));
    await s.idle();
    expect(errors).toEqual([5, 10]);
    expect(passes.map((p) => p.full)).toEqual([true, true, true]);
    await s.stop();
  });

  it('starts no pass after stop', async () => {
    const { s, passes } = recorder();
    await s.stop();
    s.markFull();
    await new Promise((r) => setTimeout(r, 10));
    expect(passes).toEqual([]);
  });
});
