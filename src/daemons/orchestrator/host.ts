// The orchestrator's two links to the host: who a domain is and what it may
// ask (Policy, from the configuration and the state store), and carrying out
// what it asked (Executor, through the same clone lifecycle as vmclone).
import { CloneLifecycle } from '../../core/clones/lifecycle.js';
import { effectiveConfig } from '../../core/config/index.js';
import { type ZynclonePaths, vmNameProblem } from '../../core/paths.js';
import { type StateStore, guestRequester } from '../../core/state/index.js';
import type { XlDriver } from '../../xen/index.js';
import type { XsClient } from '../../xenstore/index.js';
import type { DaemonLogger } from '../common/log.js';
import type { Admission, DomainIdentity, Executor, Policy } from './orchestrator.js';

export function configPolicy(paths: ZynclonePaths, store: StateStore): Policy {
  return {
    admit(domain: DomainIdentity): Admission {
      const problem = vmNameProblem(domain.name);
      if (problem !== undefined) return { serve: false, reason: `domain name: ${problem}` };
      // A clone is recognised by the state store, by name or by UUID.
      const clone = store
        .listClones()
        .find((c) => c.cloneName === domain.name || c.cloneUuid === domain.uuid);
      const configured = effectiveConfig(clone?.vm ?? domain.name, paths).values;
      if (!configured.guest_orchestration) {
        return { serve: false, reason: 'guest_orchestration is off' };
      }
      return {
        serve: true,
        vm: domain.name,
        ...(clone === undefined ? {} : { cloneOf: clone.vm }),
        allowedOps: configured.guest_allowed_operations,
        allowCloneRequests: configured.guest_clone_requests,
      };
    },
  };
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
    const lc = new CloneLifecycle({
      paths: o.paths,
      store: o.store,
      xl: o.xl,
      xs: async () => o.xs,
      requestedBy: guestRequester(req.domid),
      progress: (e) => {
        if (e.kind === 'step' || e.kind === 'warn') progress(e.message);
      },
    });
    // As vmclone does before each command: finish what dead processes left.
    for (const r of await lc.recover()) {
      o.log.info('recovered operation', {
        opId: r.opId,
        vm: r.vm,
        kind: r.kind,
        outcome: r.outcome,
      });
    }
    const vm = req.vm;
    switch (req.op) {
      case 'status': {
        const { clone } = await lc.status(vm);
        return clone
          ? {
              message: `clone ${clone.cloneName} is ${clone.state}`,
              cloneState: clone.state,
              cloneName: clone.cloneName,
            }
          : { message: `${vm} has no clone`, cloneState: 'none' };
      }
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
    }
  };
}
