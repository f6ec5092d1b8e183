import { stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, join, normalize, resolve } from 'node:path';
import { type CommandRunner, runCommand } from './command.js';
import { StorageError, errnoOf } from './errors.js';
import {
  DEFAULT_CLASSIC_SIZE,
  canClassicSnapshot,
  classicSnapshotArgv,
  createLvmSnapshot,
  isThinVolume,
  lookupLv,
  lvmNameProblem,
  removeLvmSnapshot,
  sizeArgs,
  thinSnapshotArgv,
} from './lvm.js';
import { createOverlay, imageInfo } from './qcow2.js';
import { probeReflink, reflinkFile } from './reflink.js';
import { sparseCopy } from './sparse-copy.js';
import type {
  BackendChoice,
  CloneKind,
  CopyProgress,
  DiskSpec,
  OriginalState,
  SnapshotPlan,
  SnapshotRecord,
} from './types.js';

export interface PlanOptions {
  readonly kind: CloneKind;
  /** The original's state now, while planning (before any pause). */
  readonly originalState: OriginalState;
  /** The clone's domain name; names the clone's disk files and LVs. */
  readonly cloneName: string;
  /** Default `auto`. */
  readonly backend?: BackendChoice;
  /** Where the clone's image files go; default the original image's directory. */
  readonly destDir?: string;
  /** Copy-on-write space of a classic LVM snapshot; default 20%ORIGIN. */
  readonly lvmSnapshotSize?: string;
  readonly run?: CommandRunner;
}

export interface ExecuteContext {
  /**
   * The original's state at the moment execute() runs. Required for a full
   * copy (which must not run against a running original) and checked for a
   * qcow2 overlay.
   */
  readonly originalState?: OriginalState;
  readonly onProgress?: (progress: CopyProgress & { readonly vdev: string }) => void;
  readonly signal?: AbortSignal;
  readonly run?: CommandRunner;
}

const CLONE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const VDEV = /^[a-z][a-z0-9]{1,15}$/;
const FORMATS = new Set(['raw', 'qcow2', 'qcow', 'qed', 'vhd']);

/**
 * Decides how one disk of the original will be snapshotted for the clone. All
 * slow work (filesystem probes, lvs, qemu-img info) happens here, so that
 * execute() can run in the original's pause window doing nothing but the
 * snapshot itself. Throws StorageError naming why when no backend fits.
 */
export async function planSnapshot(disk: DiskSpec, options: PlanOptions): Promise<SnapshotPlan> {
  checkDisk(disk, options);
  return disk.kind === 'file' ? planFile(disk, options) : planPhy(disk, options);
}

function checkDisk(disk: DiskSpec, options: PlanOptions): void {
  const bad = (what: string) => {
    throw new StorageError('STORAGE_INVALID_DISK', `disk ${JSON.stringify(disk.vdev)}: ${what}`);
  };
  if (typeof disk.vdev !== 'string' || !VDEV.test(disk.vdev))
    bad('vdev must look like xvda or hda');
  if (typeof disk.target !== 'string' || !isAbsolute(disk.target) || disk.target.includes('\0')) {
    bad(`target ${JSON.stringify(disk.target)} must be an absolute path`);
  }
  if (!FORMATS.has(disk.format)) bad(`unsupported format ${JSON.stringify(disk.format)}`);
  if (disk.kind !== 'file' && disk.kind !== 'phy') bad(`unknown kind ${JSON.stringify(disk.kind)}`);
  if (!CLONE_NAME.test(options.cloneName)) {
    bad(`clone name ${JSON.stringify(options.cloneName)} is not usable in file or LV names`);
  }
  if (options.kind === 'offline' && options.originalState === 'running') {
    throw new StorageError(
      'STORAGE_NO_BACKEND',
      `disk ${disk.vdev}: an offline clone needs the original shut down, but it is running`,
    );
  }
}

/** Why a full copy may not run for this clone, or undefined if it may. */
function copyRefusal(options: PlanOptions): string | undefined {
  if (options.kind === 'online-disk') {
    return 'a full copy takes time proportional to the disk size, and an online disk-only clone pauses the original only for milliseconds; use a reflink-capable filesystem (XFS reflink=1, btrfs), LVM, or an offline or online-with-memory clone';
  }
  if (options.kind === 'offline' && options.originalState !== 'stopped') {
    return `an offline full copy needs the original shut down (it is ${options.originalState})`;
  }
  return undefined;
}

function overlayRefusal(options: PlanOptions): string | undefined {
  if (options.kind !== 'offline' || options.originalState !== 'stopped') {
    return 'a qcow2 overlay uses the original image as its backing file, which must never be written again; that holds only for an offline clone of a shut-down original';
  }
  return undefined;
}

async function planFile(disk: DiskSpec, options: PlanOptions): Promise<SnapshotPlan> {
  const source = normalize(disk.target);
  let srcDev: number;
  try {
    const st = await stat(source);
    if (!st.isFile()) {
      throw new StorageError(
        'STORAGE_INVALID_DISK',
        `disk ${disk.vdev}: ${source} is not a regular file (a block device needs kind phy)`,
      );
    }
    srcDev = st.dev;
  } catch (err) {
    if (err instanceof StorageError) throw err;
    throw new StorageError(
      'STORAGE_SOURCE_MISSING',
      `disk ${disk.vdev}: cannot stat ${source}: ${errnoOf(err) ?? String(err)}`,
      {
        cause: err,
      },
    );
  }
  const destDir = resolve(options.destDir ?? dirname(source));
  const choice = options.backend ?? 'auto';
  const common = { vdev: disk.vdev, source };
  const fileDest = join(destDir, `${options.cloneName}.${disk.vdev}${extname(source)}`);

  if (choice === 'lvm-thin' || choice === 'lvm-classic') {
    throw new StorageError(
      'STORAGE_NO_BACKEND',
      `disk ${disk.vdev}: ${choice} needs a phy disk on an LVM volume, ${source} is a file`,
    );
  }

  if (choice === 'qcow2-overlay') {
    const refusal = overlayRefusal(options);
    if (refusal !== undefined) {
      throw new StorageError('STORAGE_OVERLAY_UNSAFE', `disk ${disk.vdev}: ${refusal}`);
    }
    const dest = join(destDir, `${options.cloneName}.${disk.vdev}.qcow2`);
    await checkDestFree(dest, source, disk.vdev);
    return {
      ...common,
      backend: 'qcow2-overlay',
      dest,
      format: 'qcow2',
      backingFormat: disk.format,
      reason: 'qcow2 overlay requested; the original is shut down',
    };
  }

  await checkDestFree(fileDest, source, disk.vdev);
  if (disk.format === 'qcow2' && destDir !== dirname(source)) {
    await checkBackingResolves(source, disk.vdev, options.run ?? runCommand);
  }

  let reflinkWhy: string | undefined;
  if (choice === 'auto' || choice === 'reflink') {
    reflinkWhy = await reflinkRefusal(destDir, srcDev);
    if (reflinkWhy === undefined) {
      return {
        ...common,
        backend: 'reflink',
        dest: fileDest,
        format: disk.format,
        reason: `filesystem of ${destDir} supports reflink`,
      };
    }
    if (choice === 'reflink') {
      throw new StorageError('STORAGE_REFLINK_UNSUPPORTED', `disk ${disk.vdev}: ${reflinkWhy}`);
    }
  }

  const copyWhy = copyRefusal(options);
  if (copyWhy !== undefined) {
    const prefix = reflinkWhy === undefined ? '' : `no reflink (${reflinkWhy}), and `;
    throw new StorageError(
      'STORAGE_COPY_NEEDS_PAUSE',
      `disk ${disk.vdev} (${source}): ${prefix}no full copy: ${copyWhy}`,
    );
  }
  const bytes = (await stat(source)).size;
  return {
    ...common,
    backend: 'copy',
    dest: fileDest,
    format: disk.format,
    bytes,
    reason:
      choice === 'copy'
        ? 'full copy requested'
        : `full copy, because there is no reflink: ${reflinkWhy}`,
  };
}

async function reflinkRefusal(destDir: string, srcDev: number): Promise<string | undefined> {
  let destDev: number;
  try {
    destDev = (await stat(destDir)).dev;
  } catch (err) {
    throw new StorageError(
      'STORAGE_DEST_UNWRITABLE',
      `cannot use directory ${destDir}: ${errnoOf(err) ?? String(err)}`,
      {
        cause: err,
      },
    );
  }
  if (destDev !== srcDev) return `${destDir} is on another filesystem than the original image`;
  const probe = await probeReflink(destDir);
  if (!probe.supported) {
    return `the filesystem of ${destDir} does not support reflink (${probe.errno})`;
  }
  return undefined;
}

async function checkDestFree(dest: string, source: string, vdev: string): Promise<void> {
  if (resolve(dest) === resolve(source)) {
    throw new StorageError(
      'STORAGE_INVALID_DISK',
      `disk ${vdev}: the clone's image would be the original ${source}`,
    );
  }
  try {
    await stat(dest);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return;
    throw new StorageError('STORAGE_DEST_UNWRITABLE', `cannot check ${dest}: ${String(err)}`, {
      cause: err,
    });
  }
  throw new StorageError(
    'STORAGE_DEST_EXISTS',
    `disk ${vdev}: ${dest} already exists; not overwriting it`,
  );
}

/** A copied qcow2 keeps its backing-file name; a relative one only resolves from the same directory. */
async function checkBackingResolves(
  source: string,
  vdev: string,
  run: CommandRunner,
): Promise<void> {
  const info = await imageInfo(source, run);
  if (info.backingFilename !== undefined && !isAbsolute(info.backingFilename)) {
    throw new StorageError(
      'STORAGE_BACKING_RELATIVE',
      `disk ${vdev}: ${source} has the relative backing file ${JSON.stringify(info.backingFilename)}, which would not resolve from another directory; keep the clone's image beside the original`,
    );
  }
}

async function planPhy(disk: DiskSpec, options: PlanOptions): Promise<SnapshotPlan> {
  const run = options.run ?? runCommand;
  const choice = options.backend ?? 'auto';
  if (choice === 'reflink' || choice === 'copy' || choice === 'qcow2-overlay') {
    throw new StorageError(
      'STORAGE_NO_BACKEND',
      `disk ${disk.vdev}: ${choice} works on image files, ${disk.target} is a phy device`,
    );
  }
  const found = await lookupLv(disk.target, run);
  if (found.lv === undefined) {
    throw new StorageError(
      'STORAGE_NO_BACKEND',
      `disk ${disk.vdev}: ${disk.target} is not an LVM logical volume (${found.why}); phy disks can only be snapshotted with LVM`,
    );
  }
  const lv = found.lv;
  const name = `${options.cloneName}.${disk.vdev}`;
  const nameWhy = lvmNameProblem(name);
  if (nameWhy !== undefined) {
    throw new StorageError(
      'STORAGE_INVALID_DISK',
      `disk ${disk.vdev}: snapshot name ${JSON.stringify(name)}: ${nameWhy}`,
    );
  }
  const existing = await lookupLv(`${lv.vg}/${name}`, run);
  if (existing.lv !== undefined) {
    throw new StorageError(
      'STORAGE_DEST_EXISTS',
      `disk ${disk.vdev}: logical volume ${lv.vg}/${name} already exists`,
    );
  }
  const common = {
    vdev: disk.vdev,
    vg: lv.vg,
    lv: lv.name,
    source: disk.target,
    name,
    dest: `/dev/${lv.vg}/${name}`,
    format: disk.format,
  };
  const thin = isThinVolume(lv);
  if (choice === 'lvm-thin' || (choice === 'auto' && thin)) {
    if (!thin) {
      throw new StorageError(
        'STORAGE_NO_BACKEND',
        `disk ${disk.vdev}: ${lv.vg}/${lv.name} is not a thin volume (lv_attr ${lv.attr}); use lvm-classic`,
      );
    }
    return {
      ...common,
      backend: 'lvm-thin',
      reason: `${lv.vg}/${lv.name} is a thin volume in pool ${lv.pool}`,
    };
  }
  if (!thin && !canClassicSnapshot(lv)) {
    throw new StorageError(
      'STORAGE_NO_BACKEND',
      `disk ${disk.vdev}: ${lv.vg}/${lv.name} (lv_attr ${lv.attr}) cannot be snapshotted`,
    );
  }
  const size = options.lvmSnapshotSize ?? DEFAULT_CLASSIC_SIZE;
  sizeArgs(size);
  return {
    ...common,
    backend: 'lvm-classic',
    size,
    reason: thin
      ? 'classic snapshot of a thin volume requested'
      : `${lv.vg}/${lv.name} is a regular volume: classic snapshot`,
  };
}

/**
 * Makes the snapshot a plan describes. For reflink and LVM this is the only
 * step that runs inside the original's pause, so it does nothing else.
 */
export async function execute(
  plan: SnapshotPlan,
  ctx: ExecuteContext = {},
): Promise<SnapshotRecord> {
  const started = process.hrtime.bigint();
  const run = ctx.run ?? runCommand;
  switch (plan.backend) {
    case 'reflink':
      await reflinkFile(plan.source, plan.dest);
      break;
    case 'copy': {
      if (ctx.originalState !== 'stopped' && ctx.originalState !== 'paused') {
        throw new StorageError(
          'STORAGE_COPY_NEEDS_PAUSE',
          `disk ${plan.vdev}: refusing to copy ${plan.source} while the original is ${ctx.originalState ?? 'in an unknown state'}; pause or stop it first`,
        );
      }
      const onProgress = ctx.onProgress;
      await sparseCopy(plan.source, plan.dest, {
        onProgress: onProgress && ((p) => onProgress({ ...p, vdev: plan.vdev })),
        signal: ctx.signal,
      });
      break;
    }
    case 'qcow2-overlay': {
      if (ctx.originalState !== undefined && ctx.originalState !== 'stopped') {
        throw new StorageError(
          'STORAGE_OVERLAY_UNSAFE',
          `disk ${plan.vdev}: the original is ${ctx.originalState}; an overlay on its image needs it shut down`,
        );
      }
      // qemu-img create truncates an existing file: claim the name exclusively first.
      try {
        await writeFile(plan.dest, '', { flag: 'wx', mode: 0o600 });
      } catch (err) {
        const code = errnoOf(err) === 'EEXIST' ? 'STORAGE_DEST_EXISTS' : 'STORAGE_DEST_UNWRITABLE';
        throw new StorageError(code, `cannot create ${plan.dest}: ${String(err)}`, { cause: err });
      }
      try {
        await createOverlay(plan.source, plan.backingFormat, plan.dest, run);
      } catch (err) {
        await unlink(plan.dest).catch(() => {});
        throw err;
      }
      break;
    }
    case 'lvm-thin':
      await createLvmSnapshot(thinSnapshotArgv(plan.vg, plan.lv, plan.name), run);
      break;
    case 'lvm-classic':
      await createLvmSnapshot(classicSnapshotArgv(plan.vg, plan.lv, plan.name, plan.size), run);
      break;
  }
  const tookMs = Number(process.hrtime.bigint() - started) / 1e6;
  return { ...plan, createdAt: new Date().toISOString(), tookMs };
}

/**
 * Executes the plans of all of a VM's disks at once. All or nothing: if one
 * fails, the snapshots already made are removed before the error is thrown.
 */
export async function executeAll(
  plans: readonly SnapshotPlan[],
  ctx: ExecuteContext = {},
): Promise<SnapshotRecord[]> {
  const results = await Promise.allSettled(plans.map((p) => execute(p, ctx)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed === undefined) {
    return results.map((r) => (r as PromiseFulfilledResult<SnapshotRecord>).value);
  }
  for (const r of results) {
    if (r.status === 'fulfilled') await remove(r.value, ctx).catch(() => {});
  }
  throw failed.reason;
}

/**
 * Deletes a snapshot made from `snapshot` (a record, or the plan the journal
 * wrote before execute ran). Idempotent: returns false when there was nothing
 * left to delete. Never touches the original.
 */
export async function remove(
  snapshot: SnapshotPlan | SnapshotRecord,
  ctx: { readonly run?: CommandRunner } = {},
): Promise<boolean> {
  if (snapshot.backend === 'lvm-thin' || snapshot.backend === 'lvm-classic') {
    if (snapshot.name === snapshot.lv) {
      throw new StorageError(
        'STORAGE_BAD_RECORD',
        `snapshot record names the original ${snapshot.vg}/${snapshot.lv} itself`,
      );
    }
    return removeLvmSnapshot(snapshot.vg, snapshot.name, snapshot.lv, ctx.run ?? runCommand);
  }
  if (resolve(snapshot.dest) === resolve(snapshot.source)) {
    throw new StorageError(
      'STORAGE_BAD_RECORD',
      `snapshot record names the original ${snapshot.source} as its copy`,
    );
  }
  try {
    await unlink(snapshot.dest);
    return true;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw new StorageError('STORAGE_IO', `cannot remove ${snapshot.dest}: ${String(err)}`, {
      cause: err,
    });
  }
}
