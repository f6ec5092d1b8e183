// What the console monitor knows of each clone, from XenStore only: the
// published vm/$VM (state, name, domid, console type and switch, generation),
// the net monitor's ack, and the clone domain's console/vnc-port and
// vnc-listen, which libxl writes dom0-owned and the guest cannot change.
import { type XsClient, type XsOps, type XsWatch, isXsErrno } from '../../xenstore/index.js';
import type { DaemonLogger } from '../common/log.js';
import { PassScheduler } from '../common/pass-scheduler.js';

import { ACK_ROOT, VM_ROOT } from '../../core/xenstore/index.js';

export interface CloneConsole {
  readonly vm: string;
  readonly cloneName: string;
  readonly state: string;
  readonly domid: number | undefined;
  readonly cloneUuid: string | undefined;
  /** VNC server of the clone domain, when it has one. */
  readonly vnc: { readonly host: string; readonly port: number } | undefined;
  readonly consoleType: string;
  readonly consoleEnabled: boolean;
  readonly generation: number | undefined;
  readonly ack: number | undefined;
}

/** True when the net monitor has acknowledged the published lockdown. */
export function lockdownAcked(c: CloneConsole): boolean {
  return c.generation !== undefined && c.ack !== undefined && c.ack >= c.generation;
}

export function sameEndpoint(a: CloneConsole | undefined, b: CloneConsole | undefined): boolean {
  return (
    a?.cloneUuid === b?.cloneUuid &&
    a?.domid === b?.domid &&
    a?.vnc?.host === b?.vnc?.host &&
    a?.vnc?.port === b?.vnc?.port
  );
}

const VM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const UUID_PATH = /^\/vm\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
/** An address QEMU listens on: an IP literal or a host name, nothing that could be a URL. */
const LISTEN = /^[A-Za-z0-9.:_-]{1,253}$/;

function int(text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined || !/^[0-9]{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= max ? n : undefined;
}

/** One VM's console facts; undefined when it has no clone (vm/$VM absent). */
export async function readCloneConsole(xs: XsOps, vm: string): Promise<CloneConsole | undefined> {
  const base = `${VM_ROOT}/${vm}`;
  const [state, cloneName, domidText, type, enabled, generation, ack] = await Promise.all([
    xs.tryRead(`${base}/state`),
    xs.tryRead(`${base}/clone-name`),
    xs.tryRead(`${base}/clone-domid`),
    xs.tryRead(`${base}/console/type`),
    xs.tryRead(`${base}/console/enabled`),
    xs.tryRead(`${base}/generation`),
    xs.tryRead(`${ACK_ROOT}/${vm}`),
  ]);
  if (state === undefined || cloneName === undefined) return undefined;
  const domid = int(domidText, 1, 32751);
  let cloneUuid: string | undefined;
  let vnc: CloneConsole['vnc'];
  if (domid !== undefined) {
    const dom = `/local/domain/${domid}`;
    const [vmPath, name, port, listen] = await Promise.all([
      xs.tryRead(`${dom}/vm`).catch(() => undefined),
      xs.tryRead(`${dom}/name`).catch(() => undefined),
      xs.tryRead(`${dom}/console/vnc-port`).catch(() => undefined),
      xs.tryRead(`${dom}/console/vnc-listen`).catch(() => undefined),
    ]);
    // A domid published for another domain (stale after a reboot) has no console of this clone.
    if (name === cloneName) {
      cloneUuid = UUID_PATH.exec(vmPath ?? '')?.[1];
      const p = int(port, 1, 65535);
      if (p !== undefined) {
        vnc = { host: listen !== undefined && LISTEN.test(listen) ? listen : '127.0.0.1', port: p };
      }
    }
  }
  return {
    vm,
    cloneName,
    state,
    domid,
    cloneUuid,
    vnc,
    consoleType: type ?? 'none',
    consoleEnabled: enabled === '1',
    generation: int(generation, 0, Number.MAX_SAFE_INTEGER),
    ack: int(ack, 0, Number.MAX_SAFE_INTEGER),
  };
}

export type CloneListener = (
  vm: string,
  now: CloneConsole | undefined,
  before: CloneConsole | undefined,
) => void;

/**
 * Keeps `CloneConsole` facts current: watches vm/, net/ack/ and the console
 * node of each clone domain, and re-reads what an event touched. Listeners
 * hear every VM whose facts changed.
 */
export class CloneConsoles {
  private readonly clones = new Map<string, CloneConsole>();
  private readonly domainWatches = new Map<number, { watch: XsWatch; loop: Promise<void> }>();
  private readonly listeners = new Set<CloneListener>();
  private readonly passes: PassScheduler;
  private readonly watches: XsWatch[] = [];
  private readonly loops: Promise<void>[] = [];
  private resyncListener: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly xs: XsClient,
    private readonly log: DaemonLogger,
  ) {
    this.passes = new PassScheduler({
      pass: (full, dirty) => this.pass(full, dirty),
      onError: (err, retryMs) =>
        this.log.error('reading the clones failed; retrying', { error: err, retryMs }),
      retryMinMs: 50,
      retryMaxMs: 5000,
    });
  }

  get(vm: string): CloneConsole | undefined {
    return this.clones.get(vm);
  }

  all(): CloneConsole[] {
    return [...this.clones.values()];
  }

  onChange(listener: CloneListener): void {
    this.listeners.add(listener);
  }

  /** Called after a XenStore reconnect (our own nodes may need rewriting). */
  onResync(listener: () => void): void {
    this.resyncListener = listener;
  }

  async start(): Promise<void> {
    for (const path of [VM_ROOT, ACK_ROOT]) {
      const watch = await this.xs.watch(path);
      this.watches.push(watch);
      this.loops.push(this.consume(watch, (p) => this.vmOf(p)));
    }
    this.passes.markFull();
    await this.passes.idle();
  }

  /** Resolves once no re-read is running or pending (tests). */
  idle(): Promise<void> {
    return this.passes.idle();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const all = [...this.watches, ...[...this.domainWatches.values()].map((d) => d.watch)];
    await Promise.all(all.map((w) => w.close().catch(() => {})));
    await Promise.all([...this.loops, ...[...this.domainWatches.values()].map((d) => d.loop)]);
    await this.passes.stop();
  }

  private vmOf(path: string): string | undefined {
    for (const root of [VM_ROOT, ACK_ROOT]) {
      if (path.startsWith(`${root}/`)) {
        const vm = path.slice(root.length + 1).split('/')[0]!;
        return VM_NAME.test(vm) ? vm : undefined;
      }
    }
    return undefined;
  }

  private async consume(watch: XsWatch, vmOf: (path: string) => string | undefined): Promise<void> {
    try {
      for await (const item of watch) {
        if (item.kind === 'resync') {
          this.passes.markFull();
          this.resyncListener?.();
          continue;
        }
        const vm = vmOf(item.path);
        if (vm === undefined) {
          // The root itself (created, removed): re-read everything.
          if (item.path === VM_ROOT || item.path === ACK_ROOT) this.passes.markFull();
        } else this.passes.markDirty(vm);
      }
    } catch (err) {
      if (!this.stopped) this.log.error('watch ended', { error: err, path: watch.path });
    }
  }

  private async pass(full: boolean, dirty: string[]): Promise<void> {
    let names = dirty;
    if (full) {
      let listed: string[] = [];
      try {
        listed = (await this.xs.directory(VM_ROOT)).filter((vm) => VM_NAME.test(vm));
      } catch (err) {
        if (!isXsErrno(err, 'ENOENT')) throw err;
      }
      names = [...new Set([...listed, ...this.clones.keys()])];
    }
    const read = await Promise.all(names.map((vm) => readCloneConsole(this.xs, vm)));
    for (const [i, vm] of names.entries()) {
      const now = read[i];
      const before = this.clones.get(vm);
      if (now) this.clones.set(vm, now);
      else this.clones.delete(vm);
      if (JSON.stringify(now) !== JSON.stringify(before)) {
        for (const l of this.listeners) l(vm, now, before);
      }
    }
    await this.syncDomainWatches();
  }

  /** A watch on each clone domain's console/ node, so a VNC port written later is seen. */
  private async syncDomainWatches(): Promise<void> {
    const wanted = new Map<number, string>();
    for (const c of this.clones.values()) if (c.domid !== undefined) wanted.set(c.domid, c.vm);
    for (const [domid, w] of this.domainWatches) {
      if (wanted.has(domid)) continue;
      this.domainWatches.delete(domid);
      await w.watch.close().catch(() => {});
    }
    for (const domid of wanted.keys()) {
      if (this.domainWatches.has(domid) || this.stopped) continue;
      const watch = await this.xs.watch(`/local/domain/${domid}/console`);
      const loop = this.consume(watch, () => {
        for (const c of this.clones.values()) if (c.domid === domid) return c.vm;
        return undefined;
      });
      this.domainWatches.set(domid, { watch, loop });
    }
  }
}
