/**
 * Vif masks: which of a domain's vifs (by device id) are locked down.
 *
 * Accepted text forms (surrounding whitespace is ignored):
 *   all          every vif, including vifs hot-plugged later
 *   none         no vif
 *   0x5          a bitmask, bit N = vif N (here vifs 0 and 2); `0x0` is none
 *   0,2          a list of decimal device ids; a single number `3` is the list
 *                holding vif 3 (never the bitmask 0b11: bitmasks need `0x`)
 *
 * Device ids run from 0 to MAX_VIF_DEVID. A mask that names every possible
 * device id is the same as `all`, and is normalised to it.
 */
import { ZynCloneError } from '../../errors/index.js';

export const MAX_VIF_DEVID = 63;
/** Longest accepted mask text; masks can come from guests, so bound the work. */
export const MAX_VIF_MASK_TEXT = 256;

export type VifMask =
  | { readonly all: true }
  | { readonly all: false /** sorted, distinct */; readonly devids: readonly number[] };

export class VifMaskError extends ZynCloneError<'VIF_MASK_INVALID'> {
  constructor(
    readonly input: string,
    readonly reason: string,
  ) {
    super('VIF_MASK_INVALID', `invalid vif mask ${JSON.stringify(shorten(input))}: ${reason}`);
  }
}

/** What every error message tells the user is allowed. */
export const VIF_MASK_FORMS =
  `"all", "none", a hex bitmask such as "0x5" (bit N = vif N), ` +
  `or a list of device ids 0-${MAX_VIF_DEVID} such as "0,2"`;

export const VIF_MASK_ALL: VifMask = Object.freeze({ all: true });
export const VIF_MASK_NONE: VifMask = Object.freeze({ all: false, devids: Object.freeze([]) });

const HEX = /^0[xX]([0-9a-fA-F]{1,16})$/;
const DEVID = /^(0|[1-9][0-9]?)$/;

function shorten(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}

function fromDevids(devids: Iterable<number>): VifMask {
  const sorted = [...new Set(devids)].sort((a, b) => a - b);
  if (sorted.length === MAX_VIF_DEVID + 1) return VIF_MASK_ALL;
  if (sorted.length === 0) return VIF_MASK_NONE;
  return Object.freeze({ all: false, devids: Object.freeze(sorted) });
}

/** Parses a mask in any accepted form; throws VifMaskError naming what is wrong. */
export function parseVifMask(input: string): VifMask {
  if (typeof input !== 'string') {
    throw new VifMaskError(String(input), `expected a string: ${VIF_MASK_FORMS}`);
  }
  if (input.length > MAX_VIF_MASK_TEXT) {
    throw new VifMaskError(input, `longer than ${MAX_VIF_MASK_TEXT} characters`);
  }
  const text = input.trim();
  if (text === '') throw new VifMaskError(input, `empty; use ${VIF_MASK_FORMS}`);
  if (text === 'all') return VIF_MASK_ALL;
  if (text === 'none') return VIF_MASK_NONE;

  const hex = HEX.exec(text);
  if (hex) {
    const bits = BigInt(`0x${hex[1]}`);
    const devids: number[] = [];
    for (let n = 0; n <= MAX_VIF_DEVID; n++) {
      if ((bits >> BigInt(n)) & 1n) devids.push(n);
    }
    return fromDevids(devids);
  }
  if (/^0[xX]/.test(text)) {
    throw new VifMaskError(input, 'a hex mask needs 1 to 16 hex digits after 0x');
  }

  const seen = new Set<number>();
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') throw new VifMaskError(input, `empty item in list; use ${VIF_MASK_FORMS}`);
    if (!DEVID.test(item)) {
      throw new VifMaskError(
        input,
        `${JSON.stringify(shorten(item))} is not a device id (0-${MAX_VIF_DEVID}, decimal, ` +
          `no leading zeros); use ${VIF_MASK_FORMS}`,
      );
    }
    const devid = Number(item);
    if (devid > MAX_VIF_DEVID) {
      throw new VifMaskError(input, `device id ${devid} is above ${MAX_VIF_DEVID}`);
    }
    if (seen.has(devid)) throw new VifMaskError(input, `device id ${devid} is listed twice`);
    seen.add(devid);
  }
  return fromDevids(seen);
}

/** True if `input` parses; the reason otherwise. */
export function checkVifMask(input: string): { ok: true } | { ok: false; reason: string } {
  try {
    parseVifMask(input);
    return { ok: true };
  } catch (err) {
    if (err instanceof VifMaskError) return { ok: false, reason: err.reason };
    throw err;
  }
}

export function isMasked(mask: VifMask, devid: number): boolean {
  if (!Number.isInteger(devid) || devid < 0) return false;
  if (mask.all) return true;
  return mask.devids.includes(devid);
}

/** Canonical text: `all`, `none`, or a sorted list such as `0,2`. */
export function formatVifMask(mask: VifMask): string {
  if (mask.all) return 'all';
  if (mask.devids.length === 0) return 'none';
  return mask.devids.join(',');
}

/** The bitmask form, e.g. `0x5`; `all` is every bit up to MAX_VIF_DEVID. */
export function vifMaskToHex(mask: VifMask): string {
  const devids = mask.all ? [...Array(MAX_VIF_DEVID + 1).keys()] : mask.devids;
  let bits = 0n;
  for (const d of devids) bits |= 1n << BigInt(d);
  return `0x${bits.toString(16)}`;
}

export function vifMasksEqual(a: VifMask, b: VifMask): boolean {
  return formatVifMask(a) === formatVifMask(b);
}

/** Canonical text of any accepted form; throws VifMaskError. */
export function normalizeVifMask(input: string): string {
  return formatVifMask(parseVifMask(input));
}
