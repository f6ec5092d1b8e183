/**
 * The clone plan: from the original's xl config and the VM's effective
 * ZynClone config to the clone's xl config. Pure: no file, process or
 * XenStore access, so every rule here is unit-tested on its own.
 */
import { createHash } from 'node:crypto';
import {
  type DiskSpec,
  type VifSpec,
  XlConfig,
  isCdrom,
  isReadOnly,
  parseDisk,
  parseVif,
  printDisk,
  printVif,
} from '../../xen/index.js';
import { type CloneKind, PERIPHERALS, type ZyncloneConfig } from '../config/schema.js';
import { type VifMask, formatVifMask, isMasked, parseVifMask } from '../lockdown/vif-mask.js';
import { CloneError } from './errors.js';

/** Linux interface names are at most 15 bytes (IFNAMSIZ - 1). */
export const IFNAME_MAX = 15;
/** The bridge xl attaches a vif to when its spec names none. */
export const XL_DEFAULT_BRIDGE = 'xenbr0';
/** Xen's OUI, as libxl uses for the MACs it makes up. */
const XEN_OUI = '00:16:3e';

export type DiskAction = 'snapshot' | 'share' | 'keep';

export interface ClassifiedDisk {
  /** Position in the original's `disk = [...]`. */
  readonly index: number;
  readonly spec: DiskSpec;
  readonly text: string;
  /**
   * snapshot: the clone gets its own copy; share: a shared volume (config
   * `shared_volumes`), never copied, one holder at a time; keep: read-only media
   * (cdroms, `access=ro`), used as is.
   */
  readonly action: DiskAction;
  readonly reason: string;
}

function sameDiskSpec(a: DiskSpec, b: DiskSpec): boolean {
  return printDisk(a) === printDisk(b);
}

/** Which of the original's disks are snapshotted, shared or kept. */
export function classifyDisks(original: XlConfig, config: ZyncloneConfig): ClassifiedDisk[] {
  const texts = listOf(original, 'disk');
  const shared = config.shared_volumes.map((item) => {
    if (/^[a-z]+[0-9a-z]*$/.test(item) && !item.includes('/')) return { vdev: item };
    try {
      return { spec: parseDisk(item) };
    } catch (err) {
      throw new CloneError(
        'CLONE_CONFIG',
        `shared_volumes item ${JSON.stringify(item)} is neither a virtual device name nor a disk spec: ${(err as Error).message}`,
        { cause: err },
      );
    }
  });
  return texts.map((text, index) => {
    let spec: DiskSpec;
    try {
      spec = parseDisk(text);
    } catch (err) {
      throw new CloneError('CLONE_CONFIG', `disk ${index}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const isShared = shared.some((s) =>
      'vdev' in s ? s.vdev === spec.vdev : sameDiskSpec(s.spec, spec),
    );
    if (isShared) return { index, spec, text, action: 'share', reason: 'listed in shared_volumes' };
    if (spec.target === undefined || spec.format === 'empty') {
      return { index, spec, text, action: 'keep', reason: 'empty drive' };
    }
    if (isCdrom(spec)) return { index, spec, text, action: 'keep', reason: 'cdrom' };
    if (isReadOnly(spec)) return { index, spec, text, action: 'keep', reason: 'read-only' };
    if (spec.vdev === undefined) {
      throw new CloneError('CLONE_CONFIG', `disk ${index} (${text}) has no virtual device name`);
    }
    return { index, spec, text, action: 'snapshot', reason: 'writable disk' };
  });
}

/** Where a snapshotted disk's copy is, as the storage layer made it. */
export interface SnapshotTarget {
  readonly vdev: string;
  /** Path of the copy: an image file or a block device. */
  readonly dest: string;
  readonly format: 'raw' | 'qcow2' | 'qcow' | 'qed' | 'vhd';
}

export interface CloneVif {
  readonly devid: number;
  /** Backend interface name: always the clone vif prefix, so the standing drop rule covers it. */
  readonly name: string;
  readonly masked: boolean;
  readonly bridge: string;
  /** undefined: libxl makes one up (no MAC known for the original's vif). */
  readonly mac: string | undefined;
  /** Its vif spec as locked now (masked: on the isolation bridge). */
  readonly spec: string;
  /** Its vif spec on its production network: what every later boot locks again. */
  readonly productionSpec: string;
}

export interface OriginalVif {
  readonly devid: number;
  readonly masked: boolean;
  /** Its configured `vifname`, if any (else libxl names it vif<domid>.<devid>). */
  readonly vifname: string | undefined;
  readonly bridge: string;
  readonly mac: string | undefined;
}

export type ConsoleType = 'vnc' | 'spice' | 'none';

export interface ClonePlanInput {
  readonly vm: string;
  readonly original: XlConfig;
  readonly config: ZyncloneConfig;
  readonly kind: CloneKind;
  readonly cloneName: string;
  /** A fresh UUID, never the original's (libxl wipes /vm/<uuid> of a reused one). */
  readonly cloneUuid: string;
  readonly originalUuid?: string;
  /** One per disk classified `snapshot`. */
  readonly snapshots: readonly SnapshotTarget[];
  /** MACs of the running original's vifs by devid (`xl list -l`), for vifs whose spec has none. */
  readonly runningMacs?: ReadonlyMap<number, string>;
}

export interface ClonePlan {
  readonly vm: string;
  readonly cloneName: string;
  readonly cloneUuid: string;
  readonly shortId: string;
  readonly kind: CloneKind;
  /** The clone's xl config file text. */
  readonly configText: string;
  /** cloneSpec null: a shared volume the clone's config leaves out (shared_volume_mode detached). */
  readonly disks: readonly (ClassifiedDisk & { readonly cloneSpec: string | null })[];
  readonly cloneVifs: readonly CloneVif[];
  readonly originalVifs: readonly OriginalVif[];
  readonly cloneVifMask: string;
  readonly originalVifMask: string;
  readonly removedPeripherals: readonly string[];
  readonly console: { readonly type: ConsoleType; readonly enabled: boolean };
  readonly warnings: readonly string[];
}

function listOf(cfg: XlConfig, key: string): string[] {
  try {
    return cfg.getStrings(key) ?? [];
  } catch (err) {
    throw new CloneError('CLONE_CONFIG', `${cfg.source}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function stringOf(cfg: XlConfig, key: string): string | undefined {
  try {
    return cfg.getString(key);
  } catch {
    return undefined;
  }
}

function truthy(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  return !['0', 'false', 'no', 'off', ''].includes(v.trim().toLowerCase());
}

/**
 * Characters of the clone id in vif names: the name `<prefix><id>.<devid>`
 * must fit IFNAMSIZ with a two-digit devid, and longer is not more useful.
 */
export function shortIdLength(prefix: string): number {
  return Math.min(8, IFNAME_MAX - prefix.length - 3);
}

/** The clone id used in its vif names, from its UUID. */
export function shortIdFor(cloneUuid: string, prefix: string): string {
  return cloneUuid.replace(/-/g, '').toLowerCase().slice(0, shortIdLength(prefix));
}

/** `<prefix><shortId>.<devid>`: at most 15 characters, a valid interface name. */
export function cloneVifName(prefix: string, shortId: string, devid: number): string {
  const name = `${prefix}${shortId}.${devid}`;
  if (name.length > IFNAME_MAX) {
    throw new CloneError(
      'CLONE_CONFIG',
      `clone vif name ${name} is longer than ${IFNAME_MAX} characters`,
    );
  }
  return name;
}

/** A stable locally-unique MAC for vif `devid` of the clone with `cloneUuid`. */
export function regeneratedMac(cloneUuid: string, devid: number): string {
  const h = createHash('sha256').update(`${cloneUuid}/${devid}`).digest();
  const bytes = [h[0]! & 0x7f, h[1]!, h[2]!].map((b) => b.toString(16).padStart(2, '0'));
  return `${XEN_OUI}:${bytes.join(':')}`;
}

/** The console the original offers: VNC wins when both are on, since only VNC is served. */
export function consoleTypeOf(cfg: XlConfig): ConsoleType {
  const type = stringOf(cfg, 'type') ?? stringOf(cfg, 'builder') ?? 'pv';
  let vnc = truthy(stringOf(cfg, 'vnc')) ?? type === 'hvm';
  if (truthy(stringOf(cfg, 'nographic')) === true) vnc = false;
  for (const vfb of listOf(cfg, 'vfb')) {
    for (const kv of vfb.split(',')) {
      const [k, v = ''] = kv.split('=').map((s) => s.trim());
      if (k === 'vnc') vnc = truthy(v) ?? vnc;
    }
  }
  if (vnc) return 'vnc';
  if (truthy(stringOf(cfg, 'spice')) === true) return 'spice';
  return 'none';
}

/** Signs that the VM is under COLO replication (Remus leaves no trace in its config). */
export function replicationIn(cfg: XlConfig): string | undefined {
  for (const text of listOf(cfg, 'disk')) {
    try {
      const d = parseDisk(text);
      if (d.colo === true || d.coloHost !== undefined)
        return `disk ${d.vdev ?? text} is a COLO disk`;
    } catch {
      // bad specs are reported by classifyDisks
    }
  }
  for (const text of listOf(cfg, 'vif')) {
    if (/(^|,)\s*colo_/.test(text)) return `vif ${text} carries COLO settings`;
  }
  return undefined;
}

/**
 * A clone vif's spec as its mask demands: a masked vif goes to the isolation
 * bridge, and loses what would route it around that bridge (a routing or NAT
 * script, gatewaydev); an unmasked one stays on its production bridge.
 */
export function lockedVifSpec(
  production: VifSpec,
  masked: boolean,
  isolationBridge: string,
): VifSpec {
  const out: VifSpec = { ...production, extra: [...production.extra] };
  out.bridge = masked ? isolationBridge : (production.bridge ?? XL_DEFAULT_BRIDGE);
  if (masked) {
    out.gatewaydev = undefined;
    if (out.script !== undefined && !/(^|\/)vif-bridge$/.test(out.script))
      out.script = 'vif-bridge';
  }
  return out;
}

function vifDevid(spec: VifSpec, index: number): number {
  return spec.devid ?? index;
}

/** The original's vifs, each with whether `original_vif_mask` masks it. */
export function originalVifsOf(
  original: XlConfig,
  mask: VifMask,
  runningMacs?: ReadonlyMap<number, string>,
): OriginalVif[] {
  return listOf(original, 'vif').map((text, index) => {
    const spec = parseVifChecked(text, index);
    const devid = vifDevid(spec, index);
    return {
      devid,
      masked: isMasked(mask, devid),
      vifname: spec.vifname,
      bridge: spec.bridge ?? XL_DEFAULT_BRIDGE,
      mac: spec.mac ?? runningMacs?.get(devid),
    };
  });
}

function parseVifChecked(text: string, index: number): VifSpec {
  try {
    return parseVif(text);
  } catch (err) {
    throw new CloneError('CLONE_CONFIG', `vif ${index}: ${(err as Error).message}`, { cause: err });
  }
}

function maskOf(text: string, key: string): VifMask {
  try {
    return parseVifMask(text);
  } catch (err) {
    throw new CloneError('CLONE_CONFIG', `${key}: ${(err as Error).message}`, { cause: err });
  }
}

/** Removes fixed VNC displays, which would collide with the original's. */
function freeVncDisplay(cfg: XlConfig): boolean {
  let changed = false;
  if (cfg.has('vncdisplay')) {
    cfg.delete('vncdisplay');
    cfg.set('vncunused', 1);
    changed = true;
  }
  const vfbs = listOf(cfg, 'vfb');
  if (vfbs.some((v) => /(^|,)\s*vncdisplay\s*=/.test(v))) {
    cfg.set(
      'vfb',
      vfbs.map((v) => {
        const items = v.split(',').filter((kv) => !/^\s*vncdisplay\s*=/.test(kv));
        if (!items.some((kv) => /^\s*vncunused\s*=/.test(kv))) items.push('vncunused=1');
        return items.join(',');
      }),
    );
    changed = true;
  }
  return changed;
}

/** Builds the clone's xl config. Throws CloneError CLONE_CONFIG naming what is wrong. */
export function planClone(input: ClonePlanInput): ClonePlan {
  const { config, original } = input;
  const cloneUuid = input.cloneUuid.toLowerCase();
  if (input.originalUuid !== undefined && input.originalUuid.toLowerCase() === cloneUuid) {
    throw new CloneError('CLONE_CONFIG', "the clone's UUID must differ from the original's");
  }
  const originalName = stringOf(original, 'name');
  if (originalName !== undefined && originalName !== input.vm) {
    throw new CloneError(
      'CLONE_CONFIG',
      `${original.source} is the config of ${originalName}, not of ${input.vm}`,
    );
  }
  const warnings: string[] = [];
  const cfg = original.clone();
  cfg.set('name', input.cloneName);
  cfg.set('uuid', cloneUuid);

  // Disks: snapshots replace the writable ones, read-only ones stay. A shared
  // volume is the original's (src/core/volumes): left out, or read-only.
  const classified = classifyDisks(original, config);
  const byVdev = new Map(input.snapshots.map((s) => [s.vdev, s]));
  const disks = classified.map((d) => {
    if (d.action === 'share') {
      const ro = config.shared_volume_mode === 'ro';
      return { ...d, cloneSpec: ro ? printDisk({ ...d.spec, access: 'ro' }) : null };
    }
    if (d.action !== 'snapshot') return { ...d, cloneSpec: d.text };
    const snap = byVdev.get(d.spec.vdev!);
    if (snap === undefined) {
      throw new CloneError('CLONE_CONFIG', `no snapshot planned for disk ${d.spec.vdev}`);
    }
    byVdev.delete(d.spec.vdev!);
    const spec: DiskSpec = { ...d.spec, target: snap.dest, format: snap.format };
    return { ...d, cloneSpec: printDisk(spec) };
  });
  if (byVdev.size > 0) {
    throw new CloneError(
      'CLONE_CONFIG',
      `snapshots for disks the clone does not snapshot: ${[...byVdev.keys()].join(', ')}`,
    );
  }
  if (disks.length > 0)
    cfg.set(
      'disk',
      disks.flatMap((d) => (d.cloneSpec === null ? [] : [d.cloneSpec])),
    );

  // Vifs: every one named with the clone prefix; masked ones on the isolation bridge.
  const cloneMask = maskOf(config.clone_vif_mask, 'clone_vif_mask');
  const originalMask = maskOf(config.original_vif_mask, 'original_vif_mask');
  const prefix = config.clone_vif_prefix;
  const shortId = shortIdFor(cloneUuid, prefix);
  const keepMacs = input.kind === 'memory' || config.mac_policy === 'keep';
  const cloneVifs = listOf(original, 'vif').map((text, index): CloneVif => {
    const spec = parseVifChecked(text, index);
    const devid = vifDevid(spec, index);
    const masked = isMasked(cloneMask, devid);
    const knownMac = spec.mac ?? input.runningMacs?.get(devid);
    const mac = keepMacs ? knownMac : regeneratedMac(cloneUuid, devid);
    if (keepMacs && mac === undefined) {
      warnings.push(
        `vif ${devid} has no MAC in the config and none is known from a running original: libxl gives the clone's a random one`,
      );
    }
    const production: VifSpec = { ...spec, extra: [...spec.extra], devid };
    production.vifname = cloneVifName(prefix, shortId, devid);
    production.mac = mac;
    production.bridge = spec.bridge ?? XL_DEFAULT_BRIDGE;
    const out = lockedVifSpec(production, masked, config.isolation_bridge);
    if (out.script !== spec.script) {
      warnings.push(
        `vif ${devid}: script ${spec.script} replaced by vif-bridge on the isolation bridge`,
      );
    }
    return {
      devid,
      name: production.vifname,
      masked,
      bridge: out.bridge!,
      mac,
      spec: printVif(out),
      productionSpec: printVif(production),
    };
  });
  if (cloneVifs.length > 0)
    cfg.set(
      'vif',
      cloneVifs.map((v) => v.spec),
    );
  const originalVifs = originalVifsOf(original, originalMask, input.runningMacs);

  // Peripheral lockdown.
  const removedPeripherals: string[] = [];
  for (const key of PERIPHERALS) {
    if (config.keep_peripherals.includes(key)) continue;
    if (cfg.delete(key)) removedPeripherals.push(key);
  }

  const consoleType = consoleTypeOf(original);
  if (consoleType === 'spice') {
    warnings.push(
      'the VM uses a SPICE console only: the clone works, but the web console (VNC) cannot show it',
    );
  }
  if (freeVncDisplay(cfg)) {
    warnings.push("the original's fixed VNC display is replaced by a free one in the clone");
  }

  return {
    vm: input.vm,
    cloneName: input.cloneName,
    cloneUuid,
    shortId,
    kind: input.kind,
    configText: `# ZynClone clone ${input.cloneName} of ${input.vm} (${input.kind}); generated, do not edit.\n${cfg.print()}`,
    disks,
    cloneVifs,
    originalVifs,
    cloneVifMask: formatVifMask(cloneMask),
    originalVifMask: formatVifMask(originalMask),
    removedPeripherals,
    console: { type: consoleType, enabled: config.console_enabled && consoleType === 'vnc' },
    warnings,
  };
}

/** Parses an xl config file's text, turning syntax errors into CLONE_CONFIG. */
export function parseOriginalConfig(text: string, source: string): XlConfig {
  try {
    return XlConfig.parse(text, source);
  } catch (err) {
    throw new CloneError('CLONE_CONFIG', (err as Error).message, { cause: err });
  }
}
