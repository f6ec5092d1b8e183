import { isZynCloneError } from '../../errors/index.js';
import { type CommandRunner, firstLines, runCommand } from './command.js';
import { StorageError } from './errors.js';

/** One row of `lvs --reportformat json` with the fields LV_FIELDS asks for. */
export interface LvInfo {
  readonly name: string;
  readonly vg: string;
  /** lv_attr, e.g. `Vwi-a-tz--` (thin volume), `-wi-ao----` (linear), `swi-a-s---` (snapshot). */
  readonly attr: string;
  readonly sizeBytes: number;
  /** Thin pool of a thin volume, else "". */
  readonly pool: string;
  /** Origin of a snapshot, else "". */
  readonly origin: string;
  readonly path: string;
}

export const LV_FIELDS = 'lv_name,vg_name,lv_attr,lv_size,pool_lv,origin,lv_path';

/** Default copy-on-write space of a classic snapshot when the caller gives none. */
export const DEFAULT_CLASSIC_SIZE = '20%ORIGIN';

/** LVM's own rule for VG and LV names (lvm(8), "VALID NAMES"). */
const LVM_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$/;
const LVM_RESERVED_PARTS = [
  '_cdata',
  '_cmeta',
  '_corig',
  '_mimage',
  '_mlog',
  '_pmspare',
  '_rimage',
  '_rmeta',
  '_tdata',
  '_tmeta',
  '_vorigin',
  '_vdata',
];

export function lvmNameProblem(name: string): string | undefined {
  if (name.length === 0 || name.length > 127) return 'must be 1 to 127 characters';
  if (!LVM_NAME.test(name))
    return 'only letters, digits and "+_.-" are allowed, not starting with "-"';
  if (name === '.' || name === '..' || name === 'snapshot' || name === 'pvmove') return 'reserved';
  if (LVM_RESERVED_PARTS.some((p) => name.includes(p))) return 'contains a name part LVM reserves';
  return undefined;
}

export function lvsArgv(target: string): string[] {
  return [
    'lvs',
    '--reportformat',
    'json',
    '--units',
    'b',
    '--nosuffix',
    '--options',
    LV_FIELDS,
    target,
  ];
}

export function thinSnapshotArgv(vg: string, lv: string, name: string): string[] {
  // Thin snapshots are created with the activation-skip flag set, so a plain
  // activation would leave the clone's disk missing: clear the flag (so later
  // `vgchange -ay` activates it too) and activate now, ignoring the flag.
  return [
    'lvcreate',
    '--snapshot',
    '--setactivationskip',
    'n',
    '--activate',
    'y',
    '--ignoreactivationskip',
    '--name',
    name,
    `${vg}/${lv}`,
  ];
}

export function classicSnapshotArgv(vg: string, lv: string, name: string, size: string): string[] {
  return ['lvcreate', '--snapshot', ...sizeArgs(size), '--name', name, `${vg}/${lv}`];
}

export function removeArgv(vg: string, name: string): string[] {
  return ['lvremove', '--force', `${vg}/${name}`];
}

/** The lvcreate options for a classic snapshot's size: bytes, a unit size, or an extent percentage. */
export function sizeArgs(size: string): string[] {
  if (/^[0-9]+$/.test(size)) return ['--size', `${size}b`];
  if (/^[0-9]+(\.[0-9]+)?[bBsSkKmMgGtTpPeE]$/.test(size)) return ['--size', size];
  if (/^[0-9]+%(ORIGIN|VG|FREE|PVS)$/.test(size)) return ['--extents', size];
  throw new StorageError(
    'STORAGE_INVALID_DISK',
    `invalid LVM snapshot size ${JSON.stringify(size)}: use bytes (1073741824), a size with unit (10G) or a percentage (20%ORIGIN)`,
  );
}

/** Parses `lvs --reportformat json --units b --nosuffix -o LV_FIELDS` output. */
export function parseLvsReport(json: string): LvInfo[] {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new StorageError('STORAGE_LVM_FAILED', 'lvs output is not JSON', { cause: err });
  }
  const report = (raw as { report?: unknown } | null)?.report;
  if (!Array.isArray(report)) {
    throw new StorageError('STORAGE_LVM_FAILED', 'lvs output has no "report" array');
  }
  const out: LvInfo[] = [];
  for (const section of report) {
    const lvs = (section as { lv?: unknown } | null)?.lv;
    if (lvs === undefined) continue;
    if (!Array.isArray(lvs))
      throw new StorageError('STORAGE_LVM_FAILED', 'lvs "lv" is not an array');
    for (const row of lvs) out.push(parseLvRow(row));
  }
  return out;
}

function parseLvRow(row: unknown): LvInfo {
  if (typeof row !== 'object' || row === null) {
    throw new StorageError('STORAGE_LVM_FAILED', 'lvs row is not an object');
  }
  const r = row as Record<string, unknown>;
  const str = (key: string): string => {
    const v = r[key];
    if (typeof v !== 'string') {
      throw new StorageError('STORAGE_LVM_FAILED', `lvs row lacks string field "${key}"`);
    }
    return v;
  };
  const sizeText = str('lv_size').replace(/[bB]$/, '');
  if (!/^[0-9]+$/.test(sizeText)) {
    throw new StorageError(
      'STORAGE_LVM_FAILED',
      `lvs lv_size ${JSON.stringify(r.lv_size)} is not bytes`,
    );
  }
  return {
    name: str('lv_name'),
    vg: str('vg_name'),
    attr: str('lv_attr'),
    sizeBytes: Number(sizeText),
    pool: str('pool_lv'),
    origin: str('origin'),
    path: str('lv_path'),
  };
}

export function isThinVolume(lv: LvInfo): boolean {
  return lv.attr.startsWith('V');
}

/** Volume types a classic (CoW) snapshot can be taken of: linear/striped, an origin, mirror, raid. */
export function canClassicSnapshot(lv: LvInfo): boolean {
  return ['-', 'o', 'm', 'M', 'r', 'R'].includes(lv.attr.charAt(0));
}

async function lvm(argv: readonly string[], run: CommandRunner) {
  try {
    return await run(argv);
  } catch (err) {
    if (isZynCloneError(err, 'RUN_NOT_FOUND')) {
      throw new StorageError(
        'STORAGE_TOOL_MISSING',
        `${argv[0]} is not installed (Debian package lvm2); it is needed for LVM disks`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** The LV behind `target` (a /dev/VG/LV or /dev/mapper path, or VG/LV), or undefined if it is none. */
export async function lookupLv(
  target: string,
  run: CommandRunner = runCommand,
): Promise<{ lv?: LvInfo; why?: string }> {
  const res = await lvm(lvsArgv(target), run);
  if (res.code !== 0) return { why: firstLines(res.stderr) || `lvs exited with ${res.code}` };
  const rows = parseLvsReport(res.stdout);
  if (rows.length === 0) return { why: `not found: lvs reported no volume for ${target}` };
  if (rows.length > 1) return { why: `lvs reported ${rows.length} volumes for ${target}` };
  return { lv: rows[0]! };
}

export async function createLvmSnapshot(
  argv: readonly string[],
  run: CommandRunner = runCommand,
): Promise<void> {
  const res = await lvm(argv, run);
  if (res.code !== 0) {
    throw new StorageError(
      'STORAGE_LVM_FAILED',
      `${argv.join(' ')} failed (exit ${res.code}): ${firstLines(res.stderr)}`,
    );
  }
}

/**
 * Removes snapshot `name` of `vg/origin`; returns false if it was already gone.
 * Refuses to remove an LV of that name that is a snapshot of something else.
 */
export async function removeLvmSnapshot(
  vg: string,
  name: string,
  origin: string,
  run: CommandRunner = runCommand,
): Promise<boolean> {
  const found = await lookupLv(`${vg}/${name}`, run);
  if (found.lv === undefined) {
    // Only a definite "no such volume" means done; a locking or VG error must not pass for it.
    if (/failed to find logical volume|not found/i.test(found.why ?? '')) return false;
    throw new StorageError(
      'STORAGE_LVM_FAILED',
      `cannot tell whether ${vg}/${name} still exists: ${found.why ?? 'lvs gave no answer'}`,
    );
  }
  if (found.lv.origin !== '' && found.lv.origin !== origin) {
    throw new StorageError(
      'STORAGE_LVM_FAILED',
      `refusing to remove ${vg}/${name}: it is a snapshot of ${found.lv.origin}, not of ${origin}`,
    );
  }
  const res = await lvm(removeArgv(vg, name), run);
  if (res.code !== 0) {
    throw new StorageError(
      'STORAGE_LVM_FAILED',
      `lvremove ${vg}/${name} failed (exit ${res.code}): ${firstLines(res.stderr)}`,
    );
  }
  return true;
}
