// Root-only and end-to-end tests need what a developer's machine may lack
// (root, network namespaces, nftables, loop devices, qemu, Debian's xenstore
// tools). Locally a missing prerequisite skips them. Under CI (CI=true) it is
// an error: the file fails, so CI can never pass by skipping them.

export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

export class MissingPrerequisiteError extends Error {
  constructor(what: string) {
    super(
      `test prerequisite missing: ${what}. Under CI the root and e2e tests must run, not skip: ` +
        'run as root after `make setup` (scripts/debian-packages.txt).',
    );
    this.name = 'MissingPrerequisiteError';
  }
}

/**
 * Whether tests that need `what` are to be skipped: false when it is
 * available; true when it is not (locally); throws under CI.
 */
export function skipWithout(available: boolean, what: string, ci = IN_CI): boolean {
  if (available) return false;
  if (ci) throw new MissingPrerequisiteError(what);
  return true;
}

/** The same for helpers that say why something is unavailable (undefined: available). */
export function skipIfUnavailable(why: string | undefined, ci = IN_CI): boolean {
  return skipWithout(why === undefined, why ?? '', ci);
}
