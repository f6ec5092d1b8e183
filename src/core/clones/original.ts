/**
 * The original VM's xl config file, and what the isolation bridge must never
 * be: a bridge its vifs use on the production network.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ZynclonePaths } from '../paths.js';
import { CloneError } from './errors.js';
import { originalVifsOf, parseOriginalConfig } from './plan.js';

/** The original's xl config file: explicit, or the usual places under the root. */
export function findOriginalConfig(paths: ZynclonePaths, vm: string, explicit?: string): string {
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
export function productionBridgesOf(paths: ZynclonePaths, vm: string): string[] {
  let file: string;
  try {
    file = findOriginalConfig(paths, vm);
  } catch {
    return [];
  }
  const cfg = parseOriginalConfig(readFileSync(file, 'utf8'), file);
  return [...new Set(originalVifsOf(cfg, { all: true }).map((v) => v.bridge))];
}
