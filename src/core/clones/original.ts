/**
 * What the lifecycle learns about the original before it acts: its xl config
 * file, the bridges its vifs use (never the isolation bridge), whether Remus
 * replicates it, and how each of its disks will be snapshotted.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { XlConfig } from '../../xen/index.js';
import type { ZyncloneConfig } from '../config/schema.js';
import type { VmName, ZynclonePaths } from '../paths.js';
import { type SnapshotPlan, type DiskSpec as StorageDisk, planSnapshot } from '../storage/index.js';
import { CloneError } from './errors.js';
import { classifyDisks, originalVifsOf, parseOriginalConfig } from './plan.js';

/** The original's xl config file: explicit, or the usual places under the root. */
export function findOriginalConfig(paths: ZynclonePaths, vm: VmName, explicit?: string): string {
  if (explicit !== undefined) {
    if (!existsSync(explicit)) {
      throw new CloneError('CLONE_CONFIG', `xl config file ${explicit} of ${vm} does not exist`);
    }
    return explicit;
  }
  const etc = paths.resolve('/etc/xen');
  const candidates = [join(etc, `${vm}.cfg`), join(etc, vm), join(etc, 'auto', `${vm}.cfg`)];
  const found = candidates.find((f) => existsSync(f) && statSync(f).isFile());
  if (found === undefined) {
    throw new CloneError(
      'CLONE_CONFIG',
      `no xl config file for VM ${vm} (looked for ${candidates.join(', ')}); pass --config FILE`,
    );
  }
  return found;
}

/** The bridges the vifs of `vm` use, from its xl config; none when it has no readable config. */
export function productionBridgesOf(paths: ZynclonePaths, vm: VmName): string[] {
  let file: string;
  try {
    file = findOriginalConfig(paths, vm);
  } catch {
    return [];
  }
  const cfg = parseOriginalConfig(readFileSync(file, 'utf8'), file);
  return [...new Set(originalVifsOf(cfg, { all: true }).map((v) => v.bridge))];
}

/** Remus runs as `xl remus <vm> <host>`: look for such a process. */
export function remusProbe(vm: string): string | undefined {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = argv.findIndex((a, j) => a === 'remus' && j > 0 && /(^|\/)xl$/.test(argv[j - 1]!));
    if (i > 0 && argv.slice(i + 1).includes(vm)) {
      return `xl remus (pid ${pid}) replicates it`;
    }
  }
  return undefined;
}

/**
 * The snapshot plan of every disk of `original` that the clone gets its own
 * copy of: all slow probing (backends, free space) happens here, before any
 * pause of the original.
 */
export async function planDiskSnapshots(
  original: XlConfig,
  cfg: ZyncloneConfig,
  ctx: Omit<Parameters<typeof planSnapshot>[1], 'destDir'> & { readonly destDir: string },
): Promise<SnapshotPlan[]> {
  mkdirSync(ctx.destDir, { recursive: true });
  const plans: SnapshotPlan[] = [];
  for (const d of classifyDisks(original, cfg).filter((c) => c.action === 'snapshot')) {
    const target = d.spec.target!;
    let isBlock = false;
    try {
      isBlock = statSync(target).isBlockDevice();
    } catch {
      // planSnapshot reports a missing source.
    }
    const disk: StorageDisk = {
      target,
      format: (d.spec.format ?? 'raw') as StorageDisk['format'],
      vdev: d.spec.vdev!,
      kind: isBlock ? 'phy' : 'file',
    };
    plans.push(await planSnapshot(disk, ctx));
  }
  return plans;
}
