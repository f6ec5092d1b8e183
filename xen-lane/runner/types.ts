/**
 * Shapes shared by the in-dom0 runner, the host harness and the scenarios.
 * A scenario is one file in xen-lane/scenarios/ with a default export of
 * this type; the bundle step discovers the files, so adding one needs no
 * list to be edited.
 */

/** Which XenStore daemon dom0 runs for a boot. */
export type XenstoredKind = 'xenstored' | 'oxenstored';

export const ALL_XENSTOREDS: readonly XenstoredKind[] = ['xenstored', 'oxenstored'];

export interface ScenarioContext {
  /** The XenStore daemon of this boot. */
  readonly xenstored: XenstoredKind;
  /** A fresh directory in dom0's tmpfs, private to this scenario run. */
  readonly workDir: string;
  /** Aborted when the scenario's time is up; long waits should observe it. */
  readonly signal: AbortSignal;
  log(message: string): void;
  /** A fact worth showing in the result table (e.g. which snapshot backend ran). */
  note(key: string, value: string | number | boolean): void;
}

export interface Scenario {
  /** Stable identifier, used in markers, the table and ZC_XEN_ONLY. */
  readonly name: string;
  readonly title: string;
  /** Whole-scenario budget inside dom0; the host adds a grace period. */
  readonly timeoutMs: number;
  /** Boots this scenario runs in; defaults to the C xenstored only. */
  readonly xenstoreds?: readonly XenstoredKind[];
  /** Left out of a run of all scenarios (too long for every run); runs when named. */
  readonly onlyWhenNamed?: boolean;
  /** dom0's memory this scenario needs, if more than the lane's default (half of it is dom0's root). */
  readonly dom0MemMiB?: number;
  run(ctx: ScenarioContext): Promise<void>;
}

export interface ScenarioResult {
  scenario: string;
  xenstored: XenstoredKind;
  ok: boolean;
  ms: number;
  error?: string;
  notes?: Record<string, string | number | boolean>;
}

export function scenarioXenstoreds(s: Scenario): readonly XenstoredKind[] {
  return s.xenstoreds ?? ['xenstored'];
}

/** Whether a run asked for `only` these scenarios (or for all of them) runs `s`. */
export function isSelected(s: Scenario, only: readonly string[] | undefined): boolean {
  return only ? only.includes(s.name) : !s.onlyWhenNamed;
}
