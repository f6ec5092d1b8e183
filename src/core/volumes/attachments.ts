/**
 * Who has a volume attached, read from the backends libxl writes in
 * XenStore (docs/misc/xenstore-paths.pandoc), and the single-writer rule
 * that vmclone applies before every attach. Xen's own check (the block
 * hotplug script's check_sharing) runs for phy backends only and exempts
 * domains with the same /vm UUID; this one covers every backend type and
 * exempts nobody.
 */
import { realpathSync, statSync } from 'node:fs';
import { XlConfig, isCdrom, isReadOnly, parseDisk } from '../../xen/index.js';
import { type XsWaitClient, waitUntil } from '../../xen/xs-wait.js';
import { VolumeError } from './errors.js';

/** Backend device types a disk can have under /local/domain/<backend>/backend/. */
export const DISK_BACKEND_KINDS = ['vbd', 'qdisk', 'vbd3'] as const;

/** What the volume reads need from a XenStore client (XsClient has it). */
export interface VolumeXs extends XsWaitClient {
  directory(path: string): Promise<string[]>;
}

export type AccessMode = 'r' | 'w';

export interface VolumeAttachment {
  readonly domid: number;
  /** The vbd device id (xen-vbd-interface(7)), as the backend names it. */
  readonly devid: number;
  readonly mode: AccessMode;
  readonly backendPath: string;
  readonly frontendPath: string | undefined;
}

/** A volume as the backends may name it: its real path, and its device number if a block device. */
export interface VolumeIdentity {
  readonly path: string;
  /** `major:minor` in hex, as the block script writes `physical-device`. */
  readonly device: string | undefined;
}

export function volumeIdentity(target: string): VolumeIdentity {
  let path = target;
  let device: string | undefined;
  try {
    path = realpathSync(target);
    const st = statSync(path);
    if (st.isBlockDevice()) {
      device = `${Math.floor(st.rdev / 256).toString(16)}:${(st.rdev % 256).toString(16)}`;
    }
  } catch {
    // A missing target matches by its path only.
  }
  return { path, device };
}

/** A backend's `params`: a path, or `<format>:<path>` (qdisk). */
export function paramsPath(params: string): string {
  const m = /^[a-z0-9]+:(\/.*)$/.exec(params);
  return m ? m[1]! : params;
}

function normalizedPath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function matches(id: VolumeIdentity, params: string | undefined, device: string | undefined) {
  if (id.device !== undefined && device !== undefined && device.trim() === id.device) return true;
  return params !== undefined && params !== '' && normalizedPath(paramsPath(params)) === id.path;
}

async function list(xs: VolumeXs, path: string): Promise<string[]> {
  try {
    return await xs.directory(path);
  } catch (err) {
    if ((err as { errno?: string }).errno === 'ENOENT') return [];
    throw err;
  }
}

/** A disk backend as found in XenStore, with what names its volume. */
export interface DiskBackend extends VolumeAttachment {
  readonly params: string | undefined;
  readonly physicalDevice: string | undefined;
}

/** Every disk backend of `backendDomid` (dom0: the storage backend domain here). */
export async function listDiskBackends(xs: VolumeXs, backendDomid = 0): Promise<DiskBackend[]> {
  const found: DiskBackend[] = [];
  for (const kind of DISK_BACKEND_KINDS) {
    const base = `/local/domain/${backendDomid}/backend/${kind}`;
    for (const dom of await list(xs, base)) {
      if (!/^[0-9]+$/.test(dom)) continue;
      for (const dev of await list(xs, `${base}/${dom}`)) {
        if (!/^[0-9]+$/.test(dev)) continue;
        const be = `${base}/${dom}/${dev}`;
        const [params, physicalDevice, mode, frontend] = await Promise.all([
          xs.tryRead(`${be}/params`),
          xs.tryRead(`${be}/physical-device`),
          xs.tryRead(`${be}/mode`),
          xs.tryRead(`${be}/frontend`),
        ]);
        found.push({
          domid: Number(dom),
          devid: Number(dev),
          // Anything but an explicit read-only mode may write.
          mode: mode === 'r' || mode === 'ro' ? 'r' : 'w',
          backendPath: be,
          frontendPath: frontend,
          params,
          physicalDevice,
        });
      }
    }
  }
  return found;
}

/** The backends among `all` that have `id` attached. */
export function attachmentsOf(all: readonly DiskBackend[], id: VolumeIdentity): DiskBackend[] {
  return all.filter((b) => matches(id, b.params, b.physicalDevice));
}

/** Every disk backend that has `id` attached. */
export async function findAttachments(
  xs: VolumeXs,
  id: VolumeIdentity,
): Promise<VolumeAttachment[]> {
  return attachmentsOf(await listDiskBackends(xs), id);
}

/**
 * The attachment that forbids attaching the volume to `want`, if any: a
 * writable attach conflicts with any other attachment, a read-only one with
 * another writable one (check_sharing's rule). The same device of the same
 * domain is not a conflict (it is that attachment).
 */
export function sharingConflict(
  existing: readonly Pick<VolumeAttachment, 'domid' | 'devid' | 'mode'>[],
  want: { readonly domid: number; readonly devid: number; readonly mode: AccessMode },
): Pick<VolumeAttachment, 'domid' | 'devid' | 'mode'> | undefined {
  return existing.find(
    (e) =>
      !(e.domid === want.domid && e.devid === want.devid) && (want.mode === 'w' || e.mode === 'w'),
  );
}

/**
 * Why the guest would not let go of a device: the error node its frontend
 * wrote. Windows xenvbd writes `<frontend>/error` ("Unplug failed due to
 * open handle(s)!"); Linux's xenbus_dev_error writes
 * `/local/domain/<domid>/error/device/vbd/<devid>/error` ("16 Device in use...").
 */
export async function frontendError(
  xs: VolumeXs,
  domid: number,
  devid: number,
  frontendPath = `/local/domain/${domid}/device/vbd/${devid}`,
): Promise<string | undefined> {
  for (const p of [
    `${frontendPath}/error`,
    `/local/domain/${domid}/error/device/vbd/${devid}/error`,
  ]) {
    const v = await xs.tryRead(p).catch(() => undefined);
    // Guest-written: bounded and printable before it reaches a terminal.
    if (v !== undefined && v.trim() !== '') return v.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
  }
  return undefined;
}

/**
 * vmclone's check before it boots a domain from `configText`: none of its
 * disks may be attached anywhere in a way the single-writer rule forbids.
 */
export async function assertDisksFree(
  xs: VolumeXs,
  configText: string,
  source: string,
): Promise<void> {
  const cfg = XlConfig.parse(configText, source);
  const all = await listDiskBackends(xs);
  for (const text of cfg.getStrings('disk') ?? []) {
    const d = parseDisk(text);
    if (d.target === undefined || d.format === 'empty' || isCdrom(d)) continue;
    const conflict = sharingConflict(attachmentsOf(all, volumeIdentity(d.target)), {
      domid: -1,
      devid: -1,
      mode: isReadOnly(d) ? 'r' : 'w',
    });
    if (conflict !== undefined) {
      throw new VolumeError(
        'VOLUME_TWO_WRITERS',
        `not booting ${source}: its disk ${d.vdev ?? d.target} (${d.target}) is attached to domain ` +
          `${conflict.domid} ${conflict.mode === 'w' ? 'writable' : 'read-only'}, and a volume never has two writers`,
      );
    }
  }
}

const CLOSED = 6;

/** Resolves once the device's backend and frontend are closed (state 6) or gone. */
export async function waitDeviceClosed(
  xs: VolumeXs,
  a: Pick<VolumeAttachment, 'backendPath' | 'frontendPath'>,
  timeoutMs: number,
): Promise<void> {
  const dirs = [a.backendPath, ...(a.frontendPath === undefined ? [] : [a.frontendPath])];
  await waitUntil(
    xs,
    dirs.map((d) => `${d}/state`),
    async () => {
      for (const d of dirs) {
        const s = await xs.tryRead(`${d}/state`);
        if (s !== undefined && Number(s) !== CLOSED) return undefined;
      }
      return true;
    },
    `${dirs.join(' and ')} to close`,
    { timeoutMs },
  );
}

/** Resolves once the device's backend is Connected (4): the guest has taken it. */
export async function waitDeviceConnected(
  xs: VolumeXs,
  backendPath: string,
  timeoutMs: number,
): Promise<void> {
  await waitUntil(
    xs,
    [`${backendPath}/state`],
    async () => ((await xs.tryRead(`${backendPath}/state`)) === '4' ? true : undefined),
    `${backendPath} to connect`,
    { timeoutMs },
  );
}
