// The clone_monitor side of the contract, as the tests need it: publish a VM's
// subtree in one transaction with the generation written last, and wait for
// the net monitor's acknowledgement.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XenstoreServer } from '../../../src/sim/xenstored/server.js';
import { XsClient } from '../../../src/xenstore/index.js';
import { sleep } from './lab.js';

export const VM_ROOT = '/tool/zynclone/vm';
export const NET_ROOT = '/tool/zynclone/net';

export interface VifSpec {
  name: string;
  masked: '0' | '1';
}

export interface VmSpec {
  state: 'running' | 'active' | 'inactive';
  cloneVifs: Record<number, VifSpec>;
  originalVifs: Record<number, VifSpec>;
  originalVifMask?: string;
}

export class Publisher {
  private readonly generations = new Map<string, number>();
  constructor(readonly xs: XsClient) {}

  /** The next publish of `vm` uses generation `gen + 1`. */
  setGeneration(vm: string, gen: number): void {
    this.generations.set(vm, gen);
  }

  /** Writes the whole subtree and returns the generation it published. */
  async publish(vm: string, spec: VmSpec): Promise<number> {
    const gen = (this.generations.get(vm) ?? 0) + 1;
    this.generations.set(vm, gen);
    const base = `${VM_ROOT}/${vm}`;
    await this.xs.transaction(async (tx) => {
      await tx.rm(`${base}/clone-vif`).catch(() => {});
      await tx.rm(`${base}/original-vif`).catch(() => {});
      await tx.write(`${base}/state`, spec.state);
      await tx.write(`${base}/original-vif-mask`, spec.originalVifMask ?? 'none');
      await tx.write(`${base}/clone-vif-mask`, 'all');
      for (const [kind, vifs] of [
        ['clone-vif', spec.cloneVifs],
        ['original-vif', spec.originalVifs],
      ] as const) {
        for (const [devid, v] of Object.entries(vifs)) {
          await tx.write(`${base}/${kind}/${devid}/name`, v.name);
          await tx.write(`${base}/${kind}/${devid}/masked`, v.masked);
        }
      }
      await tx.write(`${base}/generation`, String(gen));
    });
    return gen;
  }

  async remove(vm: string): Promise<void> {
    await this.xs.rm(`${VM_ROOT}/${vm}`);
  }

  /** Waits until net/ack/$VM is at least `gen`; returns the applied record. */
  async waitAck(vm: string, gen: number, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ack = await this.xs.tryRead(`${NET_ROOT}/ack/${vm}`);
      if (ack !== undefined && Number(ack) >= gen) {
        return JSON.parse(await this.xs.read(`${NET_ROOT}/applied/${vm}`));
      }
      if (Date.now() > deadline) {
        throw new Error(`no ack >= ${gen} for ${vm} within ${timeoutMs} ms (ack: ${ack})`);
      }
      await sleep(10);
    }
  }

  async waitGone(path: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.xs.tryRead(path)) !== undefined) {
      if (Date.now() > deadline) throw new Error(`${path} still there after ${timeoutMs} ms`);
      await sleep(10);
    }
  }
}

/** A XenStore server on a temporary socket plus a dom0 client publishing on it. */
export class XsFixture extends Publisher {
  private constructor(
    readonly dir: string,
    readonly server: XenstoreServer,
    xs: XsClient,
  ) {
    super(xs);
  }

  static async start(): Promise<XsFixture> {
    const dir = mkdtempSync(join(tmpdir(), 'zc-netmon-'));
    const socketPath = join(dir, 'xenstored.sock');
    const server = await XenstoreServer.start({
      socketPath,
      domainSocketDir: join(dir, 'domains'),
    });
    const xs = await XsClient.connect({ path: socketPath, transport: 'socket' });
    return new XsFixture(dir, server, xs);
  }

  get socketPath(): string {
    return this.server.socketPath;
  }

  async close(): Promise<void> {
    await this.xs.close().catch(() => {});
    await this.server.close().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}
