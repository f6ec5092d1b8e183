// From an xl config (parsed by the product's src/xen/xl-config) to what the
// simulator builds: the subset of libxl's domain config that matters here,
// with libxl's defaults filled in.
import { randomBytes, randomUUID } from 'node:crypto';
import {
  type DiskFormat,
  type VifSpec,
  XenError,
  type XlConfig,
  isReadOnly,
  normalizeMac,
  parseDisk,
  parseVif,
  vdevToDevid,
} from '../../xen/index.js';
import { SimError } from '../proc.js';

/** A config xl would refuse for its meaning, not its syntax (xl prints the message, exit 1). */
export class SimConfigError extends SimError {
  constructor(message: string) {
    super('XL_BAD_CONFIG', message);
    this.name = 'SimConfigError';
  }
}

export interface NicSpec {
  devid: number;
  mac: string;
  bridge: string;
  script: string;
  vifname?: string;
  /** xl's ip= (passed to the vif script), kept as written. */
  ip?: string;
  /** Addresses the simulated guest puts on eth<devid> (CIDR). */
  simIps: string[];
}

/** A disk as libxl resolves it: defaults filled in, vdev numbered. */
export interface DiskDev {
  devid: number;
  /** '' for an empty cdrom drive. */
  target: string;
  vdev: string;
  format: DiskFormat;
  access: 'r' | 'w';
  devtype: 'disk' | 'cdrom';
  backendtype: 'phy' | 'qdisk';
  script?: string;
}

export interface VncSpec {
  listen: string;
  display?: number;
  unused: boolean;
}

export interface DomainSpec {
  name: string;
  uuid: string;
  type: 'pv' | 'hvm' | 'pvh';
  memoryMiB: number;
  maxMemMiB: number;
  vcpus: number;
  kernel?: string;
  cmdline?: string;
  nics: NicSpec[];
  disks: DiskDev[];
  vnc?: VncSpec;
  pci: string[];
  usbctrl: string[];
  usbdev: string[];
  usbdevice: string[];
  onPoweroff: string;
  onReboot: string;
  onCrash: string;
}

export function randomMac(): string {
  const b = randomBytes(3);
  return `00:16:3e:${[...b].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
}

const ACTIONS = new Set([
  'destroy',
  'restart',
  'rename-restart',
  'preserve',
  'coredump-destroy',
  'coredump-restart',
  'soft-reset',
]);

function action(cfg: XlConfig, key: string, dflt: string): string {
  const v = cfg.getString(key) ?? dflt;
  if (!ACTIONS.has(v)) throw new SimConfigError(`Unknown ${key} action "${v}" specified`);
  return v;
}

function bool(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  return !['0', 'false', 'no', 'off', ''].includes(v.toLowerCase());
}

/** A list setting; a single value counts as a one-item list, as the simulator always read it. */
function list(cfg: XlConfig, key: string): string[] {
  const v = cfg.get(key);
  if (v === undefined) return [];
  return v.kind === 'list' ? (cfg.getStrings(key) ?? []) : [cfg.getString(key)!];
}

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(\/(\d{1,2}))?$/;

function cidr(text: string, what: string): string {
  const m = CIDR.exec(text.trim());
  if (!m || [1, 2, 3, 4].some((i) => Number(m[i]) > 255) || Number(m[6] ?? 24) > 32) {
    throw new SimConfigError(`${what}: '${text}' is not an IPv4 address (a.b.c.d or a.b.c.d/len)`);
  }
  return m[5] ? text.trim() : `${text.trim()}/24`;
}

/**
 * A vif spec (product parser) as the simulator builds it. `simIp` is the
 * simulator-only `sim_ip` entry for this vif; without it the vif's `ip=` is used.
 */
export function nicFromSpec(
  text: string,
  simIp: string | undefined,
  what: string,
): Omit<NicSpec, 'devid'> & { devid?: number } {
  const v: VifSpec = parseVif(text);
  // Each vif is a real Linux interface here, so its name has the kernel's limits.
  if (v.vifname !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(v.vifname)) {
    throw new SimConfigError(
      `vifname '${v.vifname}' is not a valid interface name (1 to 15 of A-Z a-z 0-9 _ . -)`,
    );
  }
  const ips =
    simIp !== undefined && simIp !== '' ? simIp.split(/[ ,]+/) : (v.ip?.split(/\s+/) ?? []);
  const nic: Omit<NicSpec, 'devid'> & { devid?: number } = {
    mac: v.mac !== undefined ? normalizeMac(v.mac) : randomMac(),
    bridge: v.bridge ?? 'xenbr0',
    script: v.script ?? 'vif-bridge',
    simIps: ips.filter(Boolean).map((a) => cidr(a, what)),
  };
  if (v.devid !== undefined) nic.devid = v.devid;
  if (v.vifname !== undefined) nic.vifname = v.vifname;
  if (v.ip !== undefined) nic.ip = v.ip;
  return nic;
}

/** libxl__device_disk_dev_number: a vdev name, or the number itself. */
export function diskDevid(vdev: string, spec = vdev): number {
  if (/^[0-9]+$/.test(vdev)) return Number(vdev);
  try {
    return vdevToDevid(vdev);
  } catch (e) {
    if (e instanceof XenError) {
      throw new SimConfigError(`Invalid virtual disk identifier ${vdev} in '${spec}'`);
    }
    throw e;
  }
}

/** A disk spec (product parser) with libxl's defaults, as the simulator attaches it. */
export function diskFromSpec(text: string): DiskDev {
  const d = parseDisk(text);
  if (d.vdev === undefined) throw new SimConfigError(`no vdev specified in disk spec '${text}'`);
  const devtype = d.devtype ?? 'disk';
  if (d.target === undefined && devtype !== 'cdrom') {
    throw new SimConfigError(`no target specified in disk spec '${text}'`);
  }
  // xl ignores the deprecated `phy:` prefix and lets libxl choose; the simulator
  // takes it as a request for blkback (vbd), so configs can pick either backend.
  const phy =
    d.backendtype === 'phy' ||
    (d.backendtype === undefined && d.target !== undefined && text.includes(`phy:${d.target}`));
  const disk: DiskDev = {
    devid: diskDevid(d.vdev, text),
    target: d.target ?? '',
    vdev: d.vdev,
    format: d.format ?? (d.target === undefined ? 'empty' : 'raw'),
    access: isReadOnly(d) ? 'r' : 'w',
    devtype,
    backendtype: phy ? 'phy' : 'qdisk',
  };
  if (d.script !== undefined) disk.script = d.script;
  return disk;
}

export function specFromConfig(cfg: XlConfig): DomainSpec {
  const name = cfg.getString('name');
  if (!name) throw new SimConfigError('Domain name must be specified.');
  if (!/^[^/\s]{1,64}$/.test(name) || /^\d+$/.test(name)) {
    throw new SimConfigError(`Invalid domain name '${name}'`);
  }
  const uuid = cfg.getString('uuid') ?? randomUUID();
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(uuid)) {
    throw new SimConfigError(`Failed to parse UUID: ${uuid}`);
  }
  const typeText = cfg.getString('type') ?? cfg.getString('builder') ?? 'pv';
  const type = typeText === 'generic' ? 'pv' : typeText;
  if (type !== 'pv' && type !== 'hvm' && type !== 'pvh') {
    throw new SimConfigError(`Invalid domain type ${typeText}.`);
  }
  const memoryMiB = cfg.getNumber('memory') ?? 128;
  const maxMemMiB = cfg.getNumber('maxmem') ?? memoryMiB;
  const vcpus = cfg.getNumber('vcpus') ?? 1;
  if (memoryMiB < 1) {
    throw new SimConfigError(`memory must be a positive number of MiB, got ${memoryMiB}`);
  }
  // Simulator-only: the guest's addresses, one entry per vif (xl ignores unknown keys).
  const simIps = list(cfg, 'sim_ip');
  const nics: NicSpec[] = list(cfg, 'vif').map((text, i) => {
    const nic = nicFromSpec(text, simIps[i], simIps[i] ? `sim_ip[${i}]` : `vif ${i} ip`);
    return { ...nic, devid: nic.devid ?? i };
  });
  const seenVif = new Set<number>();
  for (const nic of nics) {
    if (seenVif.has(nic.devid)) throw new SimConfigError(`duplicate vif devid ${nic.devid}`);
    seenVif.add(nic.devid);
  }
  const disks = list(cfg, 'disk').map(diskFromSpec);
  const seenDisk = new Set<number>();
  for (const d of disks) {
    if (seenDisk.has(d.devid)) throw new SimConfigError(`duplicate disk vdev ${d.vdev}`);
    seenDisk.add(d.devid);
  }
  // libxl turns VNC on by default for HVM guests; PV guests get it through vfb.
  let vncOn = bool(cfg.getString('vnc')) ?? type === 'hvm';
  let listen = cfg.getString('vnclisten') ?? '127.0.0.1';
  let display = cfg.getNumber('vncdisplay');
  let unused = bool(cfg.getString('vncunused')) ?? true;
  if (bool(cfg.getString('nographic')) === true) vncOn = false;
  for (const vfb of list(cfg, 'vfb')) {
    for (const kv of vfb.split(',')) {
      const [k, v = ''] = kv.split('=').map((s) => s.trim());
      if (k === 'vnc') vncOn = bool(v) ?? vncOn;
      else if (k === 'vnclisten') listen = v;
      else if (k === 'vncdisplay') display = Number(v);
      else if (k === 'vncunused') unused = bool(v) ?? unused;
    }
  }
  const spec: DomainSpec = {
    name,
    uuid: uuid.toLowerCase(),
    type,
    memoryMiB,
    maxMemMiB: Math.max(maxMemMiB, memoryMiB),
    vcpus,
    nics,
    disks,
    pci: list(cfg, 'pci'),
    usbctrl: list(cfg, 'usbctrl'),
    usbdev: list(cfg, 'usbdev'),
    usbdevice: list(cfg, 'usbdevice'),
    onPoweroff: action(cfg, 'on_poweroff', 'destroy'),
    onReboot: action(cfg, 'on_reboot', 'restart'),
    onCrash: action(cfg, 'on_crash', 'destroy'),
  };
  const kernel = cfg.getString('kernel');
  if (kernel !== undefined) spec.kernel = kernel;
  const cmdline = cfg.getString('cmdline') ?? cfg.getString('extra');
  if (cmdline !== undefined) spec.cmdline = cmdline;
  if (vncOn) {
    spec.vnc = { listen, unused };
    if (display !== undefined) spec.vnc.display = display;
  }
  return spec;
}

function pciJson(bdf: string): Record<string, unknown> {
  const m = /^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])/.exec(bdf);
  if (!m) return { name: bdf };
  return {
    func: Number.parseInt(m[4]!, 16),
    dev: Number.parseInt(m[3]!, 16),
    bus: Number.parseInt(m[2]!, 16),
    domain: Number.parseInt(m[1] ?? '0', 16),
  };
}

function kv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

/** libxl_domain_config as `xl list -l` renders it (fields at default omitted). */
export function configJson(spec: DomainSpec, domid: number, vnc?: { display: number }) {
  const typeKey = `type.${spec.type}`;
  const typeInfo: Record<string, unknown> = {};
  if (spec.kernel !== undefined) typeInfo.kernel = spec.kernel;
  if (spec.cmdline !== undefined) typeInfo.cmdline = spec.cmdline;
  if (spec.vnc) {
    const v: Record<string, unknown> = { enable: 'True', listen: spec.vnc.listen };
    if (vnc) v.display = vnc.display;
    v.findunused = spec.vnc.unused ? 'True' : 'False';
    if (spec.type === 'hvm') typeInfo.vnc = v;
  }
  if (spec.type === 'hvm' && spec.usbdevice.length > 0) typeInfo.usbdevice_list = spec.usbdevice;
  const config: Record<string, unknown> = {
    c_info: {
      type: spec.type,
      name: spec.name,
      domid,
      uuid: spec.uuid,
      run_hotplug_scripts: 'True',
    },
    b_info: {
      max_vcpus: spec.vcpus,
      avail_vcpus: Array.from({ length: spec.vcpus }, (_, i) => i),
      max_memkb: spec.maxMemMiB * 1024,
      target_memkb: spec.memoryMiB * 1024,
      [typeKey]: typeInfo,
    },
  };
  if (spec.disks.length > 0) {
    config.disks = spec.disks.map((d) => ({
      backend_domid: 0,
      pdev_path: d.target,
      vdev: d.vdev,
      backend: d.backendtype,
      format: d.format,
      readwrite: d.access === 'w' ? 1 : 0,
      ...(d.devtype === 'cdrom' ? { is_cdrom: 1, removable: 1 } : {}),
    }));
  }
  if (spec.nics.length > 0) {
    config.nics = spec.nics.map((nic) => ({
      backend_domid: 0,
      devid: nic.devid,
      mac: nic.mac,
      ...(nic.ip !== undefined ? { ip: nic.ip } : {}),
      bridge: nic.bridge,
      ...(nic.vifname !== undefined ? { ifname: nic.vifname } : {}),
      script: nic.script,
      nictype: spec.type === 'hvm' ? 'vif_ioemu' : 'vif',
    }));
  }
  if (spec.pci.length > 0) config.pcidevs = spec.pci.map(pciJson);
  if (spec.vnc && spec.type !== 'hvm') {
    config.vfbs = [
      {
        backend_domid: 0,
        devid: 0,
        vnc: { enable: 'True', listen: spec.vnc.listen, ...(vnc ? { display: vnc.display } : {}) },
      },
    ];
  }
  if (spec.usbctrl.length > 0) {
    config.usbctrls = spec.usbctrl.map((u, i) => {
      const o = kv(u);
      return {
        type: o.type ?? 'auto',
        devid: i,
        version: Number(o.version ?? 2),
        ports: Number(o.ports ?? 8),
      };
    });
  }
  if (spec.usbdev.length > 0) {
    config.usbdevs = spec.usbdev.map((u) => {
      const o = kv(u);
      return {
        ctrl: Number(o.controller ?? 0),
        port: Number(o.port ?? 1),
        'type.hostdev': { hostbus: Number(o.hostbus ?? 0), hostaddr: Number(o.hostaddr ?? 0) },
      };
    });
  }
  if (spec.onPoweroff !== 'destroy') config.on_poweroff = spec.onPoweroff;
  config.on_reboot = spec.onReboot;
  if (spec.onCrash !== 'destroy') config.on_crash = spec.onCrash;
  return config;
}
