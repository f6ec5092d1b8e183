// What clone_monitor knows about a clone besides its state-store row: the
// files the lifecycle keeps next to the clone's xl config
// (<state dir>/clones/<clone>.json and <clone>.cfg) and the original's xl
// config. Read defensively: a missing or damaged file narrows what can be
// published, it never stops the monitor.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { consoleTypeOf } from '../../core/clones/plan.js';
import type { ZynclonePaths } from '../../core/paths.js';
import type { CloneRecord } from '../../core/state/index.js';
import { type VifSpec, XlConfig, parseVif } from '../../xen/index.js';

/** The bridge xl attaches a vif to when its spec names none. */
export const XL_DEFAULT_BRIDGE = 'xenbr0';

export interface CloneVifFact {
  readonly devid: number;
  /** Backend interface name (`<prefix><id>.<devid>`). */
  readonly name: string;
  /** The vif's spec in the clone's xl config (bridge as at creation). */
  readonly spec: VifSpec | undefined;
  /** Where the vif belongs when unmasked; undefined when unknown. */
  readonly productionBridge: string | undefined;
}

export interface OriginalVifFact {
  readonly devid: number;
  /** Its configured `vifname`, else undefined (libxl names it vif<domid>.<devid>). */
  readonly vifname: string | undefined;
}

export interface CloneFacts {
  readonly cloneVifs: readonly CloneVifFact[];
  readonly originalVifs: readonly OriginalVifFact[];
  readonly consoleType: 'vnc' | 'spice' | 'none';
  /** Masks recorded at creation: the fallback when the VM's config cannot be read. */
  readonly cloneVifMask: string | undefined;
  readonly originalVifMask: string | undefined;
  /** What could not be read, for the log. */
  readonly problems: readonly string[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isDevid = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;

export function clonesDir(paths: ZynclonePaths): string {
  return join(paths.stateDir, 'clones');
}

function readText(file: string): string {
  return readFileSync(file, 'utf8');
}

function vifSpecs(cfg: XlConfig): Map<number, VifSpec> {
  const out = new Map<number, VifSpec>();
  (cfg.getStrings('vif') ?? []).forEach((text, index) => {
    const spec = parseVif(text);
    out.set(spec.devid ?? index, spec);
  });
  return out;
}

/** Reads the lifecycle's files of `clone`; never throws. */
export function readCloneFacts(
  paths: ZynclonePaths,
  clone: CloneRecord,
  isolationBridge: string,
): CloneFacts {
  const problems: string[] = [];
  const dir = clonesDir(paths);
  let meta: Obj = {};
  const metaFile = join(dir, `${clone.cloneName}.json`);
  try {
    const parsed: unknown = JSON.parse(readText(metaFile));
    if (isObj(parsed)) meta = parsed;
    else problems.push(`${metaFile} is not a JSON object`);
  } catch (err) {
    problems.push(`cannot read ${metaFile}: ${(err as Error).message}`);
  }
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);

  let cloneSpecs = new Map<number, VifSpec>();
  const cloneCfgFile = str(meta.configFile) ?? join(dir, `${clone.cloneName}.cfg`);
  try {
    cloneSpecs = vifSpecs(XlConfig.parse(readText(cloneCfgFile), cloneCfgFile));
  } catch (err) {
    problems.push(`cannot read the clone's vifs from ${cloneCfgFile}: ${(err as Error).message}`);
  }
  let originalCfg: XlConfig | undefined;
  let originalSpecs = new Map<number, VifSpec>();
  const originalFile = str(meta.originalConfigFile);
  if (originalFile !== undefined) {
    try {
      originalCfg = XlConfig.parse(readText(originalFile), originalFile);
      originalSpecs = vifSpecs(originalCfg);
    } catch (err) {
      problems.push(`cannot read the original's config ${originalFile}: ${(err as Error).message}`);
    }
  }

  const productionBridge = (devid: number, spec: VifSpec | undefined): string | undefined => {
    const orig = originalSpecs.get(devid);
    if (orig !== undefined) return orig.bridge ?? XL_DEFAULT_BRIDGE;
    // The clone's own spec names its production bridge unless it was masked at creation.
    if (spec !== undefined && (spec.bridge ?? XL_DEFAULT_BRIDGE) !== isolationBridge) {
      return spec.bridge ?? XL_DEFAULT_BRIDGE;
    }
    return undefined;
  };

  const cloneVifs: CloneVifFact[] = [];
  const metaCloneVifs = Array.isArray(meta.cloneVifs) ? meta.cloneVifs.filter(isObj) : [];
  const devids = new Set<number>([
    ...metaCloneVifs.map((v) => v.devid).filter(isDevid),
    ...cloneSpecs.keys(),
  ]);
  for (const devid of [...devids].sort((a, b) => a - b)) {
    const spec = cloneSpecs.get(devid);
    const name =
      str(metaCloneVifs.find((v) => v.devid === devid)?.name) ?? spec?.vifname ?? undefined;
    if (name === undefined) {
      problems.push(`clone vif ${devid} has no name; not published (it stays dropped)`);
      continue;
    }
    cloneVifs.push({ devid, name, spec, productionBridge: productionBridge(devid, spec) });
  }

  let originalVifs: OriginalVifFact[];
  if (Array.isArray(meta.originalVifs)) {
    originalVifs = meta.originalVifs
      .filter(isObj)
      .filter((v) => isDevid(v.devid))
      .map((v) => ({ devid: v.devid as number, vifname: str(v.vifname) }));
  } else {
    originalVifs = [...originalSpecs].map(([devid, spec]) => ({ devid, vifname: spec.vifname }));
  }

  let consoleType: CloneFacts['consoleType'] = 'none';
  const metaConsole = isObj(meta.console) ? str(meta.console.type) : undefined;
  if (metaConsole === 'vnc' || metaConsole === 'spice' || metaConsole === 'none') {
    consoleType = metaConsole;
  } else if (originalCfg !== undefined) {
    consoleType = consoleTypeOf(originalCfg);
  }
  return {
    cloneVifs,
    originalVifs,
    consoleType,
    cloneVifMask: str(meta.cloneVifMask),
    originalVifMask: str(meta.originalVifMask),
    problems,
  };
}
