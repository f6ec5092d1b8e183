// A XenStore host for the orchestrator's tests: the simulator's xenstored
// (permissions and quotas as C xenstored, one socket per guest domain),
// domains written with libxl's layout, a real configuration tree and state
// store, and the orchestrator with an executor that records what it was
// asked to do (the real lifecycle is exercised by the e2e tests).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setOverride } from '../../../src/core/config/index.js';
import { type ZynclonePaths, validateVmName, zynclonePaths } from '../../../src/core/paths.js';
import { type StateStore, openStateStore } from '../../../src/core/state/index.js';
import { createLogger } from '../../../src/daemons/common/log.js';
import { configPolicy } from '../../../src/daemons/orchestrator/host.js';
import {
  GuestOrchestrator,
  type OperationOutcome,
  type OperationRequest,
  type OrchestratorLimits,
} from '../../../src/daemons/orchestrator/orchestrator.js';
import { removeDomain, writeDomain } from '../../../src/sim/host/layout.js';
import { type Quotas, XenstoreServer } from '../../../src/sim/xenstored/server.js';
import { XsClient } from '../../../src/xenstore/index.js';

export const uuidFor = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

export class Lab {
  readonly calls: OperationRequest[] = [];
  readonly logLines: Record<string, unknown>[] = [];
  /** Operations in progress, by VM: more than one at a time would be a bug. */
  readonly inFlight = new Map<string, number>();
  maxInFlightPerVm = 0;
  /** What the executor does; replace in a test. */
  behave: (
    req: OperationRequest,
    progress: (message: string) => void,
  ) => Promise<OperationOutcome> = async (req) => ({
    message: `${req.op} done`,
    cloneState: req.op === 'remove' ? 'none' : 'running',
    cloneName: `${req.vm}-clone`,
  });
  orchestrator!: GuestOrchestrator;
  private readonly guests: XsClient[] = [];

  private constructor(
    readonly dir: string,
    readonly server: XenstoreServer,
    readonly dom0: XsClient,
    readonly paths: ZynclonePaths,
    readonly store: StateStore,
  ) {}

  static async start(quotas?: Partial<Quotas>): Promise<Lab> {
    const dir = mkdtempSync(join(tmpdir(), 'zc-orch-'));
    const server = await XenstoreServer.start({
      socketPath: join(dir, 'socket'),
      domainSocketDir: join(dir, 'domains'),
      ...(quotas ? { quotas } : {}),
    });
    const dom0 = await XsClient.connect({ path: join(dir, 'socket'), transport: 'socket' });
    const paths = zynclonePaths(join(dir, 'root'));
    return new Lab(dir, server, dom0, paths, openStateStore({ paths }));
  }

  get socket(): string {
    return join(this.dir, 'socket');
  }

  /** Turns guest orchestration on or off for a VM (its override file). */
  configure(vm: string, values: Record<string, string>): void {
    for (const [k, v] of Object.entries(values)) setOverride(validateVmName(vm), k, v, this.paths);
  }

  async addDomain(domid: number, name: string, uuid = uuidFor(domid)): Promise<void> {
    await this.dom0.transaction(async (tx) => {
      await writeDomain(tx, {
        domid,
        name,
        uuid,
        type: 'pv',
        memoryMiB: 64,
        maxMemMiB: 64,
        vcpus: 1,
        startTime: Date.now() / 1000,
      });
    });
    await this.dom0.introduce(domid, 0x10000 + domid, 1);
  }
  /** A running online clone of web01 (domain 1), as domain `domid`, in the store and in XenStore. */
  async addCloneOfWeb01(domid: number): Promise<void> {
    this.store.putClone({
      vm: 'web01',
      cloneName: 'web01-clone',
      cloneUuid: uuidFor(domid),
      cloneDomid: domid,
      state: 'running',
      kind: 'online',
      sourceUuid: uuidFor(1),
      requestedBy: 'user:root',
    });
    await this.addDomain(domid, 'web01-clone');
  }

  async destroyDomain(domid: number, uuid = uuidFor(domid)): Promise<void> {
    await this.dom0.transaction((tx) => removeDomain(tx, domid, uuid));
    await this.dom0.release(domid);
  }

  /** A client on the guest's own socket: it can do only what that domain could. */
  async guest(domid: number): Promise<XsClient> {
    const xs = await XsClient.connect({
      path: this.server.domainSocketPath(domid),
      transport: 'socket',
      reconnect: false,
    });
    this.guests.push(xs);
    return xs;
  }

  async startOrchestrator(limits: Partial<OrchestratorLimits> = {}): Promise<GuestOrchestrator> {
    this.orchestrator = new GuestOrchestrator({
      xs: this.dom0,
      log: createLogger('orchestrator', {
        level: 'debug',
        write: (line) => this.logLines.push(JSON.parse(line) as Record<string, unknown>),
      }),
      policy: configPolicy(this.paths, this.store),
      execute: async (req, progress) => {
        this.calls.push(req);
        const n = (this.inFlight.get(req.vm) ?? 0) + 1;
        this.inFlight.set(req.vm, n);
        this.maxInFlightPerVm = Math.max(this.maxInFlightPerVm, n);
        try {
          return await this.behave(req, progress);
        } finally {
          this.inFlight.set(req.vm, (this.inFlight.get(req.vm) ?? 1) - 1);
        }
      },
      limits: { scanIntervalMs: 60_000, ...limits },
    });
    await this.orchestrator.start();
    return this.orchestrator;
  }

  /**
   * The reply nodes of request `id` of a domain, as dom0 reads them: in one
   * transaction, since the orchestrator replaces a reply's nodes in one and a
   * listing taken before that replacement would miss the nodes it adds.
   */
  async reply(domid: number, id: string): Promise<Record<string, string> | undefined> {
    const base = `/local/domain/${domid}/zynclone/reply/${id}`;
    return this.dom0.transaction(async (tx) => {
      const names = await tx.directory(base).catch(() => undefined);
      if (!names) return undefined;
      const out: Record<string, string> = {};
      for (const n of names) out[n] = await tx.read(`${base}/${n}`);
      return out;
    });
  }

  async waitReply(
    domid: number,
    id: string,
    states: readonly string[] = ['ok', 'error'],
    timeoutMs = 5000,
  ): Promise<Record<string, string>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.reply(domid, id);
      if (r?.state !== undefined && states.includes(r.state)) return r;
      if (Date.now() > deadline) {
        throw new Error(
          `no ${states.join('|')} reply for ${id} of domain ${domid}: ${JSON.stringify(r)}`,
        );
      }
      await new Promise((res) => setTimeout(res, 10));
    }
  }

  async close(): Promise<void> {
    // An executor a test left hanging keeps its operation "running" for ever.
    await Promise.race([this.orchestrator?.stop(), new Promise((r) => setTimeout(r, 1000))]);
    for (const g of this.guests) await g.close().catch(() => {});
    await this.dom0.close().catch(() => {});
    await this.server.close();
    this.store.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
