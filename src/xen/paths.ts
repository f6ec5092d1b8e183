import { XenError } from './errors.js';

/**
 * libxl's XenStore layout (`docs/misc/xenstore-paths.pandoc`,
 * `tools/libs/light/libxl_device.c`, `libxl_create.c`), as absolute paths.
 */

export type DomId = number & { readonly __brand: 'DomId' };
export type VmUuid = string & { readonly __brand: 'VmUuid' };

/** Largest domid a guest can have; DOMID_FIRST_RESERVED (0x7FF0) and above are special. */
export const DOMID_MAX_GUEST = 0x7fef;

export function domId(n: number | string): DomId {
  const v = typeof n === 'string' && /^[0-9]+$/.test(n) ? Number(n) : n;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > DOMID_MAX_GUEST) {
    throw new XenError('XEN_BAD_DOMID', `'${n}' is not a domain id (0..${DOMID_MAX_GUEST})`);
  }
  return v as DomId;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Accepts any case; returns the lowercase form libxl writes. */
export function vmUuid(s: string): VmUuid {
  const v = s.toLowerCase();
  if (!UUID_RE.test(v)) throw new XenError('XEN_BAD_UUID', `'${s}' is not a UUID`);
  return v as VmUuid;
}

export function isVmUuid(s: string): boolean {
  return UUID_RE.test(s.toLowerCase());
}

export type DeviceKind =
  | 'vif'
  | 'vbd'
  | 'qdisk'
  | 'console'
  | 'vkbd'
  | 'vfb'
  | 'vtpm'
  | 'pci'
  | 'qusb';

/** xenbus_state from `xen/include/public/io/xenbus.h`. */
export enum XenbusState {
  Unknown = 0,
  Initialising = 1,
  InitWait = 2,
  Initialised = 3,
  Connected = 4,
  Closing = 5,
  Closed = 6,
  Reconfiguring = 7,
  Reconfigured = 8,
}

export function parseXenbusState(raw: string): XenbusState {
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n < 0 || n > 8 || raw.trim() === '') {
    throw new XenError('XEN_BAD_STATE', `'${raw}' is not a xenbus state`);
  }
  return n as XenbusState;
}

export const releaseDomainWatch = '@releaseDomain';
export const introduceDomainWatch = '@introduceDomain';

export const xsPaths = {
  domain: (d: DomId) => `/local/domain/${d}`,
  name: (d: DomId) => `/local/domain/${d}/name`,
  domid: (d: DomId) => `/local/domain/${d}/domid`,
  /** Holds the `/vm/<uuid>` path of the domain. */
  vmLink: (d: DomId) => `/local/domain/${d}/vm`,
  vm: (u: VmUuid) => `/vm/${u}`,
  vmName: (u: VmUuid) => `/vm/${u}/name`,
  vmUuid: (u: VmUuid) => `/vm/${u}/uuid`,
  memoryTarget: (d: DomId) => `/local/domain/${d}/memory/target`,
  controlShutdown: (d: DomId) => `/local/domain/${d}/control/shutdown`,
  /** Guest-writable area (libxl makes `~/data` writable by the guest). */
  data: (d: DomId) => `/local/domain/${d}/data`,
  console: (d: DomId) => `/local/domain/${d}/console`,
  consoleTty: (d: DomId) => `/local/domain/${d}/console/tty`,
  vncPort: (d: DomId) => `/local/domain/${d}/console/vnc-port`,
  vncListen: (d: DomId) => `/local/domain/${d}/console/vnc-listen`,
  /** libxl's private per-domain area. */
  libxl: (d: DomId) => `/libxl/${d}`,

  frontendDir: (d: DomId, kind: DeviceKind) => `/local/domain/${d}/device/${kind}`,
  frontend: (d: DomId, kind: DeviceKind, devid: number) =>
    `/local/domain/${d}/device/${kind}/${devid}`,
  backendDir: (backend: DomId, kind: DeviceKind, d: DomId) =>
    `/local/domain/${backend}/backend/${kind}/${d}`,
  backend: (backend: DomId, kind: DeviceKind, d: DomId, devid: number) =>
    `/local/domain/${backend}/backend/${kind}/${d}/${devid}`,

  vifFrontend: (d: DomId, devid: number) => xsPaths.frontend(d, 'vif', devid),
  vifBackend: (backend: DomId, d: DomId, devid: number) =>
    xsPaths.backend(backend, 'vif', d, devid),
  vbdFrontend: (d: DomId, devid: number) => xsPaths.frontend(d, 'vbd', devid),
  vbdBackend: (backend: DomId, d: DomId, devid: number) =>
    xsPaths.backend(backend, 'vbd', d, devid),
  state: (deviceDir: string) => `${deviceDir}/state`,
} as const;

/**
 * Virtual device name to the numeric id libxl uses for vbds (xen-vbd-interface(7)):
 * xvdX -> 202<<8 | n<<4 (or the extended 1<<28 form past xvdp), hdX -> 3/22 major, sdX -> 8 major.
 */
export function vdevToDevid(vdev: string): number {
  const m = /^(xvd|hd|sd)([a-z]+)([0-9]*)$/.exec(vdev);
  if (!m) {
    const d = /^d([0-9]+)(?:p([0-9]+))?$/.exec(vdev);
    if (d) return (1 << 28) | (Number(d[1]) << 8) | Number(d[2] ?? 0);
    throw new XenError('XEN_BAD_VDEV', `'${vdev}' is not a virtual device name`);
  }
  let disk = 0;
  for (const ch of m[2]!) disk = disk * 26 + (ch.charCodeAt(0) - 96);
  disk -= 1;
  const part = m[3] === '' ? 0 : Number(m[3]);
  if (m[1] === 'xvd') {
    if (disk < 16 && part < 16) return (202 << 8) | (disk << 4) | part;
    return (1 << 28) | (disk << 8) | part;
  }
  if (m[1] === 'hd') {
    if (disk > 3 || part > 63) throw new XenError('XEN_BAD_VDEV', `'${vdev}' is out of range`);
    return ((disk < 2 ? 3 : 22) << 8) | ((disk % 2) << 6) | part;
  }
  if (disk > 15 || part > 15) throw new XenError('XEN_BAD_VDEV', `'${vdev}' is out of range`);
  return (8 << 8) | (disk << 4) | part;
}
