import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_VIF_DEVID,
  VifMaskError,
  formatVifMask,
  isMasked,
  parseVifMask,
  vifMaskToHex,
} from '../../src/core/lockdown/vif-mask.js';

const masked = (text: string) =>
  [...Array(MAX_VIF_DEVID + 2).keys()].filter((d) => isMasked(parseVifMask(text), d));

describe('vif masks', () => {
  it.each([
    ['all', 'all'],
    ['none', 'none'],
    ['0x5', '0,2'],
    ['0X5', '0,2'],
    ['0x0', 'none'],
    ['0,2', '0,2'],
    [' 2 , 0 ', '0,2'],
    ['3', '3'],
    ['63', '63'],
    ['0x8000000000000000', '63'],
    ['0xffffffffffffffff', 'all'],
  ])('%j means %j', (input, canonical) => {
    expect(formatVifMask(parseVifMask(input))).toBe(canonical);
  });

  it('reads a single decimal number as one device id, never as a bitmask', () => {
    expect(masked('3')).toEqual([3]);
    expect(masked('0x3')).toEqual([0, 1]);
  });

  it('masks every device id, including ones above the range, with "all"', () => {
    const all = parseVifMask('all');
    expect(isMasked(all, 0)).toBe(true);
    expect(isMasked(all, 200)).toBe(true);
    expect(isMasked(parseVifMask('none'), 0)).toBe(false);
    expect(isMasked(parseVifMask('0,2'), 1)).toBe(false);
    expect(isMasked(parseVifMask('0,2'), -1)).toBe(false);
  });

  it.each([
    ['', /empty/],
    ['   ', /empty/],
    ['ALL', /not a device id/],
    ['0x', /1 to 16 hex digits/],
    ['0x1g', /1 to 16 hex digits/],
    ['0x11111111111111111', /1 to 16 hex digits/],
    ['64', /above 63/],
    ['99', /above 63/],
    ['100', /not a device id/],
    ['01', /no leading zeros/],
    ['-1', /not a device id/],
    ['1,,2', /empty item/],
    ['1,2,', /empty item/],
    ['1,1', /listed twice/],
    ['1.5', /not a device id/],
    ['1 2', /not a device id/],
    ['x'.repeat(257), /longer than 256/],
  ])('refuses %j', (input, reason) => {
    try {
      parseVifMask(input);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(VifMaskError);
      expect((err as VifMaskError).code).toBe('VIF_MASK_INVALID');
      expect((err as VifMaskError).message).toMatch(reason);
      expect((err as VifMaskError).message.length).toBeLessThan(400);
    }
  });

  it('round-trips every device set through the list and hex forms', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: MAX_VIF_DEVID }), { maxLength: 64 }),
        (ids) => {
          const fromList = parseVifMask(ids.length === 0 ? 'none' : ids.join(','));
          const canonical = formatVifMask(fromList);
          expect(formatVifMask(parseVifMask(canonical))).toBe(canonical);
          expect(formatVifMask(parseVifMask(vifMaskToHex(fromList)))).toBe(canonical);
          for (let d = 0; d <= MAX_VIF_DEVID; d++)
            expect(isMasked(fromList, d)).toBe(ids.includes(d));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('either parses or throws VifMaskError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        try {
          parseVifMask(s);
        } catch (err) {
          expect(err).toBeInstanceOf(VifMaskError);
        }
      }),
      { numRuns: 500 },
    );
  });
});
