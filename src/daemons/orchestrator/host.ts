// The orchestrator's two links to the host: who a domain is and what it may
// ask (Policy, from the configuration and the state store), and carrying out
// what it asked (Executor, through the same clone lifecycle as vmclone).
import { statSync } from 'node:fs';
import { CloneLifecycle } from '../../core/clones/lifecycle.js';
import { type ZyncloneConfig, effectiveConfig } from '../../core/config/index.js';
import { type VmName, type ZynclonePaths, asVmName, vmNameProblem } from '../../core/paths.js';
import { type StateStore, type VolumeSide, guestRequester } from '../../core/state/index.js';
import { VolumeError, VolumeSwitcher } from '../../core/volumes/index.js';
import type { XlDriver } from '../../xen/index.js';
import type { XsClient } from '../../xenstore/index.js';
import type { DaemonLogger } from '../common/log.js';
import type { Admission, DomainIdentity, Executor, Policy } from './orchestrator.js';

export function configPolicy(
  paths: ZynclonePaths,
  store: StateStore,
  now: () => number = Date.now,
): Policy {
  const configOf = configReader(paths, now);
  return {
    admit(domain: DomainIdentity): Admission {
      // The domain's name is where the VM name enters: parsed here, once.
      const vm = asVmName(domain.name);
      if (vm === undefined) {
        return { serve: false, reason: `domain name: ${vmNameProblem(domain.name)}` };
      }
      // A clone is recognised by the state store, by name or by UUID.
      const clone = store.getCloneByDomain(domain.name, domain.uuid);
      const configured = configOf(clone?.vm ?? vm);
      if (!configured.guest_orchestration) {
        return { serve: false, reason: 'guest_orchestration is off' };
      }
      return {
        serve: true,
        vm,
        ...(clone === undefined ? {} : { cloneOf: clone.vm }),
        allowedOps: configured.guest_allowed_operations,
        allowCloneRequests: configured.guest_clone_requests,
      };
    },
  };
}

/** Config entries kept; more VMs than this and the reader starts afresh. */
const CONFIG_CACHE_SIZE = 1024;

/**
 * A VM's effective configuration, parsed again only when base.json or the
 * VM's override file changed: every guest request is admitted against the
 * current files, and two stat calls cost far less than reading, parsing and
 * validating both. A file that cannot be stat'ed is read every time (its
 * error then names the file).
 */
function configReader(paths: ZynclonePaths, now: () => number): (vm: VmName) => ZyncloneConfig {
  const cache = new Map<VmName, { readonly version: string; readonly values: ZyncloneConfig }>();
  return (vm) => {
    const nowNs = BigInt(now()) * 1_000_000n;
    const version = `${fileVersion(paths.baseConfigFile, nowNs)}|${fileVersion(paths.overrideFile(vm), nowNs)}`;
    const hit = cache.get(vm);
    if (hit !== undefined && hit.version === version) return hit.values;
    const values = effectiveConfig(vm, paths).values;
    if (version.includes('?')) return values;
    if (cache.size >= CONFIG_CACHE_SIZE) cache.clear();
    cache.set(vm, { version, values });
    return values;
  };
}

/** A file changed this recently may change again within the clock's granularity unseen. */
const SETTLED_NS = 2_000_000_000n;

/**
 * Changes whenever the file is replaced or written; '-' when absent, '?'
 * when unknown or changed too recently to tell a next write apart (as git
 * treats a "racily clean" file).
 */
function fileVersion(file: string, nowNs: bigint): string {
  try {
    const s = statSync(file, { bigint: true });
    if (nowNs - s.ctimeNs < SETTLED_NS) return '?';
    return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? '-' : '?';
  }
}

export interface LifecycleExecutorOptions {
  readonly paths: ZynclonePaths;
  readonly store: StateStore;
  readonly xl: XlDriver;
  readonly xs: XsClient;
  readonly log: DaemonLogger;
}

/** Each request runs as its own lifecycle, recorded as requested by `guest:<domid>`. */
export function lifecycleExecutor(o: LifecycleExecutorOptions): Executor {
  return async (req, progress) => {
    const common = {
      paths: o.paths,
      store: o.store,
      xl: o.xl,
      xs: async () => o.xs,
      requestedBy: guestRequester(req.domid),
      progress: (e: { kind: string; message: string }) => {
        if (e.kind === 'step' || e.kind === 'warn') progress(e.message);
      },
    };
    const vm = req.vm;
    if (req.op === 'status') {
      // From the state store alone: the reply says only the clone's state and
      // name, and guests ask for status often. lc.status would run `xl list`
      // (a fork of this process that stalls every other guest's reply) and
      // the recovery below may too; clone_monitor keeps the store true.
      const clone = o.store.getClone(vm);
      return clone
        ? {
            message: `clone ${clone.cloneName} is ${clone.state}`,
            cloneState: clone.state,
            cloneName: clone.cloneName,
          }
        : { message: `${vm} has no clone`, cloneState: 'none' };
    }
    const lc = new CloneLifecycle(common);
    const volumes = new VolumeSwitcher(common);
    // As vmclone does before each command: finish what dead processes left,
    // switches first (the lifecycle's recovery leaves them alone).
    for (const r of await volumes.recover()) {
      o.log.info('recovered operation', {
        opId: r.opId,
        vm: r.vm,
        kind: 'switch-volume',
        outcome: r.outcome,
      });
    }
    for (const r of await lc.recover()) {
      o.log.info('recovered operation', {
        opId: r.opId,
        vm: r.vm,
        kind: r.kind,
        outcome: r.outcome,
      });
    }
    switch (req.op) {
      case 'create': {
        const kind = req.args.kind as 'offline' | 'online' | 'memory' | undefined;
        const r = await lc.create(vm, {
          ...(kind === undefined ? {} : { kind }),
          ...(req.args.start === undefined ? {} : { start: req.args.start === 'yes' }),
          // A clone asking for its own clone: its config is the one ZynClone wrote.
          ...(req.cloneOf === undefined ? {} : { configFile: lc.cloneConfigFile(vm) }),
        });
        return {
          message: `clone ${r.clone.cloneName} is ${r.clone.state} (${r.clone.kind}, ${Math.round(r.totalMs)} ms)`,
          cloneState: r.clone.state,
          cloneName: r.clone.cloneName,
        };
      }
      case 'remove': {
        const r = await lc.remove(vm);
        return {
          message: r.removed ? 'clone removed' : `${vm} has no clone; nothing to remove`,
          cloneState: 'none',
        };
      }
      case 'stop':
      case 'start':
      case 'activate':
      case 'deactivate': {
        const c =
          req.op === 'stop'
            ? await lc.stop(vm, { force: req.args.force === 'yes' })
            : await lc[req.op](vm);
        return {
          message: `clone ${c.cloneName} is ${c.state}`,
          cloneState: c.state,
          cloneName: c.cloneName,
        };
      }
      case 'switch-volume': {
        // A shared volume is moved by its original only: a clone naming the
        // volume would move it away from the VM it is a clone of.
        if (req.cloneOf !== undefined) {
          throw new VolumeError(
            'VOLUME_REFUSED',
            `this domain is a clone of ${req.cloneOf}; its shared volumes are switched from ${req.cloneOf}`,
          );
        }
        // Never forced: the holder's guest must let go (VOLUME_GUEST_REFUSED otherwise).
        const r = await volumes.switchVolume(vm, req.args.vdev!, req.args.to as VolumeSide, {
          force: false,
        });
        const { clone } = await lc.status(vm);
        const where = r.attached ? 'attached now' : 'attached when it starts';
        return {
          message: r.changed
            ? `${r.vdev} is now held by the ${r.to} (${where})`
            : `${r.vdev} is already held by the ${r.to}`,
          cloneState: clone?.state ?? 'none',
          ...(clone === undefined ? {} : { cloneName: clone.cloneName }),
        };
      }
    }
  };
}
