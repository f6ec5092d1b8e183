import { existsSync, readFileSync } from 'node:fs';
import {
  type DiskSpec,
  XlConfig,
  type XlDriver,
  domId,
  parseDisk,
  printDisk,
  vdevToDevid,
} from '../../xen/index.js';
import { CloneError } from '../clones/errors.js';
import { type CrashPoints, JournaledOperation } from '../clones/journal.js';
/**
 * Shared volumes (issue 14): a shared volume is never copied and has exactly
 * one holder, the original or its clone; only the holder's domain may have it
 * attached. `switchVolume` moves it: detach from the holder without force
 * (the guest must let go), wait until XenStore shows the device closed,
 * attach to the other side (or record it in the clone's config for its next
 * start), record the new holder. Every step is journaled with its undo before
 * it acts; a failure, or recovery after a crash at any step, rolls back in
 * reverse, so the volume is attached to one domain or to none, never to two.
 */
import { cloneConfigFile, readCloneMeta } from '../clones/meta.js';
import { classifyDisks, parseOriginalConfig } from '../clones/plan.js';
import { effectiveConfig } from '../config/config.js';
import { writeFileAtomic } from '../config/index.js';
import type { SharedVolumeMode } from '../config/schema.js';
import type { VmName, ZynclonePaths } from '../paths.js';
import type { StateStore } from '../state/store.js';
import type { CloneRecord, Json, OperationRecord, Requester, VolumeSide } from '../state/types.js';
import {
  type VolumeAttachment,
  type VolumeIdentity,
  type VolumeXs,
  findAttachments,
  frontendError,
  sharingConflict,
  volumeIdentity,
  waitDeviceClosed,
  waitDeviceConnected,
} from './attachments.js';
import { VolumeError } from './errors.js';

/** The steps of a switch, in order (crash tests iterate over them). */
export const SWITCH_STEPS = ['plan', 'detach', 'clone-config', 'attach', 'record'] as const;

/** Undo actions of a switch, as stored in the journal. */
export type VolumeUndo =
  | {
      readonly action: 'attach';
      readonly domain: string;
      readonly uuid: string | null;
      readonly vdev: string;
      readonly spec: string;
      readonly target: string;
    }
  | {
      readonly action: 'detach';
      readonly domain: string;
      readonly uuid: string | null;
      readonly vdev: string;
      readonly target: string;
    }
  | { readonly action: 'write-file'; readonly path: string; readonly content: string }
  | {
      readonly action: 'holder';
      readonly vm: VmName;
      readonly vdev: string;
      readonly holder: VolumeSide;
    };

export interface SharedVolume {
  readonly vdev: string;
  /** Its disk spec in the original's xl config, as written there. */
  readonly text: string;
  readonly spec: DiskSpec;
  /** The file or block device. */
  readonly target: string;
}

export interface VolumeProgressEvent {
  readonly kind: 'step' | 'done' | 'info' | 'warn';
  readonly message: string;
  readonly ms?: number;
}

export interface VolumeOptions {
  readonly paths: ZynclonePaths;
  readonly store: StateStore;
  readonly xl: XlDriver;
  readonly xs: () => Promise<VolumeXs>;
  readonly requestedBy: Requester;
  readonly progress?: (event: VolumeProgressEvent) => void;
  readonly crash?: CrashPoints;
  /** How long to wait for a device to close or connect in XenStore after xl returned. */
  readonly deviceTimeoutMs?: number;
}

export interface SwitchResult {
  readonly vm: VmName;
  readonly vdev: string;
  readonly from: VolumeSide;
  readonly to: VolumeSide;
  readonly changed: boolean;
  /** Attached to the new holder now (false: recorded for its next start). */
  readonly attached: boolean;
  readonly detachMs: number | undefined;
  readonly attachMs: number | undefined;
  readonly totalMs: number;
}

export interface VolumeHolding {
  readonly vdev: string;
  readonly target: string;
  readonly holder: VolumeSide;
  /** Domains that have it attached now, by name (empty when XenStore cannot be read). */
  readonly attachedTo: readonly { domain: string; domid: number; mode: 'r' | 'w' }[];
}

interface SideDomain {
  readonly name: string;
  readonly domid: number | undefined;
  readonly paused: boolean;
  readonly uuid: string | null;
}

export interface VolumeRecoveryReport {
  readonly opId: number;
  readonly vm: VmName;
  readonly outcome: 'rolled-back' | 'failed';
  readonly error?: string;
}

const DEFAULT_DEVICE_TIMEOUT_MS = 20_000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The clone's xl config with `volume` added (writable) or removed. */
export function withSharedDisk(configText: string, volume: SharedVolume, carry: boolean): string {
  const cfg = XlConfig.parse(configText, 'clone config');
  const disks = (cfg.getStrings('disk') ?? []).filter((text) => {
    try {
      return parseDisk(text).vdev !== volume.vdev;
    } catch {
      return true;
    }
  });
  if (carry) disks.push(printDisk({ ...volume.spec, access: 'rw' }));
  cfg.set('disk', disks);
  return cfg.print();
}

export class VolumeSwitcher {
  private xsClient: VolumeXs | undefined;

  constructor(private readonly o: VolumeOptions) {}

  private get store(): StateStore {
    return this.o.store;
  }

  private async xs(): Promise<VolumeXs> {
    this.xsClient ??= await this.o.xs();
    return this.xsClient;
  }

  private get deviceTimeout(): number {
    return this.o.deviceTimeoutMs ?? DEFAULT_DEVICE_TIMEOUT_MS;
  }

  private async timed<T>(message: string, fn: () => Promise<T>): Promise<[T, number]> {
    this.o.progress?.({ kind: 'step', message });
    const t = performance.now();
    const v = await fn();
    const ms = performance.now() - t;
    this.o.progress?.({ kind: 'done', message, ms });
    return [v, ms];
  }

  // ---- what is shared --------------------------------------------------------

  /** The original's xl config: the one the clone was made from, else the usual places. */
  private originalConfigFile(vm: VmName, clone: CloneRecord | undefined): string | undefined {
    if (clone !== undefined) {
      try {
        const { originalConfigFile } = readCloneMeta(this.o.paths, clone.cloneName);
        if (existsSync(originalConfigFile)) return originalConfigFile;
      } catch {
        // Fall back to the usual places.
      }
    }
    return this.o.paths.xlConfigCandidates(vm).find((f) => existsSync(f));
  }

  /** The VM's shared volumes (config `shared_volumes` matched against its xl config). */
  sharedVolumes(vm: VmName): { mode: SharedVolumeMode; volumes: SharedVolume[] } {
    const cfg = effectiveConfig(vm, this.o.paths).values;
    if (cfg.shared_volumes.length === 0) return { mode: cfg.shared_volume_mode, volumes: [] };
    const file = this.originalConfigFile(vm, this.store.getClone(vm));
    if (file === undefined) {
      throw new CloneError('VM_NOT_FOUND', `no xl config file for VM ${vm} under /etc/xen`);
    }
    const original = parseOriginalConfig(readFileSync(file, 'utf8'), file);
    const volumes = classifyDisks(original, cfg)
      .filter((d) => d.action === 'share')
      .map((d) => {
        if (d.spec.vdev === undefined || d.spec.target === undefined) {
          throw new CloneError(
            'CLONE_CONFIG',
            `shared volume ${d.text} in ${file} needs a vdev and a target`,
          );
        }
        return { vdev: d.spec.vdev, text: d.text, spec: d.spec, target: d.spec.target };
      });
    return { mode: cfg.shared_volume_mode, volumes };
  }

  // ---- domains -----------------------------------------------------------------

  /** The UUID of domain `domid`, from its `vm` link in XenStore (libxl writes /vm/<uuid>). */
  private async uuidOf(domid: number): Promise<string | null> {
    return (await (await this.xs()).tryRead(`/local/domain/${domid}/vm`))?.split('/').pop() ?? null;
  }

  private async sideDomains(
    vm: VmName,
    clone: CloneRecord,
  ): Promise<Record<VolumeSide, SideDomain>> {
    const all = await this.o.xl.list();
    const side = async (name: string, expectUuid: string | null): Promise<SideDomain> => {
      const d = all.find((x) => x.name === name);
      if (d === undefined) return { name, domid: undefined, paused: false, uuid: expectUuid };
      const uuid = await this.uuidOf(d.domid);
      if (expectUuid !== null && uuid !== null && uuid !== expectUuid) {
        throw new VolumeError(
          'VOLUME_REFUSED',
          `domain ${name} (domid ${d.domid}) has UUID ${uuid}, not the clone's ${expectUuid}; not touching it`,
        );
      }
      return { name, domid: d.domid, paused: d.flags.paused, uuid };
    };
    return {
      original: await side(vm, null),
      clone: await side(clone.cloneName, clone.cloneUuid),
    };
  }

  /** The domain named `name` now, if it is still the one with `uuid`. */
  private async domainNow(
    name: string,
    uuid: string | null,
  ): Promise<{ domid: number; paused: boolean } | undefined> {
    const d = (await this.o.xl.list()).find((x) => x.name === name);
    if (d === undefined) return undefined;
    const now = await this.uuidOf(d.domid);
    if (uuid !== null && now !== null && now !== uuid) return undefined;
    return { domid: d.domid, paused: d.flags.paused };
  }

  // ---- the two acts ------------------------------------------------------------

  /** Detaches `vdev` from `domid` unless it is not attached there; throws VOLUME_GUEST_REFUSED. */
  private async detach(
    domain: string,
    domid: number,
    vdev: string,
    id: VolumeIdentity,
    force: boolean,
  ): Promise<void> {
    const xs = await this.xs();
    const devid = vdevToDevid(vdev);
    const mine = (await findAttachments(xs, id)).find(
      (a) => a.domid === domid && a.devid === devid,
    );
    if (mine === undefined) return;
    try {
      await this.o.xl.blockDetach(domId(domid), vdev, { force });
    } catch (err) {
      const still = (await findAttachments(xs, id)).some(
        (a) => a.domid === domid && a.devid === devid,
      );
      if (!still) return;
      const why = await frontendError(xs, domid, devid, mine.frontendPath);
      throw new VolumeError(
        'VOLUME_GUEST_REFUSED',
        `${domain} (domid ${domid}) did not let go of ${vdev}` +
          (why === undefined ? ` (${errText(err)})` : `: its guest says "${why}"`) +
          `; unmount it inside ${domain} (Linux: umount the file systems on /dev/${vdev}; ` +
          'Windows: take the disk offline) and run the switch again. --force detaches it anyway, ' +
          'at the risk of crashing the guest or losing what it had not written yet.',
        { cause: err },
      );
    }
    await waitDeviceClosed(xs, mine, this.deviceTimeout);
  }

  /** Attaches the volume to `domid` writable, after the single-writer check; idempotent. */
  private async attach(
    domain: string,
    dom: { domid: number; paused: boolean },
    vdev: string,
    spec: string,
    id: VolumeIdentity,
  ): Promise<void> {
    const xs = await this.xs();
    const devid = vdevToDevid(vdev);
    const now = await findAttachments(xs, id);
    if (now.some((a) => a.domid === dom.domid && a.devid === devid)) return;
    const conflict = sharingConflict(now, { domid: dom.domid, devid, mode: 'w' });
    if (conflict !== undefined) {
      throw new VolumeError(
        'VOLUME_TWO_WRITERS',
        `not attaching ${id.path} to ${domain}: domain ${conflict.domid} has it attached ` +
          `(${conflict.mode === 'w' ? 'writable' : 'read-only'}), and a volume never has two writers`,
      );
    }
    await this.o.xl.blockAttach(domId(dom.domid), spec);
    const mine = (await findAttachments(xs, id)).find(
      (a) => a.domid === dom.domid && a.devid === devid,
    );
    if (mine === undefined) {
      throw new VolumeError(
        'VOLUME_SWITCH_FAILED',
        `xl block-attach ${dom.domid} ${vdev} returned, but XenStore shows no backend for it`,
      );
    }
    // A paused guest connects its frontend once it runs.
    if (!dom.paused) await waitDeviceConnected(xs, mine.backendPath, this.deviceTimeout);
  }

  private async undo(u: VolumeUndo): Promise<void> {
    switch (u.action) {
      case 'attach': {
        const dom = await this.domainNow(u.domain, u.uuid);
        // The old holder is gone: the volume stays with no domain, which is safe.
        if (dom === undefined) return;
        await this.attach(u.domain, dom, u.vdev, u.spec, volumeIdentity(u.target));
        return;
      }
      case 'detach': {
        const dom = await this.domainNow(u.domain, u.uuid);
        if (dom === undefined) return;
        await this.detach(u.domain, dom.domid, u.vdev, volumeIdentity(u.target), false);
        return;
      }
      case 'write-file':
        writeFileAtomic(u.path, u.content);
        return;
      case 'holder':
        this.store.setVolumeHolder(u.vm, u.vdev, u.holder);
        return;
    }
  }

  private async rollBack(op: OperationRecord, reason: string): Promise<void> {
    const fresh = this.store.getOperation(op.id) ?? op;
    for (const step of [...fresh.steps].reverse()) {
      if (step.status === 'undone' || step.undo === null) continue;
      const actions = (Array.isArray(step.undo)
        ? step.undo
        : [step.undo]) as unknown as VolumeUndo[];
      for (const a of [...actions].reverse()) await this.undo(a);
      this.store.undoStep(op.id, step.seq);
    }
    this.store.finishOperation(op.id, 'rolled-back', reason.slice(0, 4000));
  }

  // ---- switch ------------------------------------------------------------------

  /**
   * Moves `vdev` of `vm` to `to`. Refuses (VOLUME_TWO_WRITERS) when a domain
   * that is not the holder has it attached; VOLUME_GUEST_REFUSED when the
   * holder's guest keeps it (nothing changed then). `force` detaches without
   * the guest's cooperation (xl block-detach -f).
   */
  async switchVolume(
    vm: VmName,
    vdev: string,
    to: VolumeSide,
    opts: { force?: boolean } = {},
  ): Promise<SwitchResult> {
    const clone = this.store.getClone(vm);
    if (clone === undefined) {
      throw new CloneError(
        'CLONE_NOT_FOUND',
        `VM ${vm} has no clone: its shared volumes stay with it`,
      );
    }
    const { mode, volumes } = this.sharedVolumes(vm);
    const volume = volumes.find((v) => v.vdev === vdev);
    if (volume === undefined) {
      throw new VolumeError(
        'VOLUME_NOT_SHARED',
        `${vdev} is not a shared volume of ${vm} (shared: ${volumes.map((v) => v.vdev).join(', ') || 'none'}; config shared_volumes)`,
      );
    }
    if (mode === 'ro') {
      throw new VolumeError(
        'VOLUME_REFUSED',
        `${vm}'s shared volumes are read-only in its clone (shared_volume_mode "ro"): the original stays their writer`,
      );
    }
    const op = new JournaledOperation<VolumeUndo>(
      this.store,
      this.store.beginOperation(vm, 'switch-volume', {
        requestedBy: this.o.requestedBy,
        params: { vdev, to, force: opts.force ?? false },
      }),
      this.o.crash,
    );
    try {
      const r = await this.switchIn(op, vm, clone, volume, to, opts.force ?? false);
      this.store.finishOperation(op.id, 'done');
      return r;
    } catch (err) {
      try {
        await this.rollBack(op.refresh(), errText(err));
      } catch (undoErr) {
        throw new VolumeError(
          'VOLUME_SWITCH_FAILED',
          `switching ${vdev} of ${vm} failed: ${errText(err)}; and undoing it failed too: ${errText(undoErr)} ` +
            '(the operation stays pending: the next vmclone command retries the rollback)',
          { cause: err },
        );
      }
      throw err;
    }
  }

  private async switchIn(
    op: JournaledOperation<VolumeUndo>,
    vm: VmName,
    clone: CloneRecord,
    volume: SharedVolume,
    to: VolumeSide,
    force: boolean,
  ): Promise<SwitchResult> {
    const t0 = performance.now();
    const { vdev, target } = volume;
    const from = this.store.volumeHolder(vm, vdev);
    const doms = await this.sideDomains(vm, clone);
    const holder = doms[from];
    const next = doms[to];
    const id = volumeIdentity(target);
    const attached = await findAttachments(await this.xs(), id);
    // vmclone refuses before Xen would: nobody but the holder may have it now.
    const strangers = attached.filter((a) => a.domid !== holder.domid);
    if (strangers.length > 0) {
      throw new VolumeError(
        'VOLUME_TWO_WRITERS',
        `${vdev} (${target}) is attached to domain ${strangers.map((a) => a.domid).join(', ')}, ` +
          `which does not hold it (the ${from} does); detach it there first`,
      );
    }
    const result = (changed: boolean, detachMs?: number, attachMs?: number): SwitchResult => ({
      vm,
      vdev,
      from,
      to,
      changed,
      attached: next.domid !== undefined,
      detachMs,
      attachMs,
      totalMs: performance.now() - t0,
    });
    if (from === to) return result(false);

    await op.step(
      'plan',
      {
        vdev,
        target,
        from,
        to,
        fromDomid: holder.domid ?? null,
        toDomid: next.domid ?? null,
        force,
      },
      null,
      async () => {},
    );
    let detachMs: number | undefined;
    const devid = vdevToDevid(vdev);
    if (holder.domid !== undefined && attached.some((a) => a.devid === devid)) {
      const domid = holder.domid;
      [, detachMs] = await op.step(
        'detach',
        { domain: holder.name, domid, vdev, force },
        {
          action: 'attach',
          domain: holder.name,
          uuid: holder.uuid,
          vdev,
          spec: volume.text,
          target,
        },
        () =>
          this.timed(`detaching ${vdev} from ${holder.name} (domid ${domid})`, () =>
            this.detach(holder.name, domid, vdev, id, force),
          ),
      );
    }
    // The clone's config carries the volume exactly while the clone holds it,
    // so its next start attaches it, and a non-holder's start never does.
    const cfgFile = cloneConfigFile(this.o.paths, clone.cloneName);
    const before = readFileSync(cfgFile, 'utf8');
    const after = withSharedDisk(before, volume, to === 'clone');
    if (after !== before) {
      await op.step(
        'clone-config',
        { file: cfgFile, vdev, carries: to === 'clone' },
        { action: 'write-file', path: cfgFile, content: before },
        async () => writeFileAtomic(cfgFile, after),
      );
    }
    let attachMs: number | undefined;
    if (next.domid !== undefined) {
      const dom = { domid: next.domid, paused: next.paused };
      [, attachMs] = await op.step(
        'attach',
        { domain: next.name, domid: dom.domid, vdev },
        { action: 'detach', domain: next.name, uuid: next.uuid, vdev, target },
        () =>
          this.timed(`attaching ${vdev} to ${next.name} (domid ${dom.domid})`, () =>
            this.attach(next.name, dom, vdev, volume.text, id),
          ),
      );
    } else {
      this.o.progress?.({
        kind: 'info',
        message: `${next.name} is not running: it gets ${vdev} when it starts`,
      });
    }
    await op.step(
      'record',
      { vdev, holder: to },
      { action: 'holder', vm, vdev, holder: from },
      async () => this.store.setVolumeHolder(vm, vdev, to),
    );
    return result(true, detachMs, attachMs);
  }

  // ---- reads, removal, recovery ------------------------------------------------

  /** Each shared volume of `vm` with its recorded holder (no xl, no XenStore). */
  holders(vm: VmName): { vdev: string; holder: VolumeSide }[] {
    return this.sharedVolumes(vm).volumes.map((v) => ({
      vdev: v.vdev,
      holder: this.store.volumeHolder(vm, v.vdev),
    }));
  }

  /** Each shared volume of `vm`: its holder and the domains that have it attached now. */
  async holdings(vm: VmName): Promise<VolumeHolding[]> {
    const { volumes } = this.sharedVolumes(vm);
    if (volumes.length === 0) return [];
    let names = new Map<number, string>();
    let xs: VolumeXs | undefined;
    try {
      xs = await this.xs();
      names = new Map((await this.o.xl.list()).map((d) => [d.domid, d.name]));
    } catch {
      // XenStore or xl unreachable: show the records only.
    }
    const out: VolumeHolding[] = [];
    for (const v of volumes) {
      const attached = xs
        ? await findAttachments(xs, volumeIdentity(v.target)).catch(() => [])
        : [];
      out.push({
        vdev: v.vdev,
        target: v.target,
        holder: this.store.volumeHolder(vm, v.vdev),
        attachedTo: attached.map((a: VolumeAttachment) => ({
          domain: names.get(a.domid) ?? String(a.domid),
          domid: a.domid,
          mode: a.mode,
        })),
      });
    }
    return out;
  }

  /**
   * Gives every shared volume of `vm` back to the original once its clone's
   * domain is gone (clone removal): attached to the running original when
   * nobody has it, and the records cleared. Safe to repeat.
   */
  async returnToOriginal(vm: VmName): Promise<void> {
    const held = this.store.volumeHolders(vm).filter((h) => h.holder === 'clone');
    if (held.length > 0) {
      const { volumes } = this.sharedVolumes(vm);
      const original = await this.domainNow(vm, null);
      for (const h of held) {
        const v = volumes.find((x) => x.vdev === h.vdev);
        if (v === undefined || original === undefined) continue;
        await this.attach(vm, original, v.vdev, v.text, volumeIdentity(v.target));
      }
    }
    this.store.clearVolumeHolders(vm);
  }

  /**
   * Rolls back every switch whose process died (adopting it first): run at
   * the start of every vmclone command, before the lifecycle's recovery.
   */
  async recover(): Promise<VolumeRecoveryReport[]> {
    const reports: VolumeRecoveryReport[] = [];
    for (const stale of this.store.staleOperations()) {
      if (stale.kind !== 'switch-volume') continue;
      let op: OperationRecord;
      try {
        op = this.store.adoptOperation(stale.id);
      } catch (err) {
        if ((err as { code?: string }).code === 'VM_BUSY') continue;
        throw err;
      }
      this.o.progress?.({
        kind: 'info',
        message: `recovering operation ${op.id} (switch-volume of ${op.vm}) left by a dead process`,
      });
      try {
        await this.rollBack(op, `rolled back after its process (pid ${stale.owner.pid}) died`);
        reports.push({ opId: op.id, vm: op.vm, outcome: 'rolled-back' });
      } catch (err) {
        reports.push({ opId: op.id, vm: op.vm, outcome: 'failed', error: errText(err) });
      }
    }
    return reports;
  }
}

/** The shared volumes' JSON form for `vmclone status --json` and the guest orchestrator. */
export function holdingsJson(h: readonly VolumeHolding[]): Json {
  return h.map((x) => ({
    vdev: x.vdev,
    target: x.target,
    holder: x.holder,
    attachedTo: x.attachedTo.map((a) => ({ domain: a.domain, domid: a.domid, mode: a.mode })),
  }));
}
