/**
 * Every file ZynClone touches hangs off one root (env ZYNCLONE_ROOT, default
 * `/`), so tests and the simulator run whole in a temporary directory.
 */
import { isAbsolute, join, normalize } from 'node:path';
import { ZynCloneError } from '../errors/index.js';

export const ROOT_ENV = 'ZYNCLONE_ROOT';

/** Longest VM name we accept; leaves room for a clone suffix under xl's limits. */
export const MAX_VM_NAME = 64;
/**
 * A deliberately narrow subset of what xl accepts as a domain name: names end
 * up in file names, XenStore paths, nftables comments and shell-free argv, so
 * only letters, digits, `.`, `_` and `-`, starting with a letter or digit.
 */
export const VM_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export class PathError extends ZynCloneError<'ROOT_INVALID' | 'VM_NAME_INVALID'> {}

/** Why `name` is not a usable VM (domain) name, or undefined if it is. */
export function vmNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'not a string';
  if (name.length === 0) return 'empty';
  if (name.length > MAX_VM_NAME) return `longer than ${MAX_VM_NAME} characters`;
  if (!VM_NAME_PATTERN.test(name)) {
    return 'only letters, digits, ".", "_" and "-" are allowed, starting with a letter or digit';
  }
  // xl takes an all-digit argument as a domid, so such a name could never be addressed.
  if (/^[0-9]+$/.test(name)) return 'an all-digit name would be read by xl as a domain id';
  return undefined;
}

/**
 * A VM name that passed validateVmName: parse a name once where it enters
 * (command line, guest request, file), and pass this type on, so nothing
 * deeper needs to check it again.
 */
export type VmName = string & { readonly __brand: 'VmName' };

/** Returns `name` as a VmName if it is valid; throws PathError VM_NAME_INVALID otherwise. */
export function validateVmName(name: unknown): VmName {
  const problem = vmNameProblem(name);
  if (problem !== undefined) {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 80)) : String(name);
    throw new PathError('VM_NAME_INVALID', `invalid VM name ${shown}: ${problem}`);
  }
  return name as VmName;
}

/** `name` as a VmName, or undefined if it is not one (for listings that skip what is not a VM). */
export function asVmName(name: unknown): VmName | undefined {
  return vmNameProblem(name) === undefined ? (name as VmName) : undefined;
}

/** The root prefix from `env` (ZYNCLONE_ROOT); must be absolute. */
export function zyncloneRoot(env: NodeJS.ProcessEnv = process.env): string {
  const raw = env[ROOT_ENV];
  if (raw === undefined || raw === '') return '/';
  if (!isAbsolute(raw) || raw.includes('\0')) {
    throw new PathError(
      'ROOT_INVALID',
      `${ROOT_ENV} must be an absolute path, got ${JSON.stringify(raw)}`,
    );
  }
  return normalize(raw);
}

/** `absPath` (as written for a real host, e.g. `/var/lib/x`) placed under `root`. */
export function underRoot(root: string, absPath: string): string {
  if (!isAbsolute(absPath)) {
    throw new PathError(
      'ROOT_INVALID',
      `expected an absolute path, got ${JSON.stringify(absPath)}`,
    );
  }
  if (absPath.split('/').includes('..')) {
    throw new PathError('ROOT_INVALID', `path must not contain "..": ${JSON.stringify(absPath)}`);
  }
  return join(root, absPath);
}

export interface ZynclonePaths {
  readonly root: string;
  /** <root>/etc/xen/clone */
  readonly configDir: string;
  /** <root>/etc/xen/clone/base.json: defaults for every VM */
  readonly baseConfigFile: string;
  /** <root>/etc/xen/clone/override */
  readonly overrideDir: string;
  /** <root>/etc/xen/clone/override/<vm>.json: one VM's changes to base.json */
  overrideFile(vm: VmName): string;
  /** <root>/etc/xen/clone/guest */
  readonly guestDir: string;
  /** <root>/etc/xen/clone/guest/<vm>.cfg: generated effective config */
  guestCfgFile(vm: VmName): string;
  /** where a VM's own xl config file usually is: <root>/etc/xen/<vm>.cfg, <vm>, auto/<vm>.cfg */
  xlConfigCandidates(vm: VmName): string[];
  /** <root>/var/lib/zynclone */
  readonly stateDir: string;
  /** <root>/var/lib/zynclone/state.db */
  readonly stateDb: string;
  /** <root>/run/zynclone: runtime files (sockets, pid files) */
  readonly runDir: string;
  /** a host path such as `/var/lib/zynclone/volumes` taken from config, under the root */
  resolve(absPath: string): string;
}

/** All paths under `root` (default: from ZYNCLONE_ROOT). */
export function zynclonePaths(root: string = zyncloneRoot()): ZynclonePaths {
  if (!isAbsolute(root)) {
    throw new PathError(
      'ROOT_INVALID',
      `root must be an absolute path, got ${JSON.stringify(root)}`,
    );
  }
  const r = normalize(root);
  const configDir = join(r, 'etc/xen/clone');
  const overrideDir = join(configDir, 'override');
  const guestDir = join(configDir, 'guest');
  const stateDir = join(r, 'var/lib/zynclone');
  return Object.freeze({
    root: r,
    configDir,
    baseConfigFile: join(configDir, 'base.json'),
    overrideDir,
    overrideFile: (vm: VmName) => join(overrideDir, `${vm}.json`),
    guestDir,
    guestCfgFile: (vm: VmName) => join(guestDir, `${vm}.cfg`),
    xlConfigCandidates: (vm: VmName) => {
      const etc = join(r, 'etc/xen');
      return [join(etc, `${vm}.cfg`), join(etc, vm), join(etc, 'auto', `${vm}.cfg`)];
    },
    stateDir,
    stateDb: join(stateDir, 'state.db'),
    runDir: join(r, 'run/zynclone'),
    resolve: (absPath: string) => underRoot(r, absPath),
  });
}
