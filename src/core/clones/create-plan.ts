/**
 * The first half of a create, before anything is done: every refusal
 * (existing clone, taken name, the original in the wrong state for the kind,
 * replication, a production isolation bridge), then the plan: a new UUID,
 * the disks' snapshot plans (all slow probing happens here, before any
 * pause), the clone's xl config, its metadata and its lockdown.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type XlDomainFlags, type XlDriver, vmUuid } from '../../xen/index.js';
import type { EffectiveConfig } from '../config/config.js';
import type { CloneKind, ZyncloneConfig } from '../config/schema.js';
import type { VmName } from '../paths.js';
import type { CloneState } from '../state/types.js';
import type { BackendChoice, SnapshotPlan } from '../storage/index.js';
import { refuseProductionBridge } from './bridge.js';
import { type LifecycleContext, errText } from './context.js';
import { CloneError } from './errors.js';
import { type CloneLockdown, type LiveDomains, cloneLockdown } from './lockdown.js';
import type { CloneMeta } from './meta.js';
import { findOriginalConfig, planDiskSnapshots, remusProbe } from './original.js';
import {
  type ClonePlan,
  originalVifsOf,
  parseOriginalConfig,
  planClone,
  replicationIn,
  shortIdFor,
} from './plan.js';

export interface CreateOptions {
  readonly kind?: CloneKind;
  /** Default from config start_on_create. */
  readonly start?: boolean;
  /** The original's xl config file; default <root>/etc/xen/<vm>.cfg (or <vm>, auto/<vm>.cfg). */
  readonly configFile?: string;
}

/** Everything a create decided before it acts. */
export interface PlannedCreate {
  readonly vm: VmName;
  /** The kind made: an online clone of a shut-down original is made as offline. */
  readonly kind: CloneKind;
  readonly start: boolean;
  /** The clone's state once created: running when started, else active. */
  readonly state: CloneState;
  readonly originalState: 'stopped' | 'paused' | 'running';
  readonly originalFile: string;
  readonly originalUuid: string | undefined;
  readonly snapshots: readonly SnapshotPlan[];
  readonly plan: ClonePlan;
  readonly meta: CloneMeta;
  readonly lockdown: CloneLockdown;
  /** The clone's xl config file. */
  readonly configFile: string;
  /** Where a memory clone's image is saved. */
  readonly saveFile: string;
  /** The VM's effective configuration the plan was made from. */
  readonly config: ZyncloneConfig;
}

function storageKind(kind: CloneKind): 'offline' | 'online-disk' | 'online-memory' {
  return kind === 'offline' ? 'offline' : kind === 'online' ? 'online-disk' : 'online-memory';
}

function storageBackend(cfg: ZyncloneConfig): BackendChoice {
  return cfg.storage_backend === 'lvm-snapshot' ? 'lvm-classic' : cfg.storage_backend;
}

/** How a domain that is no longer running ended, from xl's state letters. */
function domainEnd(flags: XlDomainFlags): string {
  if (flags.dying) return 'dying';
  const why: Record<string, string> = {
    r: 'for reboot',
    s: 'suspended',
    c: 'crashed',
    w: 'by its watchdog',
    S: 'for a soft reset',
  };
  return `shut down (${why[flags.shutdownReason ?? ''] ?? 'powered off'})`;
}

/** UUID, vif MACs and vif names of a running domain, from one `xl list -l`. */
async function runningDetails(
  xl: XlDriver,
  name: string,
): Promise<{
  uuid: string | undefined;
  macs: Map<number, string>;
  nics: { devid: number; vifname: string | undefined }[];
}> {
  const macs = new Map<number, string>();
  try {
    const [d] = await xl.listLong(name);
    const nics = (d?.nics ?? []).map((nic, i) => {
      if (nic.mac !== undefined) macs.set(nic.devid ?? i, nic.mac);
      return { devid: nic.devid ?? i, vifname: nic.vifname };
    });
    return { uuid: d?.uuid, macs, nics };
  } catch (err) {
    if ((err as { code?: string }).code === 'XL_NO_SUCH_DOMAIN') {
      return { uuid: undefined, macs, nics: [] };
    }
    throw err;
  }
}

export async function planCreate(
  ctx: LifecycleContext,
  vm: VmName,
  eff: EffectiveConfig,
  o: { kind: CloneKind; start: boolean; cloneName: string; configFile: string | undefined },
): Promise<PlannedCreate> {
  const cfg = eff.values;
  const { cloneName } = o;
  let { kind } = o;

  const existing = ctx.store.getClone(vm);
  if (existing !== undefined) {
    throw new CloneError(
      'CLONE_EXISTS',
      `VM ${vm} already has a clone, ${existing.cloneName} (${existing.state}); remove it first`,
    );
  }
  const taken = ctx.store.getCloneByName(cloneName);
  if (taken !== undefined) {
    throw new CloneError(
      'CLONE_EXISTS',
      `clone name ${cloneName} is used by the clone of ${taken.vm}`,
    );
  }
  // One `xl list` for every question about domains here: each xl run costs.
  const domains = await ctx.xl.list();
  if (domains.some((d) => d.name === cloneName)) {
    throw new CloneError(
      'CLONE_EXISTS',
      `a domain named ${cloneName} already exists; remove it or change clone_name_pattern`,
    );
  }
  const originalDomain = domains.find((d) => d.name === vm);
  let originalFile: string;
  try {
    originalFile = findOriginalConfig(ctx.paths, vm, o.configFile);
  } catch (err) {
    if (originalDomain === undefined) {
      throw new CloneError(
        'VM_NOT_FOUND',
        `VM ${vm} does not exist: no such domain, and ${errText(err)}`,
      );
    }
    throw err;
  }
  const original = parseOriginalConfig(readFileSync(originalFile, 'utf8'), originalFile);
  refuseProductionBridge(cfg.isolation_bridge, {
    vm,
    clonePrefix: cfg.clone_vif_prefix,
    productionBridges: originalVifsOf(original, { all: true }).map((v) => v.bridge),
  });
  const originalState =
    originalDomain === undefined ? 'stopped' : originalDomain.flags.paused ? 'paused' : 'running';
  if (kind === 'offline' && originalState !== 'stopped') {
    throw new CloneError(
      'CLONE_REFUSED',
      `an offline clone needs ${vm} shut down, but it is ${originalState}; shut it down first, or use --online or --memory`,
    );
  }
  if (kind === 'memory' && originalState === 'stopped') {
    throw new CloneError(
      'CLONE_REFUSED',
      `a memory clone needs ${vm} running, but it is shut down`,
    );
  }
  // A domain that shut down but was kept (on_reboot or on_crash "preserve",
  // also after a triple fault) cannot be suspended: xl save would wait for it
  // and fail only after its suspend timeout.
  if (kind === 'memory' && (originalDomain?.flags.shutdown || originalDomain?.flags.dying)) {
    throw new CloneError(
      'CLONE_REFUSED',
      `a memory clone needs ${vm} running, but its domain ${originalDomain.domid} is ${domainEnd(originalDomain.flags)} and not destroyed; destroy or restart it first`,
    );
  }
  if (kind === 'online' && originalState === 'stopped') {
    ctx.emit('info', `${vm} is shut down: its disks are snapshotted as for an offline clone`);
    kind = 'offline';
  }
  if (kind === 'memory') {
    const why = replicationIn(original) ?? (ctx.o.replicationProbe ?? remusProbe)(vm);
    if (why !== undefined) {
      throw new CloneError(
        'CLONE_REFUSED',
        `${vm} is under continuous replication (${why}): a memory clone would pause and fork a replicated VM; use --online`,
      );
    }
  }
  const running = originalDomain ? await runningDetails(ctx.xl, vm) : undefined;
  const originalUuid =
    running?.uuid ??
    (() => {
      try {
        return original.getString('uuid');
      } catch {
        return undefined;
      }
    })();

  // A new UUID whose vif id does not collide with another clone's.
  const others = new Set(
    ctx.store
      .listClones()
      .map((c) => (c.cloneUuid ? shortIdFor(c.cloneUuid, cfg.clone_vif_prefix) : '')),
  );
  let cloneUuid = randomUUID();
  while (others.has(shortIdFor(cloneUuid, cfg.clone_vif_prefix)) || cloneUuid === originalUuid) {
    cloneUuid = randomUUID();
  }
  vmUuid(cloneUuid);

  const snapshots = await planDiskSnapshots(original, cfg, {
    kind: storageKind(kind),
    originalState,
    cloneName,
    backend: storageBackend(cfg),
    destDir: ctx.paths.resolve(cfg.storage_dir),
  });
  const plan = planClone({
    vm,
    original,
    config: cfg,
    kind,
    cloneName,
    cloneUuid,
    ...(originalUuid === undefined ? {} : { originalUuid }),
    snapshots: snapshots.map((p) => ({ vdev: p.vdev, dest: p.dest, format: p.format })),
    runningMacs: running?.macs ?? new Map(),
  });
  for (const w of plan.warnings) ctx.emit('warn', w);
  if (plan.removedPeripherals.length > 0) {
    ctx.emit(
      'info',
      `peripheral lockdown: removed ${plan.removedPeripherals.join(', ')} from the clone`,
    );
  }

  const saveFile = join(ctx.paths.resolve(cfg.save_image_dir), `${cloneName}.save`);
  const meta: CloneMeta = {
    version: 2,
    vm,
    cloneName,
    cloneUuid,
    kind,
    originalConfigFile: originalFile,
    cloneVifs: plan.cloneVifs.map((v) => ({
      devid: v.devid,
      name: v.name,
      productionSpec: v.productionSpec,
    })),
    originalVifs: plan.originalVifs.map((v) => ({ devid: v.devid, vifname: v.vifname ?? null })),
    consoleType: plan.console.type,
    ...(kind === 'memory' && !o.start ? { saveImage: saveFile } : {}),
  };
  const state: CloneState = o.start ? 'running' : 'active';
  const live: LiveDomains =
    originalDomain === undefined
      ? {}
      : { original: { domid: Number(originalDomain.domid), nics: running?.nics ?? [] } };
  return {
    vm,
    kind,
    start: o.start,
    state,
    originalState,
    originalFile,
    originalUuid,
    snapshots,
    plan,
    meta,
    lockdown: cloneLockdown(vm, cloneName, meta, state, cfg, live),
    configFile: ctx.cloneConfigFile(cloneName),
    saveFile,
    config: cfg,
  };
}
