// The xl domain config syntax (libxlu_cfg: `key = value` lines, strings in
// single or double quotes, integers, lists in brackets that may span lines,
// `#` comments, `;` or newline between settings), plus the vif and disk spec
// mini-languages. Errors use xl's wording so the simulator's xl fails like the
// real one.

export type XlValue = string | number | XlValue[];
export type XlConfig = Map<string, XlValue>;

export class XlConfigError extends Error {
  readonly code = 'XL_BAD_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'XlConfigError';
  }
}

type Tok = { t: 'id' | 'str' | 'num' | 'sym'; v: string; line: number };

function tokenize(text: string, source: string): Tok[] {
  const toks: Tok[] = [];
  let line = 1;
  let i = 0;
  const err = (near: string) =>
    new XlConfigError(`${source}:${line}: config parsing error near \`${near}': syntax error`);
  while (i < text.length) {
    const c = text[i]!;
    if (c === '\n') {
      toks.push({ t: 'sym', v: '\n', line });
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') i++;
    else if (c === '#') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let s = '';
      while (j < text.length && text[j] !== c) {
        if (text[j] === '\n') throw err(text.slice(i, j));
        if (c === '"' && text[j] === '\\' && j + 1 < text.length) {
          const n = text[j + 1]!;
          s += n === 'n' ? '\n' : n === 't' ? '\t' : n;
          j += 2;
        } else s += text[j++]!;
      }
      if (j >= text.length) throw err(text.slice(i, j));
      toks.push({ t: 'str', v: s, line });
      i = j + 1;
    } else if (/[0-9]/.test(c)) {
      const m = /^(0x[0-9a-fA-F]+|[0-9]+)/.exec(text.slice(i))!;
      toks.push({ t: 'num', v: m[0], line });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_.-]*/.exec(text.slice(i))!;
      toks.push({ t: 'id', v: m[0], line });
      i += m[0].length;
    } else if ('=[],;+'.includes(c)) {
      toks.push({ t: 'sym', v: c, line });
      i++;
    } else throw err(c);
  }
  return toks;
}

export function parseXlConfig(text: string, source: string): XlConfig {
  const toks = tokenize(text, source);
  const cfg: XlConfig = new Map();
  let p = 0;
  const err = (tok: Tok | undefined) =>
    new XlConfigError(
      `${source}:${tok?.line ?? text.split('\n').length}: config parsing error near \`${tok?.v === '\n' ? '' : (tok?.v ?? '')}': syntax error`,
    );
  const skipNl = () => {
    while (toks[p]?.v === '\n' && toks[p]?.t === 'sym') p++;
  };
  const value = (): XlValue => {
    const tok = toks[p];
    if (!tok) throw err(tok);
    if (tok.t === 'str') {
      p++;
      return tok.v;
    }
    if (tok.t === 'num') {
      p++;
      return Number(tok.v);
    }
    if (tok.t === 'sym' && tok.v === '[') {
      p++;
      const list: XlValue[] = [];
      skipNl();
      while (toks[p] && !(toks[p]!.t === 'sym' && toks[p]!.v === ']')) {
        list.push(value());
        skipNl();
        if (toks[p]?.t === 'sym' && toks[p]?.v === ',') {
          p++;
          skipNl();
        } else if (!(toks[p]?.t === 'sym' && toks[p]?.v === ']')) throw err(toks[p]);
      }
      if (!toks[p]) throw err(undefined);
      p++;
      return list;
    }
    throw err(tok);
  };
  while (p < toks.length) {
    const tok = toks[p]!;
    if (tok.t === 'sym' && (tok.v === '\n' || tok.v === ';')) {
      p++;
      continue;
    }
    if (tok.t !== 'id') throw err(tok);
    p++;
    let append = false;
    if (toks[p]?.t === 'sym' && toks[p]?.v === '+') {
      append = true;
      p++;
    }
    if (!(toks[p]?.t === 'sym' && toks[p]?.v === '=')) throw err(toks[p]);
    p++;
    const v = value();
    const old = cfg.get(tok.v);
    cfg.set(tok.v, append && Array.isArray(old) && Array.isArray(v) ? [...old, ...v] : v);
    const end = toks[p];
    if (end && !(end.t === 'sym' && (end.v === '\n' || end.v === ';'))) throw err(end);
  }
  return cfg;
}

/** `key=value` arguments after the config file on the xl command line, applied on top. */
export function applyExtraSettings(cfg: XlConfig, extra: readonly string[], source: string): void {
  if (extra.length === 0) return;
  const more = parseXlConfig(extra.join('\n'), source);
  for (const [k, v] of more) cfg.set(k, v);
}

export function cfgString(cfg: XlConfig, key: string): string | undefined {
  const v = cfg.get(key);
  if (v === undefined) return undefined;
  if (Array.isArray(v)) throw new XlConfigError(`config key ${key} must be a string, not a list`);
  return String(v);
}

export function cfgNumber(cfg: XlConfig, key: string): number | undefined {
  const v = cfg.get(key);
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : Number(v);
  if (Array.isArray(v) || !Number.isFinite(n)) {
    throw new XlConfigError(`config key ${key} must be a number`);
  }
  return n;
}

export function cfgList(cfg: XlConfig, key: string): string[] {
  const v = cfg.get(key);
  if (v === undefined) return [];
  if (!Array.isArray(v)) return [String(v)];
  return v.map((x) => (Array.isArray(x) ? JSON.stringify(x) : String(x)));
}

// ---- vif specs (xl-network-configuration(5)) ------------------------------

export interface VifSpec {
  mac?: string;
  bridge?: string;
  vifname?: string;
  script?: string;
  ip?: string;
  backend?: string;
  type?: string;
  model?: string;
  rate?: string;
  devid?: number;
}

const VIF_KEYS = new Set([
  'mac',
  'bridge',
  'vifname',
  'script',
  'ip',
  'backend',
  'type',
  'model',
  'rate',
  'devid',
  'mtu',
  'gatewaydev',
  'trusted',
  'accel',
  'netdev',
  'connectivity',
]);

export function parseVifSpec(spec: string): VifSpec {
  const out: VifSpec = {};
  for (const part of spec.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq < 0) throw new XlConfigError(`Invalid parameter \`${item}' in vif spec '${spec}'`);
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    if (!VIF_KEYS.has(key)) {
      throw new XlConfigError(`Invalid parameter \`${key}' in vif spec '${spec}'`);
    }
    if (key === 'mac') {
      if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(value)) {
        throw new XlConfigError(`Invalid MAC address '${value}' in vif spec '${spec}'`);
      }
      out.mac = value.toLowerCase();
    } else if (key === 'devid') out.devid = Number(value);
    else if (key !== 'mtu' && key !== 'gatewaydev' && key !== 'trusted') {
      (out as Record<string, string>)[key] = value;
    }
  }
  if (out.vifname !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(out.vifname)) {
    throw new XlConfigError(
      `vifname '${out.vifname}' is not a valid interface name (1 to 15 of A-Z a-z 0-9 _ . -)`,
    );
  }
  return out;
}

// ---- disk specs (xl-disk-configuration(5)) --------------------------------

export interface DiskSpec {
  target: string;
  vdev: string;
  format: string;
  access: 'r' | 'w';
  devtype: 'disk' | 'cdrom';
  backendtype: 'phy' | 'qdisk';
  script?: string;
}

const FORMATS = new Set(['raw', 'qcow', 'qcow2', 'vhd', 'qed', 'empty']);

export function parseDiskSpec(spec: string): DiskSpec {
  let target: string | undefined;
  let vdev: string | undefined;
  let format: string | undefined;
  let access: string | undefined;
  let devtype: string | undefined;
  let backendtype: string | undefined;
  let script: string | undefined;
  const positional: string[] = [];
  const rest = spec;
  // target= swallows the rest of the spec, commas included.
  const targetAt = /(^|,)\s*target=/.exec(rest);
  const head = targetAt ? rest.slice(0, targetAt.index) : rest;
  if (targetAt) target = rest.slice(targetAt.index + targetAt[0].length);
  for (const part of head.split(',')) {
    const item = part.trim();
    const eq = item.indexOf('=');
    if (eq < 0) {
      positional.push(item);
      continue;
    }
    const key = item.slice(0, eq);
    const value = item.slice(eq + 1);
    if (key === 'vdev') vdev = value;
    else if (key === 'format') format = value;
    else if (key === 'access') access = value;
    else if (key === 'devtype') devtype = value;
    else if (key === 'backendtype' || key === 'backend-type') backendtype = value;
    else if (key === 'script') script = value;
    else if (key === 'target') target = value;
    else if (!['backend', 'discard', 'no-discard', 'direct-io-safe', 'trusted'].includes(key)) {
      throw new XlConfigError(`unknown disk spec parameter '${key}' in '${spec}'`);
    }
  }
  // Positional: [target,[format,]]vdev[,access]
  const pos = positional.filter((x, i) => x !== '' || i < positional.length - 1);
  if (pos.length === 4) [target, format, vdev, access] = pos as [string, string, string, string];
  else if (pos.length === 3) [target, vdev, access] = pos as [string, string, string];
  else if (pos.length === 2) {
    if (target === undefined) [target, vdev] = pos as [string, string];
    else [vdev, access] = pos as [string, string];
  } else if (pos.length === 1) {
    if (vdev === undefined) vdev = pos[0];
    else target = pos[0];
  } else if (pos.length > 4) throw new XlConfigError(`too many positional parameters in '${spec}'`);
  if (!vdev) throw new XlConfigError(`no vdev specified in disk spec '${spec}'`);
  if (target === undefined) throw new XlConfigError(`no target specified in disk spec '${spec}'`);
  // Legacy prefixes: phy:/dev/x, file:/x, tap:aio:/x, tap:qcow2:/x, aio:/x, qcow2:/x ...
  for (;;) {
    const m = /^(phy|file|tap|tap2|aio|raw|qcow|qcow2|vhd|qed):/.exec(target);
    if (!m) break;
    const p = m[1]!;
    if (p === 'phy') backendtype = backendtype ?? 'phy';
    else if (p !== 'file' && p !== 'tap' && p !== 'tap2' && p !== 'aio') format = p;
    target = target.slice(m[0].length);
  }
  if (devtype === undefined && /(^|:)cdrom$/.test(vdev)) {
    devtype = 'cdrom';
    vdev = vdev.replace(/:cdrom$/, '');
  }
  format = format ?? 'raw';
  if (!FORMATS.has(format)) throw new XlConfigError(`unknown disk format '${format}' in '${spec}'`);
  const acc = access === undefined || access === '' ? 'w' : access;
  if (!['r', 'ro', 'w', 'rw'].includes(acc)) {
    throw new XlConfigError(`unknown access '${acc}' in disk spec '${spec}'`);
  }
  const out: DiskSpec = {
    target,
    vdev,
    format,
    access: acc.startsWith('r') && acc !== 'rw' ? 'r' : 'w',
    devtype: devtype === 'cdrom' ? 'cdrom' : 'disk',
    backendtype: backendtype === 'phy' ? 'phy' : 'qdisk',
  };
  if (script !== undefined) out.script = script;
  vdevToDevid(out.vdev, spec);
  return out;
}

/** libxl__device_disk_dev_number: xvda -> 51712, hda -> 768, sda -> 2048, d0p0 ... */
export function vdevToDevid(vdev: string, spec = vdev): number {
  const letters = (s: string): number => {
    let n = 0;
    for (const ch of s) n = n * 26 + (ch.charCodeAt(0) - 96);
    return n - 1;
  };
  let m = /^xvd([a-z]+)([0-9]*)$/.exec(vdev);
  if (m) {
    const disk = letters(m[1]!);
    const part = m[2] ? Number(m[2]) : 0;
    if (disk < 16 && part < 16) return (202 << 8) | (disk << 4) | part;
    return (1 << 28) | (disk << 8) | part;
  }
  m = /^hd([a-z])([0-9]*)$/.exec(vdev);
  if (m) {
    const disk = letters(m[1]!);
    const part = m[2] ? Number(m[2]) : 0;
    const major = [3, 22, 33, 34][disk >> 1];
    if (major !== undefined) return (major << 8) | ((disk & 1) << 6) | part;
  }
  m = /^sd([a-z])([0-9]*)$/.exec(vdev);
  if (m) {
    const disk = letters(m[1]!);
    const part = m[2] ? Number(m[2]) : 0;
    return (8 << 8) | (disk << 4) | part;
  }
  if (/^[0-9]+$/.test(vdev)) return Number(vdev);
  throw new XlConfigError(`Invalid virtual disk identifier ${vdev} in '${spec}'`);
}
