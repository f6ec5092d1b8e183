// libxl's XenStore layout for a domain and its devices, with libxl's
// permissions (tools/libs/light/libxl_create.c libxl__domain_make,
// libxl_dom.c libxl__build_post, libxl_device.c libxl__device_generic_add).
import type { XsClient, XsPerm, XsTransactionHandle } from '../../xenstore/index.js';

type Ops = XsClient | XsTransactionHandle;

const n = (domid: number): XsPerm => ({ domid, access: 'none' });
const r = (domid: number): XsPerm => ({ domid, access: 'read' });

/** Paths under a domain's home that libxl makes guest-owned (rwperm). */
export const GUEST_WRITABLE = [
  'control/shutdown',
  'control/feature-poweroff',
  'control/feature-reboot',
  'control/feature-suspend',
  'control/sysrq',
  'data',
  'drivers',
  'feature',
  'attr',
  'error',
] as const;

export interface DomainLayout {
  domid: number;
  name: string;
  uuid: string;
  type: 'pv' | 'hvm' | 'pvh';
  memoryMiB: number;
  maxMemMiB: number;
  vcpus: number;
  startTime: number;
}

export const domPath = (domid: number) => `/local/domain/${domid}`;
export const vmPath = (uuid: string) => `/vm/${uuid}`;
export const libxlPath = (domid: number) => `/libxl/${domid}`;

async function mknod(x: Ops, path: string, perms: XsPerm[], value = ''): Promise<void> {
  await x.write(path, value);
  await x.setPerms(path, perms);
}

async function writeAll(x: Ops, base: string, ents: Record<string, string>): Promise<void> {
  for (const [k, v] of Object.entries(ents)) await x.write(`${base}/${k}`, v);
}

export async function writeDomain(x: Ops, d: DomainLayout): Promise<void> {
  const dom = domPath(d.domid);
  const vm = vmPath(d.uuid);
  const lib = libxlPath(d.domid);
  await x.rm(dom).catch(() => {});
  await mknod(x, dom, [n(0), r(d.domid)]);
  // A reused UUID wipes the old /vm subtree, as libxl does.
  await x.rm(vm).catch(() => {});
  await mknod(x, vm, [n(0)]);
  await x.rm(lib).catch(() => {});
  await mknod(x, lib, [n(0)]);
  await mknod(x, `${lib}/device`, [n(0)]);
  await writeAll(x, lib, { type: d.type, 'dm-version': 'qemu_xen' });
  await x.write(`${dom}/vm`, vm);
  await x.write(`${dom}/name`, d.name);
  await x.write(`${vm}/name`, d.name);
  await writeAll(x, dom, {
    'control/platform-feature-multiprocessor-suspend': '1',
    'control/platform-feature-xs_reset_watches': '1',
  });
  for (const p of GUEST_WRITABLE) await mknod(x, `${dom}/${p}`, [n(d.domid)]);
  await writeAll(x, vm, {
    uuid: d.uuid,
    start_time: d.startTime.toFixed(2),
    'image/ostype': d.type === 'pv' ? 'linux' : 'hvm',
  });
  // libxl__build_post
  const memKiB = d.memoryMiB * 1024;
  await writeAll(x, dom, {
    domid: String(d.domid),
    'memory/static-max': String(d.maxMemMiB * 1024),
    'memory/target': String(memKiB),
    'memory/videoram': d.type === 'hvm' ? '8192' : '-1',
    'store/port': String(1),
    'store/ring-ref': String(0xfeffc + d.domid),
    'image/device-model-pid': '',
  });
  for (let cpu = 0; cpu < d.vcpus; cpu++) await x.write(`${dom}/cpu/${cpu}/availability`, 'online');
  // The primary console: frontend in the domain's home, backend in dom0's.
  // libxl adds it read-only to the guest (libxl__device_console_add, ro_front):
  // owned by dom0, so the guest cannot forge vnc-port or vnc-listen below it.
  const con = `${dom}/console`;
  await mknod(x, con, [n(0), r(d.domid)]);
  await writeAll(x, con, {
    'backend-id': '0',
    limit: '1048576',
    type: 'xenconsoled',
    output: 'pty',
    tty: `/dev/pts/${100 + d.domid}`,
    port: '2',
    'ring-ref': String(0xfeffd + d.domid),
  });
}

export async function writeVnc(x: Ops, domid: number, port: number, listen: string): Promise<void> {
  const con = `${domPath(domid)}/console`;
  await x.write(`${con}/vnc-port`, String(port));
  await x.write(`${con}/vnc-listen`, listen);
}

export async function removeDomain(x: Ops, domid: number, uuid: string): Promise<void> {
  for (const p of [
    domPath(domid),
    vmPath(uuid),
    libxlPath(domid),
    `/local/domain/0/backend/vif/${domid}`,
    `/local/domain/0/backend/vbd/${domid}`,
    `/local/domain/0/backend/qdisk/${domid}`,
    `/local/domain/0/backend/console/${domid}`,
    `/local/domain/0/device-model/${domid}`,
  ]) {
    await x.rm(p).catch(() => {});
  }
}

// ---- devices ---------------------------------------------------------------

export interface VifLayout {
  devid: number;
  mac: string;
  bridge: string;
  script: string;
  vifname?: string;
  ip?: string;
}

export function vifBackendPath(domid: number, devid: number): string {
  return `/local/domain/0/backend/vif/${domid}/${devid}`;
}

export function vifFrontendPath(domid: number, devid: number): string {
  return `${domPath(domid)}/device/vif/${devid}`;
}

export async function writeVif(x: Ops, domid: number, v: VifLayout): Promise<void> {
  const be = vifBackendPath(domid, v.devid);
  const fe = vifFrontendPath(domid, v.devid);
  await mknod(x, fe, [n(domid), r(0)]);
  await writeAll(x, fe, {
    backend: be,
    'backend-id': '0',
    state: '1',
    handle: String(v.devid),
    mac: v.mac,
  });
  await mknod(x, be, [n(0), r(domid)]);
  const ents: Record<string, string> = {
    frontend: fe,
    'frontend-id': String(domid),
    online: '1',
    state: '1',
    script: v.script,
    mac: v.mac,
    bridge: v.bridge,
    handle: String(v.devid),
    type: 'vif',
  };
  if (v.vifname !== undefined) ents.vifname = v.vifname;
  if (v.ip !== undefined) ents.ip = v.ip;
  await writeAll(x, be, ents);
  const lib = `${libxlPath(domid)}/device/vif/${v.devid}`;
  await writeAll(x, lib, { frontend: fe, backend: be, ...ents });
}

export interface VbdLayout {
  devid: number;
  vdev: string;
  target: string;
  format: string;
  access: 'r' | 'w';
  devtype: 'disk' | 'cdrom';
  /** `vbd` (kernel blkback) or `qdisk` (QEMU). */
  kind: 'vbd' | 'qdisk';
}

export function vbdBackendPath(domid: number, v: { devid: number; kind: string }): string {
  return `/local/domain/0/backend/${v.kind}/${domid}/${v.devid}`;
}

export function vbdFrontendPath(domid: number, devid: number): string {
  return `${domPath(domid)}/device/vbd/${devid}`;
}

export async function writeVbd(x: Ops, domid: number, v: VbdLayout): Promise<void> {
  const be = vbdBackendPath(domid, v);
  const fe = vbdFrontendPath(domid, v.devid);
  await mknod(x, fe, [n(domid), r(0)]);
  await writeAll(x, fe, {
    backend: be,
    'backend-id': '0',
    state: '1',
    'virtual-device': String(v.devid),
    'device-type': v.devtype,
  });
  await mknod(x, be, [n(0), r(domid)]);
  const ents: Record<string, string> = {
    frontend: fe,
    'frontend-id': String(domid),
    online: '1',
    removable: v.devtype === 'cdrom' ? '1' : '0',
    bootable: '1',
    state: '1',
    dev: v.vdev,
    type: v.kind === 'vbd' ? 'phy' : 'qdisk',
    mode: v.access,
    'device-type': v.devtype,
    'discard-enable': '1',
    params: v.kind === 'qdisk' ? `aio:${v.target}` : v.target,
  };
  await writeAll(x, be, ents);
  const lib = `${libxlPath(domid)}/device/vbd/${v.devid}`;
  await writeAll(x, lib, { frontend: fe, backend: be, ...ents });
}

/**
 * The xenbus handshake a booted guest and its backends go through, ending in
 * Connected (4) on both sides; the guest half writes what a real frontend
 * would (ring refs, event channel).
 */
export async function connectDevice(
  x: Ops,
  fe: string,
  be: string,
  kind: 'vif' | 'vbd',
  seed: number,
): Promise<void> {
  await x.write(`${be}/state`, '2');
  if (kind === 'vif') {
    await writeAll(x, fe, {
      'tx-ring-ref': String(1280 + seed * 2),
      'rx-ring-ref': String(1281 + seed * 2),
      'event-channel': String(19 + seed),
      'request-rx-copy': '1',
      'feature-rx-notify': '1',
      'feature-sg': '1',
    });
    await x.write(`${be}/hotplug-status`, 'connected');
  } else {
    await writeAll(x, fe, {
      'ring-ref': String(8 + seed),
      'event-channel': String(18 + seed),
      protocol: 'x86_64-abi',
    });
    await writeAll(x, be, {
      'hotplug-status': 'connected',
      sectors: '0',
      info: '0',
      'sector-size': '512',
    });
  }
  await x.write(`${fe}/state`, '4');
  await x.write(`${be}/state`, '4');
}

export async function removeDevice(x: Ops, domid: number, fe: string, be: string): Promise<void> {
  const kind = fe.split('/').slice(-2, -1)[0] ?? '';
  const devid = fe.split('/').pop() ?? '';
  await x.rm(fe).catch(() => {});
  await x.rm(be).catch(() => {});
  await x.rm(`${libxlPath(domid)}/device/${kind}/${devid}`).catch(() => {});
}
