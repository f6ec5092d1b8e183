import { XlSpecError } from '../errors.js';

/**
 * A disk spec string (xl-disk-configuration(5)), read the way libxlu's disk
 * lexer (`tools/libs/util/libxlu_disk_l.l`) reads it:
 * `[key=value|flag,]* [target[, format[, vdev[, access]]]] [key=value|flag,]* [target=...]`,
 * plus the deprecated `prefix:target` forms (`phy:`, `file:`, `raw:`, `tap:aio:`,
 * `iscsi:` ...) in which the format position is skipped, so
 * `phy:/dev/vg/lv,xvdb,w` is target, vdev, access.
 *
 * `DiskSpec` is the meaning, not the spelling: ignored prefixes are dropped,
 * `r`/`w` become `ro`/`rw`, empty values are unset. `printDisk` writes the
 * key=value form with `target=` last (the only form that allows commas and
 * colons in the target); `parseDisk(printDisk(d))` equals `d`.
 */
export type DiskFormat = 'raw' | 'qcow' | 'qcow2' | 'vhd' | 'qed' | 'empty';
export type DiskBackendType = 'phy' | 'qdisk' | 'standalone' | 'tap';

export interface DiskSpec {
  /** Path or script argument; undefined for an empty cdrom drive. */
  target?: string;
  format?: DiskFormat;
  vdev?: string;
  access?: 'ro' | 'rw';
  devtype?: 'cdrom' | 'disk';
  /** Backend (driver) domain name. */
  backend?: string;
  backendtype?: DiskBackendType;
  specification?: 'xen' | 'virtio';
  script?: string;
  directIoSafe?: boolean;
  discard?: boolean;
  trusted?: boolean;
  colo?: boolean;
  coloHost?: string;
  coloPort?: string;
  coloExport?: string;
  activeDisk?: string;
  hiddenDisk?: string;
}

const FORMATS: readonly string[] = ['raw', 'qcow', 'qcow2', 'vhd', 'qed', 'empty'];
const BACKENDTYPES: readonly string[] = ['phy', 'qdisk', 'standalone', 'tap'];

const STRING_PARAMS = {
  vdev: 'vdev',
  backend: 'backend',
  script: 'script',
  'colo-host': 'coloHost',
  'colo-port': 'coloPort',
  'colo-export': 'coloExport',
  'active-disk': 'activeDisk',
  'hidden-disk': 'hiddenDisk',
} as const satisfies Record<string, keyof DiskSpec>;
type StringField = (typeof STRING_PARAMS)[keyof typeof STRING_PARAMS];

const FLAGS: Record<string, (d: DiskSpec) => void> = {
  cdrom: (d) => {
    d.devtype = 'cdrom';
  },
  'direct-io-safe': (d) => {
    d.directIoSafe = true;
  },
  discard: (d) => {
    d.discard = true;
  },
  'no-discard': (d) => {
    d.discard = false;
  },
  colo: (d) => {
    d.colo = true;
  },
  'no-colo': (d) => {
    d.colo = false;
  },
  trusted: (d) => {
    d.trusted = true;
  },
  untrusted: (d) => {
    d.trusted = false;
  },
};

const IGNORED_PREFIXES = ['tapdisk', 'tap2', 'tap', 'aio', 'ioemu', 'file', 'phy'];
const FORMAT_PREFIXES = ['raw', 'qcow2', 'qcow', 'vhd'];
const SCRIPT_PREFIXES = ['iscsi', 'enbd', 'nbd', 'drbd'];

export function parseDisk(spec: string): DiskSpec {
  const d: DiskSpec = {};
  const fail = (detail: string): never => {
    throw new XlSpecError('XL_DISK_SPEC', spec, detail);
  };
  let target: string | undefined;
  let hadPrefix = false;
  let formatSlotDone = false;
  let vdevSet = false;
  let accessSet = false;

  const setString = (field: StringField | 'target', value: string, what: string) => {
    const cur = field === 'target' ? target : d[field];
    if (cur !== undefined && cur !== '' && value !== cur) fail(`${what} respecified`);
    if (field === 'target') target = value;
    else d[field] = value;
  };
  const setFormat = (value: string) => {
    if (value !== '' && !FORMATS.includes(value)) fail(`unknown value for format: '${value}'`);
    d.format = value === '' ? undefined : (value as DiskFormat);
    formatSlotDone = true;
  };
  const setAccess = (value: string) => {
    if (value === 'r' || value === 'ro') d.access = 'ro';
    else if (value === 'w' || value === 'rw') d.access = 'rw';
    else if (value === '') d.access = undefined;
    else fail(`unknown value for access: '${value}'`);
    accessSet = true;
  };
  const setVdevMaybeDevtype = (value: string): boolean => {
    const colon = value.lastIndexOf(':');
    if (colon < 0) return false;
    setString('vdev', value.slice(0, colon), 'vdev');
    vdevSet = true;
    const t = value.slice(colon + 1);
    if (t === 'cdrom' || t === 'disk') d.devtype = t;
    else fail(`unknown deprecated type '${t}'`);
    return true;
  };

  let pos = 0;
  while (pos < spec.length) {
    const ws = /[ \t\n]+/y;
    ws.lastIndex = pos;
    const w = ws.exec(spec);
    if (w) {
      pos += w[0].length;
      continue;
    }
    const rest = spec.slice(pos);
    if (rest.startsWith('target=')) {
      setString('target', rest.slice('target='.length).replace(/,$/, ''), 'target');
      break;
    }
    const prefix = /^([a-z][a-z0-9]*):/.exec(rest);
    if (prefix) {
      const name = prefix[1]!;
      const afterPrefix = rest[prefix[0].length];
      const isKnown =
        IGNORED_PREFIXES.includes(name) ||
        FORMAT_PREFIXES.includes(name) ||
        SCRIPT_PREFIXES.includes(name);
      if (isKnown) {
        hadPrefix = true;
        if (FORMAT_PREFIXES.includes(name)) setFormat(name);
        if (SCRIPT_PREFIXES.includes(name)) setString('script', `block-${name}`, 'script');
        pos += prefix[0].length;
        continue;
      }
      if (afterPrefix !== undefined && !/[a-z0-9]/.test(afterPrefix)) {
        fail(`unknown deprecated disk prefix '${name}:'`);
      }
    }
    const comma = rest.indexOf(',');
    const item = comma < 0 ? rest : rest.slice(0, comma);
    pos += comma < 0 ? rest.length : comma + 1;
    const flag = FLAGS[item];
    if (flag) {
      flag(d);
      continue;
    }
    const eq = item.indexOf('=');
    if (eq >= 0) {
      const key = item.slice(0, eq);
      const value = item.slice(eq + 1);
      if (key === 'format') setFormat(value);
      else if (key === 'access') setAccess(value);
      else if (key === 'devtype') {
        if (value !== 'cdrom' && value !== 'disk') fail(`unknown value for devtype: '${value}'`);
        d.devtype = value as 'cdrom' | 'disk';
      } else if (key === 'backendtype') {
        if (!BACKENDTYPES.includes(value)) fail(`unknown value for backendtype: '${value}'`);
        d.backendtype = value as DiskBackendType;
      } else if (key === 'specification') {
        if (value !== 'xen' && value !== 'virtio')
          fail(`unknown value for specification: '${value}'`);
        d.specification = value as 'xen' | 'virtio';
      } else if (key in STRING_PARAMS) {
        setString(STRING_PARAMS[key as keyof typeof STRING_PARAMS], value, key);
        if (key === 'vdev') vdevSet = true;
      } else fail(`unknown parameter '${key}'`);
      continue;
    }
    // Positional parameters fill target, format, vdev, access in that order.
    if (target === undefined) {
      target = item;
    } else if (!hadPrefix && !formatSlotDone) {
      if (target === '' && setVdevMaybeDevtype(item)) formatSlotDone = true;
      else setFormat(item);
    } else if (!vdevSet) {
      if (!setVdevMaybeDevtype(item)) {
        setString('vdev', item, 'vdev');
        vdevSet = true;
      }
    } else if (!accessSet) {
      setAccess(item);
    } else {
      fail(`too many positional parameters at '${item}'`);
    }
  }
  if (target !== undefined && target !== '') d.target = target;
  for (const k of Object.keys(d) as (keyof DiskSpec)[]) {
    if (d[k] === undefined || d[k] === '') delete d[k];
  }
  return d;
}

/** Canonical key=value form, target last. */
export function printDisk(d: DiskSpec): string {
  const items: string[] = [];
  const add = (key: string, value: string | undefined) => {
    if (value === undefined || value === '') return;
    if (value.includes(',')) {
      throw new XlSpecError('XL_DISK_SPEC', `${key}=${value}`, `only target may contain ','`);
    }
    items.push(`${key}=${value}`);
  };
  add('format', d.format);
  add('vdev', d.vdev);
  add('access', d.access);
  add('devtype', d.devtype);
  add('backend', d.backend);
  add('backendtype', d.backendtype);
  add('specification', d.specification);
  add('script', d.script);
  if (d.directIoSafe) items.push('direct-io-safe');
  if (d.discard !== undefined) items.push(d.discard ? 'discard' : 'no-discard');
  if (d.trusted !== undefined) items.push(d.trusted ? 'trusted' : 'untrusted');
  if (d.colo !== undefined) items.push(d.colo ? 'colo' : 'no-colo');
  add('colo-host', d.coloHost);
  add('colo-port', d.coloPort);
  add('colo-export', d.coloExport);
  add('active-disk', d.activeDisk);
  add('hidden-disk', d.hiddenDisk);
  if (d.target !== undefined && d.target !== '') {
    // libxlu strips one trailing ',' from `target=...`, so such a target cannot be written.
    if (d.target.endsWith(',')) {
      throw new XlSpecError('XL_DISK_SPEC', `target=${d.target}`, "a target cannot end with ','");
    }
    items.push(`target=${d.target}`);
  }
  return items.join(', ');
}

export function isCdrom(d: DiskSpec): boolean {
  return d.devtype === 'cdrom';
}

/** Read-only as xl decides it: explicit access, else cdroms are read-only. */
export function isReadOnly(d: DiskSpec): boolean {
  return d.access === undefined ? isCdrom(d) : d.access === 'ro';
}
