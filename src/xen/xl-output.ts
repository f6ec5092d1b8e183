import { XlParseError } from './errors.js';
import type { XlErrorCode } from './errors.js';
import { type DomId, type VmUuid, domId, isVmUuid, vmUuid } from './paths.js';

/** Parsers for what `xl` prints; the formats are described in docs/xl-formats.md. */

export interface XlDomainFlags {
  running: boolean;
  blocked: boolean;
  paused: boolean;
  shutdown: boolean;
  dying: boolean;
  /** Reason letter (`r` reboot, `s` suspend, `c` crash, `w` watchdog, `S` soft reset, `?`); undefined for `-`. */
  shutdownReason?: string;
}

export interface XlListEntry {
  name: string;
  domid: DomId;
  memMiB: number;
  vcpus: number;
  /** The six state letters as printed, e.g. `--p---`. */
  state: string;
  flags: XlDomainFlags;
  cpuSeconds: number;
  /** The domain's UUID as the hypervisor holds it; only from `xl list -v`. */
  uuid?: VmUuid;
}

const LIST_HEADER_RE = /^Name\s+ID\s+Mem\s+VCPUs\s+State\s+Time\(s\)/;
const LIST_LINE_RE =
  /^(.+?)\s+(\d+)\s+(\d+)\s+(\d+)\s+([r-][b-][p-][s-][-rscwS?][d-])\s+(\d+(?:\.\d+)?)(?:\s+([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\b)?(?:\s.*)?$/;

export function parseXlList(stdout: string): XlListEntry[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0 || !LIST_HEADER_RE.test(lines[0]!)) {
    throw new XlParseError('xl list output', `no header line (got '${lines[0] ?? ''}')`);
  }
  return lines.slice(1).map((line) => {
    const m = LIST_LINE_RE.exec(line);
    if (!m) throw new XlParseError('xl list output', `unexpected line '${line}'`);
    const state = m[5]!;
    const reason = state[4]!;
    return {
      name: m[1]!,
      domid: domId(Number(m[2])),
      memMiB: Number(m[3]),
      vcpus: Number(m[4]),
      state,
      flags: {
        running: state[0] === 'r',
        blocked: state[1] === 'b',
        paused: state[2] === 'p',
        shutdown: state[3] === 's',
        dying: state[5] === 'd',
        ...(reason === '-' ? {} : { shutdownReason: reason }),
      },
      cpuSeconds: Number(m[6]),
      ...(m[7] === undefined ? {} : { uuid: vmUuid(m[7]) }),
    };
  });
}

export interface XlDiskInfo {
  target?: string;
  vdev?: string;
  format?: string;
  backend?: string;
  backendDomname?: string;
  readwrite: boolean;
  isCdrom: boolean;
  script?: string;
}

export interface XlNicInfo {
  devid?: number;
  mac?: string;
  bridge?: string;
  vifname?: string;
  script?: string;
  ip?: string;
  model?: string;
  nictype?: string;
  backendDomname?: string;
  backendDomid?: number;
}

export interface XlDomainDetails {
  domid: DomId;
  name: string;
  uuid: VmUuid;
  /** `pv`, `hvm` or `pvh`. */
  type?: string;
  disks: XlDiskInfo[];
  nics: XlNicInfo[];
  pcidevs: unknown[];
  usbdevs: unknown[];
  vtpms: unknown[];
  /** The whole libxl_domain_config object as xl printed it. */
  config: Record<string, unknown>;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
function opt<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

/** `xl list -l` JSON (libxl_domain_config per domain; fields at default are omitted by libxl). */
const NIL_UUID = '00000000-0000-0000-0000-000000000000';

export function parseXlListLong(stdout: string): XlDomainDetails[] {
  let data: unknown;
  try {
    data = JSON.parse(stdout);
  } catch (e) {
    throw new XlParseError('xl list -l output', `not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(data)) throw new XlParseError('xl list -l output', 'not a JSON array');
  return data.map((entry, i) => {
    if (!isObj(entry) || !isObj(entry.config)) {
      throw new XlParseError('xl list -l output', `entry ${i} has no "config" object`);
    }
    const cfg = entry.config;
    const cInfo = isObj(cfg.c_info) ? cfg.c_info : {};
    const name = str(cInfo.name);
    // Real xl prints Domain-0's c_info with only type and name.
    const uuid = str(cInfo.uuid) ?? NIL_UUID;
    const id = num(entry.domid);
    if (id === undefined || name === undefined || !isVmUuid(uuid)) {
      throw new XlParseError(
        'xl list -l output',
        `entry ${i} lacks domid, c_info.name or a valid c_info.uuid`,
      );
    }
    return {
      domid: domId(id),
      name,
      uuid: vmUuid(uuid),
      ...(str(cInfo.type) === undefined ? {} : { type: str(cInfo.type) }),
      disks: arr(cfg.disks)
        .filter(isObj)
        .map((d) =>
          opt({
            target: str(d.pdev_path),
            vdev: str(d.vdev),
            format: str(d.format),
            backend: str(d.backend),
            backendDomname: str(d.backend_domname),
            readwrite: num(d.readwrite) === 1,
            isCdrom: num(d.is_cdrom) === 1,
            script: str(d.script),
          }),
        ),
      nics: arr(cfg.nics)
        .filter(isObj)
        .map((n) =>
          opt({
            devid: num(n.devid),
            mac: str(n.mac),
            bridge: str(n.bridge),
            vifname: str(n.ifname),
            script: str(n.script),
            ip: str(n.ip),
            model: str(n.model),
            nictype: str(n.nictype),
            backendDomname: str(n.backend_domname),
            backendDomid: num(n.backend_domid),
          }),
        ),
      pcidevs: arr(cfg.pcidevs),
      usbdevs: arr(cfg.usbdevs),
      vtpms: arr(cfg.vtpms),
      config: cfg,
    };
  });
}

/** `xl info`: `key : value` lines; lines without ` : ` (the -n tables) are skipped. */
export function parseXlInfo(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^([a-z_][a-z0-9_ ]*?)\s*:(.*)$/.exec(line);
    if (!m) continue;
    out[m[1]!] = m[2]!.trim();
  }
  if (Object.keys(out).length === 0)
    throw new XlParseError('xl info output', 'no key : value lines');
  return out;
}

export interface XlNetworkListEntry {
  idx: number;
  backendId: number;
  mac: string;
  handle: number;
  state: number;
  evtch: number;
  txRingRef: number;
  rxRingRef: number;
  backendPath: string;
}

const NET_HEADER_RE =
  /^Idx\s+BE\s+Mac Addr\.\s+handle\s+state\s+evt-ch\s+tx-\/rx-ring-ref\s+BE-path/;
const NET_LINE_RE =
  /^(\d+)\s+(\d+)\s+([0-9a-f]{2}(?::[0-9a-f]{2}){5})\s*(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)\/(-?\d+)\s+(\S+)\s*$/i;

export function parseXlNetworkList(stdout: string): XlNetworkListEntry[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0 || !NET_HEADER_RE.test(lines[0]!)) {
    throw new XlParseError('xl network-list output', `no header line (got '${lines[0] ?? ''}')`);
  }
  return lines.slice(1).map((line) => {
    const m = NET_LINE_RE.exec(line);
    if (!m) throw new XlParseError('xl network-list output', `unexpected line '${line}'`);
    return {
      idx: Number(m[1]),
      backendId: Number(m[2]),
      mac: m[3]!.toLowerCase(),
      handle: Number(m[4]),
      state: Number(m[5]),
      evtch: Number(m[6]),
      txRingRef: Number(m[7]),
      rxRingRef: Number(m[8]),
      backendPath: m[9]!,
    };
  });
}

export interface XlBlockListEntry {
  /** Numeric device id (51712 = xvda). */
  vdev: number;
  backendId: number;
  /** The frontend domain id. */
  handle: number;
  state: number;
  evtch: number;
  ringRef: number;
  backendPath: string;
}

const BLOCK_HEADER_RE = /^Vdev\s+BE\s+handle\s+state\s+evt-ch\s+ring-ref\s+BE-path/;
const BLOCK_LINE_RE = /^(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+(\S+)\s*$/;

export function parseXlBlockList(stdout: string): XlBlockListEntry[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0 || !BLOCK_HEADER_RE.test(lines[0]!)) {
    throw new XlParseError('xl block-list output', `no header line (got '${lines[0] ?? ''}')`);
  }
  return lines.slice(1).map((line) => {
    const m = BLOCK_LINE_RE.exec(line);
    if (!m) throw new XlParseError('xl block-list output', `unexpected line '${line}'`);
    return {
      vdev: Number(m[1]),
      backendId: Number(m[2]),
      handle: Number(m[3]),
      state: Number(m[4]),
      evtch: Number(m[5]),
      ringRef: Number(m[6]),
      backendPath: m[7]!,
    };
  });
}

const NO_SUCH_DOMAIN_RES = [
  /is an invalid domain identifier/,
  /Error: Domain '.*' does not exist/,
  /Non-exist[ae]nt domain/,
  /maybe this domain does not exist/,
  /unable to get domain type for domid=/,
  /Domain \d+:(?:Pausing|Unpausing) domain: No such process/,
];
const DUPLICATE_RE = /Domain with name ".*" already exists/;
const BAD_CONFIG_RES = [
  /config parsing error/,
  /Failed to parse config/,
  /Failed to read config file/,
];

/** Maps xl's stderr to a stable code (see docs/xl-formats.md for the messages). */
export function classifyXlStderr(stderr: string): XlErrorCode {
  if (DUPLICATE_RE.test(stderr)) return 'XL_DUPLICATE_NAME';
  if (NO_SUCH_DOMAIN_RES.some((r) => r.test(stderr))) return 'XL_NO_SUCH_DOMAIN';
  if (BAD_CONFIG_RES.some((r) => r.test(stderr))) return 'XL_BAD_CONFIG';
  return 'XL_FAILED';
}

/** The lines of stderr worth showing a user: xl's own and libxl's errors, not progress chatter. */
export function summarizeStderr(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(
      (l) =>
        l !== '' && !/^(Parsing config from|Saving to|Loading new save file|xc: info:)/.test(l),
    );
  const errors = lines.filter((l) => !/^libxl: (debug|info|detail)/.test(l));
  return (errors.length > 0 ? errors : lines).slice(-4).join('; ');
}
