/**
 * What a clone's lockdown must be NOW: from the VM's current configuration
 * (masks, isolation bridge) and the live domains, never from what was true
 * when the clone was made. The lifecycle (create, start, restore, stop,
 * activate, deactivate), clone_monitor and `vmclone doctor` all ask this one
 * function; the clone's xl config is rewritten from its answer before every
 * boot, so the bridges a clone is born on and the masks the net monitor
 * acknowledges are the same ones.
 */
import { XlConfig, type XlDriver, parseVif, printVif } from '../../xen/index.js';
import { effectiveConfig } from '../config/config.js';
import { type ZyncloneConfig, defaultConfig } from '../config/schema.js';
import { type VifMask, formatVifMask, isMasked, parseVifMask } from '../lockdown/vif-mask.js';
import type { VmName, ZynclonePaths } from '../paths.js';
import type { CloneState } from '../state/types.js';
import type { CloneMeta } from './meta.js';
import { lockedVifSpec } from './plan.js';
import type { PublishedVif, VmPublication } from './publish.js';

/** The domains that matter to a clone's lockdown, as xl lists them now. */
export interface LiveDomains {
  /** Absent while the original is not running. */
  readonly original?: {
    readonly domid: number;
    /** Its vifs (`xl list -l`); undefined: unknown, the clone's record of them is used. */
    readonly nics?: readonly { readonly devid: number; readonly vifname?: string | undefined }[];
  };
  /** Absent while the clone has no domain. */
  readonly cloneDomid?: number;
}

export interface LockedCloneVif {
  readonly devid: number;
  readonly name: string;
  readonly masked: boolean;
  /** The bridge its mask puts it on: the isolation bridge, or its production bridge. */
  readonly bridge: string;
  /** Its line in the clone's xl config. */
  readonly spec: string;
}

export interface CloneLockdown {
  /** What clone_monitor and the lifecycle publish under vm/$VM. */
  readonly publication: VmPublication;
  readonly cloneVifs: readonly LockedCloneVif[];
  readonly isolationBridge: string;
  readonly clonePrefix: string;
  /** Why the VM's configuration could not be used (then every clone vif is masked). */
  readonly configProblem?: string;
}

function maskOr(text: string, fallback: VifMask): VifMask {
  try {
    return parseVifMask(text);
  } catch {
    return fallback;
  }
}

/**
 * The lockdown of `meta`'s clone in `state`. `config` is the VM's effective
 * configuration, or the error reading it: then the clone fails closed (every
 * vif masked). Without `meta` (its file is damaged) no clone vif is known,
 * and every clone vif stays dropped by the net monitor's standing rule.
 */
export function cloneLockdown(
  vm: string,
  cloneName: string,
  meta: CloneMeta | undefined,
  state: CloneState,
  config: ZyncloneConfig | Error,
  live: LiveDomains,
): CloneLockdown {
  const cfg = config instanceof Error ? defaultConfig() : config;
  const cloneMask =
    config instanceof Error ? { all: true as const } : maskOr(cfg.clone_vif_mask, { all: true });
  const originalMask = maskOr(
    cfg.original_vif_mask,
    parseVifMask(defaultConfig().original_vif_mask),
  );
  const cloneVifs = (meta?.cloneVifs ?? []).map((v): LockedCloneVif => {
    const masked = isMasked(cloneMask, v.devid);
    const spec = lockedVifSpec(parseVif(v.productionSpec), masked, cfg.isolation_bridge);
    return { devid: v.devid, name: v.name, masked, bridge: spec.bridge!, spec: printVif(spec) };
  });
  const original = live.original;
  const known =
    original?.nics?.map((n) => ({ devid: n.devid, vifname: n.vifname ?? null })) ??
    meta?.originalVifs ??
    [];
  // A vif of a shut-down original has no backend name yet (unless its config
  // names it): nothing to drop until it starts, and then this runs again.
  const originalVifs = known.flatMap((v): PublishedVif[] => {
    const name = v.vifname ?? (original ? `vif${original.domid}.${v.devid}` : undefined);
    return name === undefined
      ? []
      : [{ devid: v.devid, name, masked: isMasked(originalMask, v.devid) }];
  });
  const consoleType = meta?.consoleType ?? 'none';
  return {
    publication: {
      vm,
      state,
      cloneName,
      cloneDomid: live.cloneDomid,
      originalDomid: original?.domid,
      cloneVifMask: formatVifMask(cloneMask),
      originalVifMask: formatVifMask(originalMask),
      cloneVifs: cloneVifs.map((v) => ({ devid: v.devid, name: v.name, masked: v.masked })),
      originalVifs: originalVifs.sort((a, b) => a.devid - b.devid),
      console: { type: consoleType, enabled: cfg.console_enabled && consoleType === 'vnc' },
    },
    cloneVifs,
    isolationBridge: cfg.isolation_bridge,
    clonePrefix: cfg.clone_vif_prefix,
    ...(config instanceof Error ? { configProblem: config.message } : {}),
  };
}

/** The VM's effective configuration, or the error that keeps it from being read. */
export function configOrError(vm: VmName, paths: ZynclonePaths): ZyncloneConfig | Error {
  try {
    return effectiveConfig(vm, paths).values;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/**
 * Asks xl about the original and the clone. `domains` (name -> domid, one
 * `xl list` the caller already ran) saves that run.
 */
export async function liveDomains(
  xl: Pick<XlDriver, 'list' | 'listLong'>,
  vm: string,
  cloneName: string,
  domains?: ReadonlyMap<string, number>,
): Promise<LiveDomains> {
  const ids = domains ?? new Map((await xl.list()).map((d) => [d.name, Number(d.domid)]));
  const originalDomid = ids.get(vm);
  const cloneDomid = ids.get(cloneName);
  let original: LiveDomains['original'];
  if (originalDomid !== undefined) {
    try {
      const [d] = await xl.listLong(vm);
      original = {
        domid: originalDomid,
        nics: (d?.nics ?? []).map((n, i) => ({ devid: n.devid ?? i, vifname: n.vifname })),
      };
    } catch {
      // Gone meanwhile, or xl failed: its vifs as the clone's record has them.
      original = { domid: originalDomid };
    }
  }
  return {
    ...(original === undefined ? {} : { original }),
    ...(cloneDomid === undefined ? {} : { cloneDomid }),
  };
}

/** The lockdown of now: current configuration, live domains. */
export async function currentLockdown(
  ctx: { readonly paths: ZynclonePaths; readonly xl: Pick<XlDriver, 'list' | 'listLong'> },
  meta: CloneMeta,
  state: CloneState,
  domains?: ReadonlyMap<string, number>,
): Promise<CloneLockdown> {
  const live = await liveDomains(ctx.xl, meta.vm, meta.cloneName, domains);
  return cloneLockdown(
    meta.vm,
    meta.cloneName,
    meta,
    state,
    configOrError(meta.vm, ctx.paths),
    live,
  );
}

/** The clone's xl config text with its vifs as `lockdown` puts them. */
export function lockedCloneConfig(text: string, source: string, lockdown: CloneLockdown): string {
  const cfg = XlConfig.parse(text, source);
  if (lockdown.cloneVifs.length > 0)
    cfg.set(
      'vif',
      lockdown.cloneVifs.map((v) => v.spec),
    );
  return cfg.print();
}
