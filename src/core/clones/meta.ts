/**
 * The clone's metadata file, `<state dir>/clones/<clone>.json`, next to its
 * xl config `<clone>.cfg`: what a clone IS (names, UUID, kind, its vifs as
 * they are on the production network, the original's vifs, its console).
 * Never what its lockdown is: masks and bridges come from the configuration
 * of the moment (lockdown.ts). This module is the only writer and reader;
 * the reader checks every field, so a damaged file is an error naming the
 * file and the field, never a cast.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../config/index.js';
import { CLONE_KINDS, type CloneKind } from '../config/schema.js';
import { type VmName, type ZynclonePaths, vmNameProblem } from '../paths.js';
import { CloneError } from './errors.js';
import type { ConsoleType } from './plan.js';

export const CLONE_META_VERSION = 2;

export interface CloneVifMeta {
  readonly devid: number;
  /** Backend interface name: `<clone_vif_prefix><id>.<devid>`. */
  readonly name: string;
  /** Its xl vif spec on the production network (bridge, MAC, vifname, script): locked from it at every boot. */
  readonly productionSpec: string;
}

export interface OriginalVifMeta {
  readonly devid: number;
  /** Its configured `vifname`; null: libxl names it vif<domid>.<devid>. */
  readonly vifname: string | null;
}

export interface CloneMeta {
  readonly version: typeof CLONE_META_VERSION;
  readonly vm: VmName;
  readonly cloneName: string;
  readonly cloneUuid: string;
  readonly kind: CloneKind;
  readonly originalConfigFile: string;
  readonly cloneVifs: readonly CloneVifMeta[];
  readonly originalVifs: readonly OriginalVifMeta[];
  readonly consoleType: ConsoleType;
  /**
   * A memory clone made with --no-start keeps its memory image here until its
   * first start restores it; later starts cold-boot from the disks.
   */
  readonly saveImage?: string;
}

export function clonesDir(paths: ZynclonePaths): string {
  return join(paths.stateDir, 'clones');
}

/** The clone's xl config, regenerated with the current lockdown before every boot. */
export function cloneConfigFile(paths: ZynclonePaths, cloneName: string): string {
  return join(clonesDir(paths), `${cloneName}.cfg`);
}

export function cloneMetaFile(paths: ZynclonePaths, cloneName: string): string {
  return join(clonesDir(paths), `${cloneName}.json`);
}

export function writeCloneMeta(paths: ZynclonePaths, meta: CloneMeta): void {
  writeFileAtomic(cloneMetaFile(paths, meta.cloneName), `${JSON.stringify(meta, null, 2)}\n`);
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const CONSOLE_TYPES: readonly ConsoleType[] = ['vnc', 'spice', 'none'];

/** Checks `value` field by field; throws naming the first wrong one. */
export function parseCloneMeta(value: unknown, source: string): CloneMeta {
  const fail = (field: string, what: string): never => {
    throw new CloneError(
      'CLONE_CONFIG',
      `the clone's metadata ${source} is damaged: ${field} ${what}; remove the clone and create it again`,
    );
  };
  if (!isObj(value)) return fail('the file', 'is not a JSON object');
  if (value.version !== CLONE_META_VERSION) {
    fail('version', `is ${JSON.stringify(value.version)}, not ${CLONE_META_VERSION}`);
  }
  const str = (o: Obj, key: string, where = key): string => {
    const v = o[key];
    return typeof v === 'string' && v.length > 0 ? v : fail(where, 'is not a non-empty string');
  };
  const devid = (o: Obj, where: string): number => {
    const v = o.devid;
    return Number.isInteger(v) && (v as number) >= 0 && (v as number) < 10_000
      ? (v as number)
      : fail(`${where}.devid`, 'is not a device id');
  };
  const list = (key: string): Obj[] => {
    const v = value[key];
    if (!Array.isArray(v)) return fail(key, 'is not a list');
    return v.map((item, i) => (isObj(item) ? item : fail(`${key}[${i}]`, 'is not an object')));
  };
  const vm = str(value, 'vm');
  const problem = vmNameProblem(vm);
  if (problem !== undefined) fail('vm', `is not a VM name (${problem})`);
  const kind = str(value, 'kind');
  if (!(CLONE_KINDS as readonly string[]).includes(kind)) fail('kind', `is ${kind}`);
  const consoleType = str(value, 'consoleType');
  if (!(CONSOLE_TYPES as readonly string[]).includes(consoleType)) {
    fail('consoleType', `is ${consoleType}`);
  }
  const cloneVifs = list('cloneVifs').map((v, i) => ({
    devid: devid(v, `cloneVifs[${i}]`),
    name: str(v, 'name', `cloneVifs[${i}].name`),
    productionSpec: str(v, 'productionSpec', `cloneVifs[${i}].productionSpec`),
  }));
  const originalVifs = list('originalVifs').map((v, i) => ({
    devid: devid(v, `originalVifs[${i}]`),
    vifname: v.vifname === null ? null : str(v, 'vifname', `originalVifs[${i}].vifname`),
  }));
  return {
    version: CLONE_META_VERSION,
    vm: vm as VmName,
    cloneName: str(value, 'cloneName'),
    cloneUuid: str(value, 'cloneUuid'),
    kind: kind as CloneKind,
    originalConfigFile: str(value, 'originalConfigFile'),
    cloneVifs,
    originalVifs,
    consoleType: consoleType as ConsoleType,
    ...(value.saveImage === undefined ? {} : { saveImage: str(value, 'saveImage') }),
  };
}

/** Reads and checks the metadata of `cloneName`; CloneError CLONE_CONFIG names what is wrong. */
export function readCloneMeta(paths: ZynclonePaths, cloneName: string): CloneMeta {
  const file = cloneMetaFile(paths, cloneName);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CloneError(
      'CLONE_CONFIG',
      `cannot read the clone's metadata ${file}: ${(err as Error).message}; remove the clone and create it again`,
      { cause: err },
    );
  }
  return parseCloneMeta(parsed, file);
}
