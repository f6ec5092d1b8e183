// From an xl config to what the simulator builds: the subset of libxl's
// domain config that matters here, with libxl's defaults filled in.
import { randomBytes, randomUUID } from 'node:crypto';
import {
  type DiskSpec,
  type XlConfig,
  XlConfigError,
  cfgList,
  cfgNumber,
  cfgString,
  parseDiskSpec,
  parseVifSpec,
  vdevToDevid,
} from '../xl/config.js';

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

export interface DiskDev extends DiskSpec {
  devid: number;
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
  const v = cfgString(cfg, key) ?? dflt;
  if (!ACTIONS.has(v)) throw new XlConfigError(`Unknown ${key} action "${v}" specified`);
  return v;
}

function bool(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  return !['0', 'false', 'no', 'off', ''].includes(v.toLowerCase());
}

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(\/(\d{1,2}))?$/;

function cidr(text: string, what: string): string {
  const m = CIDR.exec(text.trim());
  if (!m || [1, 2, 3, 4].some((i) => Number(m[i]) > 255) || Number(m[6] ?? 24) > 32) {
    throw new XlConfigError(`${what}: '${text}' is not an IPv4 address (a.b.c.d or a.b.c.d/len)`);
  }
  return m[5] ? text.trim() : `${text.trim()}/24`;
}

export function specFromConfig(cfg: XlConfig): DomainSpec {
  const name = cfgString(cfg, 'name');
  if (!name) throw new XlConfigError('Domain name must be specified.');
  if (!/^[^/\s]{1,64}$/.test(name) || /^\d+$/.test(name)) {
    throw new XlConfigError(`Invalid domain name '${name}'`);
  }
  const uuid = cfgString(cfg, 'uuid') ?? randomUUID();
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(uuid)) {
    throw new XlConfigError(`Failed to parse UUID: ${uuid}`);
  }
  const typeText = cfgString(cfg, 'type') ?? cfgString(cfg, 'builder') ?? 'pv';
  const type = typeText === 'generic' ? 'pv' : typeText;
  if (type !== 'pv' && type !== 'hvm' && type !== 'pvh') {
    throw new XlConfigError(`Invalid domain type ${typeText}.`);
  }
  const memoryMiB = cfgNumber(cfg, 'memory') ?? 128;
  const maxMemMiB = cfgNumber(cfg, 'maxmem') ?? memoryMiB;
  const vcpus = cfgNumber(cfg, 'vcpus') ?? 1;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 1) {
    throw new XlConfigError(`memory must be a positive number of MiB, got ${memoryMiB}`);
  }
  const simIps = cfgList(cfg, 'sim_ip');
  const nics: NicSpec[] = cfgList(cfg, 'vif').map((text, i) => {
    const v = parseVifSpec(text);
    const nic: NicSpec = {
      devid: v.devid ?? i,
      mac: v.mac ?? randomMac(),
      bridge: v.bridge ?? 'xenbr0',
      script: v.script ?? 'vif-bridge',
      simIps: [],
    };
    if (v.vifname !== undefined) nic.vifname = v.vifname;
    if (v.ip !== undefined) nic.ip = v.ip;
    const mine = simIps[i];
    if (mine !== undefined && mine !== '') {
      nic.simIps = mine
        .split(/[ ,]+/)
        .filter(Boolean)
        .map((a) => cidr(a, `sim_ip[${i}]`));
    } else if (v.ip !== undefined) {
      nic.simIps = v.ip
        .split(/\s+/)
        .filter(Boolean)
        .map((a) => cidr(a, `vif ${i} ip`));
    }
    return nic;
  });
  const seenVif = new Set<number>();
  for (const nic of nics) {
    if (seenVif.has(nic.devid)) throw new XlConfigError(`duplicate vif devid ${nic.devid}`);
    seenVif.add(nic.devid);
  }
  const disks: DiskDev[] = cfgList(cfg, 'disk').map((text) => {
    const d = parseDiskSpec(text);
    return { ...d, devid: vdevToDevid(d.vdev, text) };
  });
  const seenDisk = new Set<number>();
  for (const d of disks) {
    if (seenDisk.has(d.devid)) throw new XlConfigError(`duplicate disk vdev ${d.vdev}`);
    seenDisk.add(d.devid);
  }
  // libxl turns VNC on by default for HVM guests; PV guests get it through vfb.
  let vncOn = bool(cfgString(cfg, 'vnc')) ?? type === 'hvm';
  let listen = cfgString(cfg, 'vnclisten') ?? '127.0.0.1';
  let display = cfgNumber(cfg, 'vncdisplay');
  let unused = bool(cfgString(cfg, 'vncunused')) ?? true;
  if (bool(cfgString(cfg, 'nographic')) === true) vncOn = false;
  for (const vfb of cfgList(cfg, 'vfb')) {
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
    pci: cfgList(cfg, 'pci'),
    usbctrl: cfgList(cfg, 'usbctrl'),
    usbdev: cfgList(cfg, 'usbdev'),
    usbdevice: cfgList(cfg, 'usbdevice'),
    onPoweroff: action(cfg, 'on_poweroff', 'destroy'),
    onReboot: action(cfg, 'on_reboot', 'restart'),
    onCrash: action(cfg, 'on_crash', 'destroy'),
  };
  const kernel = cfgString(cfg, 'kernel');
  if (kernel !== undefined) spec.kernel = kernel;
  const cmdline = cfgString(cfg, 'cmdline') ?? cfgString(cfg, 'extra');
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
