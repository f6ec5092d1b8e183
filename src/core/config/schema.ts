/**
 * The one schema of ZynClone's configuration: base.json, the per-VM override
 * files and the generated guest/<vm>.cfg all hold these keys. It is a plain
 * table so that the validator, the JSON Schema export, the key=value parser and
 * docs/configuration.md all read the same facts.
 */
import {
  MAX_VIF_DEVID,
  VIF_MASK_FORMS,
  VifMaskError,
  normalizeVifMask,
} from '../lockdown/vif-mask.js';
import { CLONE_KINDS, type CloneKind } from './clone-kinds.js';
import { type ConfigIssue, showValue } from './errors.js';

export { CLONE_KINDS, type CloneKind } from './clone-kinds.js';

export const MAC_POLICIES = ['keep', 'regenerate'] as const;

/** How a clone's config carries the VM's shared volumes (src/core/volumes). */
export const SHARED_VOLUME_MODES = ['detached', 'ro'] as const;
export type SharedVolumeMode = (typeof SHARED_VOLUME_MODES)[number];
export type MacPolicy = (typeof MAC_POLICIES)[number];

export const STORAGE_BACKENDS = [
  'auto',
  'reflink',
  'copy',
  'qcow2-overlay',
  'lvm-thin',
  'lvm-snapshot',
] as const;
export type StorageBackend = (typeof STORAGE_BACKENDS)[number];

/** xl domain config keys that bind a domain to host hardware or host-side services. */
export const PERIPHERALS = [
  'pci',
  'usb',
  'usbctrl',
  'usbdev',
  'usbdevice',
  'serial',
  'vtpm',
  'p9',
  'pvcalls',
  'vdispl',
  'vsnd',
  'channel',
  'dtdev',
  'iomem',
  'ioports',
  'irqs',
  'gfx_passthru',
] as const;
export type Peripheral = (typeof PERIPHERALS)[number];

export const GUEST_OPERATIONS = [
  'status',
  'create',
  'start',
  'stop',
  'activate',
  'deactivate',
  'remove',
  'switch-volume',
] as const;
export type GuestOperation = (typeof GUEST_OPERATIONS)[number];

export interface ZyncloneConfig {
  clone_name_pattern: string;
  clone_kind: CloneKind;
  start_on_create: boolean;
  clone_vif_mask: string;
  original_vif_mask: string;
  isolation_bridge: string;
  clone_vif_prefix: string;
  mac_policy: MacPolicy;
  keep_peripherals: Peripheral[];
  storage_backend: StorageBackend;
  storage_dir: string;
  storage_volume_group: string;
  save_image_dir: string;
  memory_clone_live: boolean;
  live_save_helper: string;
  shared_volumes: string[];
  shared_volume_mode: SharedVolumeMode;
  console_enabled: boolean;
  console_listen: string;
  console_port: number;
  console_tls_cert: string;
  console_tls_key: string;
  console_splice_helper: string;
  guest_orchestration: boolean;
  guest_allowed_operations: GuestOperation[];
  guest_clone_requests: boolean;
  lockdown_ack_timeout_ms: number;
}
export type ConfigKey = keyof ZyncloneConfig;

interface SpecBase<T> {
  readonly default: T;
  /** One or two sentences for docs and the JSON Schema. */
  readonly description: string;
  /** Only base.json may set it: one value holds for every VM of the host. */
  readonly hostWide?: true;
}
export type KeySpec =
  | (SpecBase<string> & {
      readonly type: 'string';
      /** ECMA-262 pattern, shared by the validator and the JSON Schema. */
      readonly pattern: string;
      readonly maxLength: number;
      /** What the pattern means, in words, for error messages. */
      readonly allowed: string;
    })
  | (SpecBase<string> & { readonly type: 'path' })
  | (SpecBase<string> & { readonly type: 'vif-mask' })
  | (SpecBase<boolean> & { readonly type: 'boolean' })
  | (SpecBase<number> & {
      readonly type: 'integer';
      readonly minimum: number;
      readonly maximum: number;
    })
  | (SpecBase<string> & { readonly type: 'enum'; readonly values: readonly string[] })
  | (SpecBase<readonly string[]> & {
      readonly type: 'enum-list';
      readonly values: readonly string[];
    })
  | (SpecBase<readonly string[]> & {
      readonly type: 'string-list';
      readonly itemPattern: string;
      readonly itemMaxLength: number;
      readonly maxItems: number;
      readonly allowed: string;
    });

const MAX_PATH = 1024;
const NAME_CHARS = 'A-Za-z0-9._-';

export const CONFIG_SCHEMA: { readonly [K in ConfigKey]: KeySpec } = {
  clone_name_pattern: {
    type: 'string',
    default: '{vm}-clone',
    pattern: `^[${NAME_CHARS}]*\\{vm\\}[${NAME_CHARS}]*$`,
    maxLength: 36,
    allowed: `exactly one "{vm}" plus letters, digits, ".", "_" or "-"`,
    description:
      'Domain name of the clone; "{vm}" is replaced by the original VM name. ' +
      'The result must be a valid VM name that no other domain uses.',
  },
  clone_kind: {
    type: 'enum',
    values: CLONE_KINDS,
    default: 'online',
    description:
      'Kind of clone made when the command does not say: "offline" (original shut down), ' +
      '"online" (disk-only, original paused for the snapshot only), ' +
      '"memory" (xl save -p / restore -p: the clone resumes where the original was).',
  },
  start_on_create: {
    type: 'boolean',
    default: true,
    description:
      'Start the clone when it is created (state running); false leaves it in state active.',
  },
  clone_vif_mask: {
    type: 'vif-mask',
    default: 'all',
    description: `Vifs of the clone that are locked down (isolated and dropped): ${VIF_MASK_FORMS}.`,
  },
  original_vif_mask: {
    type: 'vif-mask',
    default: 'none',
    description: `Vifs of the original that are locked down while its clone is active or running: ${VIF_MASK_FORMS}.`,
  },
  isolation_bridge: {
    type: 'string',
    default: 'zc-isolated',
    pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$',
    maxLength: 15,
    allowed: 'a Linux interface name: 1-15 letters, digits, "_", "." or "-"',
    description:
      'Bridge with no uplink that masked clone vifs are attached to instead of their production bridge.',
  },
  clone_vif_prefix: {
    type: 'string',
    default: 'zcv',
    // Not a prefix of, nor prefixed by, the toolstack's own "vif"/"tap" names:
    // the standing drop rule matches this prefix, and must never catch production vifs.
    pattern: '^(?!(v|vi|t|ta)$)(?!vif|tap)[a-z][a-z0-9]{0,6}$',
    maxLength: 7,
    allowed:
      '1-7 lower-case letters or digits starting with a letter, not overlapping "vif" or "tap"',
    description:
      'Prefix of clone vif names (vifname=<prefix><first 8 hex digits of the clone UUID>.<devid>); the network domain drops ' +
      'every frame of interfaces with this prefix unless it has allowed that vif. Host-wide: base.json only.',
    hostWide: true,
  },
  mac_policy: {
    type: 'enum',
    values: MAC_POLICIES,
    default: 'keep',
    description:
      'MAC addresses of the clone\'s vifs: "keep" the original\'s or "regenerate" new ones. ' +
      'Memory clones always keep them (the running guest already uses them).',
  },
  keep_peripherals: {
    type: 'enum-list',
    values: PERIPHERALS,
    default: [],
    description:
      'Host-bound devices (xl config keys) the clone keeps; every other one is removed from ' +
      "the clone's config.",
  },
  storage_backend: {
    type: 'enum',
    values: STORAGE_BACKENDS,
    default: 'auto',
    description:
      'How clone volumes are made; "auto" picks, per disk, a copy-on-write method that the ' +
      'disk supports (lvm-thin, lvm-snapshot, reflink, qcow2-overlay), else "copy".',
  },
  storage_dir: {
    type: 'path',
    default: '/var/lib/zynclone/volumes',
    description: 'Directory for file-based clone volumes (reflink, copy, qcow2-overlay).',
  },
  storage_volume_group: {
    type: 'string',
    default: '',
    pattern: '^([A-Za-z0-9+_.][A-Za-z0-9+_.-]*)?$',
    maxLength: 127,
    allowed: 'empty or an LVM volume group name',
    description:
      'LVM volume group for lvm-snapshot clone volumes; empty means the volume group of the original disk.',
  },
  save_image_dir: {
    type: 'path',
    default: '/var/lib/zynclone/save',
    description:
      'Directory for the memory image of memory clones (xl save), removed after restore.',
  },
  memory_clone_live: {
    type: 'boolean',
    default: true,
    description:
      "Memory clones copy the original's memory while it runs (live_save_helper) and pause it " +
      'only for the last round; false, or a helper that is missing or cannot save the VM live, ' +
      'means xl save -p (paused for the whole copy).',
  },
  live_save_helper: {
    type: 'path',
    default: '/usr/lib/zynclone/zynclone-livesave',
    hostWide: true,
    description:
      'The live pre-copy helper (zynclone-livesave, shipped with ZynClone); memory clones fall ' +
      'back to xl save -p when it is not there.',
  },
  shared_volumes: {
    type: 'string-list',
    default: [],
    itemPattern: '^[\\x20-\\x7e]+$',
    itemMaxLength: 512,
    maxItems: 16,
    allowed: 'up to 16 distinct strings of 1-512 printable ASCII characters',
    description:
      'Volumes shared between the original and its clone instead of being cloned: each item is ' +
      'a virtual device name (e.g. "xvdb") or an xl disk spec.',
  },
  shared_volume_mode: {
    type: 'enum',
    values: SHARED_VOLUME_MODES,
    default: 'detached',
    description:
      'How the clone\'s config carries the shared volumes: "detached" (left out; one holder at a ' +
      'time, moved by vmclone switch-volume) or "ro" (read-only; the original stays the only writer).',
  },
  console_enabled: {
    type: 'boolean',
    default: true,
    description: "Offer the clone's console through the web console (noVNC).",
  },
  console_listen: {
    type: 'string',
    default: '127.0.0.1',
    pattern: '^[A-Za-z0-9][A-Za-z0-9.:_-]{0,252}$',
    maxLength: 253,
    allowed: 'an IP address or host name ("0.0.0.0" or "::" for every address)',
    description:
      'Address clone_console_monitor serves the web console on; loopback by default. ' +
      'Host-wide: base.json only.',
    hostWide: true,
  },
  console_port: {
    type: 'integer',
    default: 6080,
    minimum: 0,
    maximum: 65535,
    description:
      'TCP port of the web console (0: any free port, printed at start). Host-wide: base.json only.',
    hostWide: true,
  },
  console_tls_cert: {
    type: 'string',
    default: '',
    pattern: '^(/[^\\x00-\\x1f\\x7f]*)?$',
    maxLength: 1024,
    allowed: 'empty or an absolute path',
    description:
      'PEM certificate (chain) file for HTTPS; empty serves plain HTTP, fit only for loopback. ' +
      'Set together with console_tls_key. Host-wide: base.json only.',
    hostWide: true,
  },
  console_tls_key: {
    type: 'string',
    default: '',
    pattern: '^(/[^\\x00-\\x1f\\x7f]*)?$',
    maxLength: 1024,
    allowed: 'empty or an absolute path',
    description:
      'PEM private key file for console_tls_cert (readable by clone_console_monitor only). ' +
      'Host-wide: base.json only.',
    hostWide: true,
  },
  console_splice_helper: {
    type: 'string',
    default: '/usr/lib/zynclone/zynclone-console-splice',
    pattern: '^(/[^\\x00-\\x1f\\x7f]*)?$',
    maxLength: 1024,
    allowed: 'empty or an absolute path',
    description:
      "The web console's zero-copy helper (zynclone-console-splice, shipped with ZynClone): it " +
      'moves VNC -> browser bytes with splice(2). Empty, a helper that is not there, or TLS ' +
      '(console_tls_cert) means the proxy copies them itself. Host-wide: base.json only.',
    hostWide: true,
  },
  guest_orchestration: {
    type: 'boolean',
    default: false,
    description:
      'Accept clone requests written by the original VM itself into its XenStore area data/zynclone/.',
  },
  guest_allowed_operations: {
    type: 'enum-list',
    values: GUEST_OPERATIONS,
    default: ['status', 'create', 'start', 'stop', 'remove'],
    description:
      'Operations a guest may request when guest_orchestration is on; anything else is refused.',
  },
  guest_clone_requests: {
    type: 'boolean',
    default: false,
    description:
      "Accept requests from this VM's clones too (about themselves). A clone runs its original's " +
      'software and would ask for clones of clones, so they are refused unless this is true.',
  },
  lockdown_ack_timeout_ms: {
    type: 'integer',
    default: 10_000,
    minimum: 100,
    maximum: 600_000,
    description:
      'How long to wait for the network monitor to acknowledge a lockdown before giving up ' +
      '(the clone stays paused and the operation is rolled back).',
  },
};

export const CONFIG_KEYS = Object.keys(CONFIG_SCHEMA) as ConfigKey[];

/**
 * Version of the configuration file format, in a file's `$version` key
 * (absent: 1, the format before the key existed). A file from a newer
 * ZynClone is refused rather than half understood; `vmclone upgrade` writes it.
 */
export const CONFIG_FORMAT_VERSION = 1;

/**
 * Keys a file may carry that are not configuration: an editor hint, comments
 * (JSON has none; the packaged base.json explains itself in `$comment`), and
 * the format version.
 */
export const META_KEYS: readonly string[] = ['$schema', '$comment', '$version'];

function metaKeyProblem(key: string, value: unknown): string | undefined {
  if (key === '$schema' && typeof value !== 'string') return 'expected a string';
  if (key === '$comment') {
    const ok =
      typeof value === 'string' ||
      (Array.isArray(value) && value.every((line) => typeof line === 'string'));
    return ok ? undefined : 'expected a string or a list of strings';
  }
  if (key === '$version') {
    if (!Number.isSafeInteger(value) || (value as number) < 1) return 'expected an integer from 1';
    if ((value as number) > CONFIG_FORMAT_VERSION) {
      return `format ${value} is from a newer ZynClone; this one reads up to ${CONFIG_FORMAT_VERSION}`;
    }
  }
  return undefined;
}

export function isConfigKey(key: string): key is ConfigKey {
  return Object.hasOwn(CONFIG_SCHEMA, key);
}

export function defaultConfig(): ZyncloneConfig {
  const out: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    const d = CONFIG_SCHEMA[key].default;
    out[key] = Array.isArray(d) ? [...d] : d;
  }
  return out as unknown as ZyncloneConfig;
}

function list(values: readonly string[]): string {
  return values.map((v) => JSON.stringify(v)).join(', ');
}

/** What a key accepts, in words. */
export function allowedText(spec: KeySpec): string {
  switch (spec.type) {
    case 'string':
      return `a string: ${spec.allowed}`;
    case 'path':
      return `an absolute path without ".." (at most ${MAX_PATH} characters)`;
    case 'vif-mask':
      return `a string: ${VIF_MASK_FORMS}`;
    case 'boolean':
      return 'true or false';
    case 'integer':
      return `an integer from ${spec.minimum} to ${spec.maximum}`;
    case 'enum':
      return `one of ${list(spec.values)}`;
    case 'enum-list':
      return `a list of distinct items from ${list(spec.values)}`;
    case 'string-list':
      return `a list of ${spec.allowed}`;
  }
}

type Check = { ok: true; value: unknown } | { ok: false; message: string };

function bad(message: string): Check {
  return { ok: false, message };
}

/** Validates one value against its key's spec and returns it normalised. */
export function checkValue(key: ConfigKey, value: unknown): Check {
  const spec = CONFIG_SCHEMA[key];
  const expected = allowedText(spec);
  switch (spec.type) {
    case 'string': {
      if (typeof value !== 'string') return bad(`expected ${expected}`);
      if (value.length > spec.maxLength || !new RegExp(spec.pattern).test(value)) {
        return bad(`expected ${expected}`);
      }
      return { ok: true, value };
    }
    case 'path': {
      if (typeof value !== 'string') return bad(`expected ${expected}`);
      if (
        !value.startsWith('/') ||
        value.length > MAX_PATH ||
        /[\x00-\x1f\x7f]/.test(value) ||
        value.split('/').includes('..')
      ) {
        return bad(`expected ${expected}`);
      }
      const normalised = value.replace(/\/+/g, '/').replace(/(.)\/$/, '$1');
      return { ok: true, value: normalised };
    }
    case 'vif-mask': {
      if (typeof value === 'number') {
        return bad(
          `write the mask as a string: "${value}" means vif ${value}, ` +
            `"0x${value.toString(16)}" is a bitmask; expected ${expected}`,
        );
      }
      if (typeof value !== 'string') return bad(`expected ${expected}`);
      try {
        return { ok: true, value: normalizeVifMask(value) };
      } catch (err) {
        if (err instanceof VifMaskError) return bad(`${err.reason}; expected ${expected}`);
        throw err;
      }
    }
    case 'boolean':
      return typeof value === 'boolean' ? { ok: true, value } : bad(`expected ${expected}`);
    case 'integer': {
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
        return bad(`expected ${expected}`);
      }
      if (value < spec.minimum || value > spec.maximum) return bad(`expected ${expected}`);
      return { ok: true, value };
    }
    case 'enum':
      return typeof value === 'string' && spec.values.includes(value)
        ? { ok: true, value }
        : bad(`expected ${expected}`);
    case 'enum-list': {
      if (!Array.isArray(value)) return bad(`expected ${expected}`);
      const seen = new Set<string>();
      for (const item of value) {
        if (typeof item !== 'string' || !spec.values.includes(item)) {
          return bad(`item ${showValue(item)} is not allowed; expected ${expected}`);
        }
        if (seen.has(item)) return bad(`item ${showValue(item)} is listed twice`);
        seen.add(item);
      }
      return { ok: true, value: [...value] };
    }
    case 'string-list': {
      if (!Array.isArray(value)) return bad(`expected ${expected}`);
      if (value.length > spec.maxItems) return bad(`more than ${spec.maxItems} items`);
      const re = new RegExp(spec.itemPattern);
      const seen = new Set<string>();
      for (const item of value) {
        if (typeof item !== 'string' || item.length > spec.itemMaxLength || !re.test(item)) {
          return bad(`item ${showValue(item)} is not allowed; expected ${expected}`);
        }
        if (seen.has(item)) return bad(`item ${showValue(item)} is listed twice`);
        seen.add(item);
      }
      return { ok: true, value: [...value] };
    }
  }
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(up + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

/** The known key closest to `key`, if it is close enough to be a typo. */
export function suggestKey(key: string): ConfigKey | undefined {
  const probe = key.toLowerCase().replace(/-/g, '_');
  let best: ConfigKey | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const known of CONFIG_KEYS) {
    const d = editDistance(probe.slice(0, 64), known);
    if (d < bestDistance) {
      best = known;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 4)) ? best : undefined;
}

export function unknownKeyMessage(key: string): string {
  const guess = suggestKey(key);
  return guess === undefined
    ? 'unknown key (see docs/configuration.md for the keys)'
    : `unknown key; did you mean "${guess}"?`;
}

/**
 * Validates a parsed configuration object (base or override): every key known,
 * every value allowed. Returns the normalised values and every issue found.
 */
export function validateConfigObject(
  obj: unknown,
  file: string,
): { values: Partial<ZyncloneConfig>; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  const values: Record<string, unknown> = {};
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    issues.push({ file, message: 'expected a JSON object of configuration keys' });
    return { values: {}, issues };
  }
  for (const [key, value] of Object.entries(obj)) {
    if (META_KEYS.includes(key)) {
      const problem = metaKeyProblem(key, value);
      if (problem !== undefined)
        issues.push({ file, key, value: showValue(value), message: problem });
      continue;
    }
    if (!isConfigKey(key)) {
      issues.push({ file, key: key.slice(0, 64), message: unknownKeyMessage(key) });
      continue;
    }
    const check = checkValue(key, value);
    if (check.ok) values[key] = check.value;
    else issues.push({ file, key, value: showValue(value), message: check.message });
  }
  return { values: values as Partial<ZyncloneConfig>, issues };
}

/**
 * Reads a value typed on a command line (`vmclone config VM --set key=value`)
 * into the JSON type of `key`. Lists: `a,b`, or JSON `["a","b"]`, or `` / `[]`
 * for empty; a string-list item may contain commas, so a bare word there is
 * one item. Booleans: true/false, yes/no, on/off.
 */
export function parseValueText(key: ConfigKey, text: string): unknown {
  const spec = CONFIG_SCHEMA[key];
  const t = text.trim();
  switch (spec.type) {
    case 'string':
    case 'path':
    case 'vif-mask':
    case 'enum':
      return text;
    case 'boolean': {
      const lower = t.toLowerCase();
      if (['true', 'yes', 'on'].includes(lower)) return true;
      if (['false', 'no', 'off'].includes(lower)) return false;
      return text;
    }
    case 'integer':
      return /^-?[0-9]{1,16}$/.test(t) ? Number(t) : text;
    case 'enum-list':
    case 'string-list': {
      if (t === '' || t === '[]') return [];
      if (t.startsWith('[')) {
        try {
          return JSON.parse(t) as unknown;
        } catch {
          return text;
        }
      }
      if (spec.type === 'string-list') return [text];
      return t.split(',').map((s) => s.trim());
    }
  }
}

/** The schema as JSON Schema (draft 2020-12), for editors and other tools. */
export function configJsonSchema(): Record<string, unknown> {
  const properties: Record<string, unknown> = {
    $schema: { type: 'string', description: 'Editor hint; ignored by ZynClone.' },
    $comment: {
      description: 'Comments for people; ignored by ZynClone.',
      anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }],
    },
    $version: {
      type: 'integer',
      minimum: 1,
      maximum: CONFIG_FORMAT_VERSION,
      description: 'File format version (absent: 1); written by vmclone upgrade.',
    },
  };
  for (const key of CONFIG_KEYS) {
    const spec = CONFIG_SCHEMA[key];
    const common = { description: spec.description, default: spec.default };
    switch (spec.type) {
      case 'string':
        properties[key] = {
          type: 'string',
          maxLength: spec.maxLength,
          pattern: spec.pattern,
          ...common,
        };
        break;
      case 'path':
        properties[key] = {
          type: 'string',
          maxLength: MAX_PATH,
          pattern: '^(?!(.*/)?\\.\\.(/|$))/[^\\x00-\\x1f\\x7f]*$',
          ...common,
        };
        break;
      case 'vif-mask': {
        const devid = '(6[0-3]|[1-5][0-9]|[0-9])';
        properties[key] = {
          type: 'string',
          maxLength: 256,
          pattern: `^\\s*(all|none|0[xX][0-9a-fA-F]{1,16}|${devid}(\\s*,\\s*${devid})*)\\s*$`,
          ...common,
        };
        break;
      }
      case 'boolean':
        properties[key] = { type: 'boolean', ...common };
        break;
      case 'integer':
        properties[key] = {
          type: 'integer',
          minimum: spec.minimum,
          maximum: spec.maximum,
          ...common,
        };
        break;
      case 'enum':
        properties[key] = { type: 'string', enum: [...spec.values], ...common };
        break;
      case 'enum-list':
        properties[key] = {
          type: 'array',
          items: { enum: [...spec.values] },
          uniqueItems: true,
          ...common,
        };
        break;
      case 'string-list':
        properties[key] = {
          type: 'array',
          maxItems: spec.maxItems,
          items: {
            type: 'string',
            minLength: 1,
            maxLength: spec.itemMaxLength,
            pattern: spec.itemPattern,
          },
          uniqueItems: true,
          ...common,
        };
        break;
    }
  }
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'urn:zynclone:config',
    title: 'ZynClone configuration (base.json and override/<vm>.json)',
    description: `Every key is optional. Vif device ids run from 0 to ${MAX_VIF_DEVID}.`,
    type: 'object',
    additionalProperties: false,
    properties,
  };
}

/** The committed JSON Schema file's exact text. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
