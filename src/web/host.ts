/**
 * The core objects the server shares between requests: the state store, one
 * XenStore connection, the xl driver. Each operation gets its own
 * CloneLifecycle (its requester and progress sink), as each vmclone command
 * does, and recovers operations left by dead processes first, as vmclone does.
 */
import { crashPointsFromEnv } from '../core/clones/journal.js';
import { CloneLifecycle, type ProgressEvent } from '../core/clones/lifecycle.js';
import { type IssuedTicket, issueConsoleTicket } from '../core/console/index.js';
import { type Finding, runDoctor } from '../core/health/index.js';
import type { VmName, ZynclonePaths } from '../core/paths.js';
import { type StateStore, openStateStore } from '../core/state/index.js';
import type { Requester } from '../core/state/types.js';
import { VolumeSwitcher } from '../core/volumes/index.js';
import { XlDriver } from '../xen/index.js';
import { XsClient } from '../xenstore/index.js';

export interface CoreHostOptions {
  readonly paths: ZynclonePaths;
  readonly xenstorePath: string;
  /** Environment of the xl driver (PATH decides which xl runs). */
  readonly env: NodeJS.ProcessEnv;
  /** Network namespace of the network domain, for the doctor. */
  readonly netns?: string;
}

export class CoreHost {
  readonly store: StateStore;
  readonly xl: XlDriver;
  private xsClient: Promise<XsClient> | undefined;

  constructor(readonly o: CoreHostOptions) {
    this.store = openStateStore({ paths: o.paths });
    this.xl = new XlDriver({ env: o.env, timeoutMs: 300_000 });
  }

  get paths(): ZynclonePaths {
    return this.o.paths;
  }

  /** One XenStore connection for the server's life; it reconnects by itself. */
  xs(): Promise<XsClient> {
    this.xsClient ??= XsClient.connect({
      path: this.o.xenstorePath,
      transport: 'socket',
      requestTimeoutMs: 15_000,
    }).catch((err) => {
      this.xsClient = undefined;
      throw err;
    });
    return this.xsClient;
  }

  /** Shared volumes for one request, after recovering switches left by dead processes. */
  async volumes(requestedBy: Requester): Promise<VolumeSwitcher> {
    const volumes = new VolumeSwitcher({
      paths: this.paths,
      store: this.store,
      xl: this.xl,
      xs: () => this.xs(),
      requestedBy,
      crash: crashPointsFromEnv(this.o.env),
    });
    await volumes.recover();
    return volumes;
  }

  /** A lifecycle for one request, after crash recovery (switches first, as vmclone). */
  async lifecycle(
    requestedBy: Requester,
    progress?: (e: ProgressEvent) => void,
  ): Promise<CloneLifecycle> {
    await this.volumes(requestedBy);
    const lc = new CloneLifecycle({
      paths: this.paths,
      store: this.store,
      xl: this.xl,
      xs: () => this.xs(),
      requestedBy,
      ...(progress ? { progress } : {}),
      crash: crashPointsFromEnv(this.o.env),
    });
    await lc.recover();
    return lc;
  }

  /** A console ticket for `vm`'s running clone, as `vmclone console` issues it. */
  async consoleTicket(vm: VmName, requestedBy: Requester): Promise<IssuedTicket> {
    if (this.store.staleOperations().length > 0) await this.lifecycle(requestedBy);
    return issueConsoleTicket(
      { xs: await this.xs(), store: this.store, xl: this.xl, paths: this.paths },
      vm,
      requestedBy,
    );
  }

  /** The same checks as `vmclone doctor`. */
  async doctor(): Promise<Finding[]> {
    // XenStore away: the doctor tries itself and says what it found.
    const xs = await this.xs().catch(() => undefined);
    return runDoctor({
      paths: this.paths,
      xl: this.xl,
      ...(xs ? { xs } : {}),
      xenstorePath: this.o.xenstorePath,
      store: this.store,
      ...(this.o.netns === undefined ? {} : { netns: this.o.netns }),
    });
  }

  async close(): Promise<void> {
    const xs = await this.xsClient?.catch(() => undefined);
    await xs?.close().catch(() => {});
    this.store.close();
  }
}
