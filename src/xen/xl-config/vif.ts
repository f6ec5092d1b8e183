import { XlSpecError } from '../errors.js';

/**
 * A vif spec string (xl-network-configuration(5)), as xl's `parse_nic_config`
 * reads it: comma-separated `key=value` items (empty items skipped, leading
 * spaces ignored, the last occurrence of a key wins), plus the flags
 * `trusted`/`untrusted`. Keys xl knows but ZynClone does not model (colo_*,
 * forwarddev, accel, ...) are kept in `extra`, in order.
 */
export interface VifSpec {
  mac?: string;
  bridge?: string;
  vifname?: string;
  script?: string;
  /** Backend (driver) domain name. */
  backend?: string;
  /** Space-separated addresses, as xl passes them to the hotplug script. */
  ip?: string;
  model?: string;
  type?: 'vif' | 'ioemu';
  rate?: string;
  gatewaydev?: string;
  mtu?: number;
  devid?: number;
  trusted?: boolean;
  extra: Array<[key: string, value: string]>;
}

const STRING_KEYS = [
  'mac',
  'bridge',
  'vifname',
  'script',
  'backend',
  'ip',
  'model',
  'type',
  'rate',
  'gatewaydev',
] as const;
type StringKey = (typeof STRING_KEYS)[number];

const MAC_RE = /^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}$/;

export function parseVif(spec: string): VifSpec {
  const out: VifSpec = { extra: [] };
  for (const raw of spec.split(',')) {
    const item = raw.replace(/^ +/, '');
    if (item === '') continue;
    if (item === 'trusted' || item === 'untrusted') {
      out.trusted = item === 'trusted';
      continue;
    }
    const eq = item.indexOf('=');
    if (eq <= 0) throw new XlSpecError('XL_VIF_SPEC', spec, `unrecognized argument '${item}'`);
    const key = item.slice(0, eq);
    const value = item.slice(eq + 1);
    if (key === 'netdev') {
      out.gatewaydev = value;
    } else if ((STRING_KEYS as readonly string[]).includes(key)) {
      setString(out, key as StringKey, value, spec);
    } else if (key === 'mtu' || key === 'devid') {
      if (!/^[0-9]+$/.test(value)) {
        throw new XlSpecError(
          'XL_VIF_SPEC',
          spec,
          `${key} must be a decimal number, not '${value}'`,
        );
      }
      out[key] = Number(value);
    } else {
      const prev = out.extra.findIndex(([k]) => k === key);
      if (prev >= 0) out.extra.splice(prev, 1);
      out.extra.push([key, value]);
    }
  }
  return out;
}

function setString(out: VifSpec, key: StringKey, value: string, spec: string): void {
  if (key === 'type') {
    if (value !== 'vif' && value !== 'ioemu') {
      throw new XlSpecError('XL_VIF_SPEC', spec, `type must be 'vif' or 'ioemu', not '${value}'`);
    }
    out.type = value;
    return;
  }
  if (key === 'mac' && !MAC_RE.test(value)) {
    throw new XlSpecError(
      'XL_VIF_SPEC',
      spec,
      `mac '${value}' is not six hex bytes separated by ':'`,
    );
  }
  out[key] = value;
}

/** Canonical spec string; `parseVif(printVif(v))` equals `v`. */
export function printVif(vif: VifSpec): string {
  const items: string[] = [];
  const add = (key: string, value: string | number | undefined) => {
    if (value === undefined) return;
    const s = String(value);
    if (s.includes(',')) {
      throw new XlSpecError('XL_VIF_SPEC', `${key}=${s}`, `a value cannot contain ','`);
    }
    items.push(`${key}=${s}`);
  };
  if (vif.mac !== undefined && !MAC_RE.test(vif.mac)) {
    throw new XlSpecError(
      'XL_VIF_SPEC',
      `mac=${vif.mac}`,
      "mac is not six hex bytes separated by ':'",
    );
  }
  for (const key of STRING_KEYS) add(key, vif[key]);
  add('mtu', vif.mtu);
  add('devid', vif.devid);
  if (vif.trusted !== undefined) items.push(vif.trusted ? 'trusted' : 'untrusted');
  for (const [k, v] of vif.extra) {
    if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(k)) {
      throw new XlSpecError('XL_VIF_SPEC', `${k}=${v}`, `'${k}' is not a vif key`);
    }
    add(k, v);
  }
  return items.join(',');
}

/** Lowercase, zero-padded `aa:bb:cc:dd:ee:ff`, as libxl prints MACs. */
export function normalizeMac(mac: string): string {
  if (!MAC_RE.test(mac)) throw new XlSpecError('XL_VIF_SPEC', `mac=${mac}`, 'not a MAC address');
  return mac
    .split(':')
    .map((b) => b.toLowerCase().padStart(2, '0'))
    .join(':');
}
