/**
 * `vmclone upgrade`: brings what an older ZynClone left on a host to the
 * versions this one reads, after a backup of all of it.
 *
 * Three things carry a version: the state database (PRAGMA user_version), the
 * configuration files (`$version`, absent = 1) and the XenStore tree
 * (/tool/zynclone/layout-version, absent = 1). A fourth, older layout has no
 * version at all: per-VM key=value files in /etc/xen/clone/guest written by
 * hand, without base.json (or beside the packaged one that sets nothing); it
 * is imported into base.json plus overrides.
 *
 * Order: inspect everything and refuse if anything is newer than this release
 * knows (nothing changed); then back up; then migrate. Running it again finds
 * nothing to do and writes nothing, not even a backup.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { XsOps } from '../../xenstore/index.js';
import {
  CONFIG_FORMAT_VERSION,
  GENERATED_MARK,
  readBaseConfig,
  writeFileAtomic,
} from '../config/index.js';
import { type ZynclonePaths, vmNameProblem } from '../paths.js';
import { SCHEMA_VERSION, copyDatabase, openStateStore, readSchemaVersion } from '../state/index.js';
import { UpgradeError } from './errors.js';
import { type LegacyImport, planLegacyImport, writeLegacyImport } from './legacy-guest.js';

export {
  ZC_ROOT as ZC_TREE,
  LAYOUT_VERSION_NODE as LAYOUT_VERSION_PATH,
} from '../xenstore/layout.js';
import {
  LAYOUT_VERSION_NODE as LAYOUT_VERSION_PATH,
  ZC_ROOT as ZC_TREE,
} from '../xenstore/layout.js';
/** Version of the XenStore layout of docs/xenstore-contract.md. */
export const XENSTORE_LAYOUT_VERSION = 1;

export type Part = 'state' | 'config' | 'legacy-guest' | 'xenstore';

export interface PartStatus {
  readonly part: Part;
  /** What was found, in words: a file, a version, absent, skipped and why. */
  readonly found: string;
  /** The version found; null when there is nothing of this part. */
  readonly from: number | null;
  readonly to: number;
  /** Whether this part needs (dry run) or got a migration. */
  readonly migrate: boolean;
}

export interface UpgradeReport {
  readonly dryRun: boolean;
  readonly parts: readonly PartStatus[];
  /** Where the backup went; absent when nothing needed a change, or on a dry run. */
  readonly backupDir?: string;
}

export interface UpgradeContext {
  readonly paths: ZynclonePaths;
  /** XenStore, or undefined when none is reachable (then that part is skipped). */
  readonly xs?: XsOps;
  /** Why XenStore is not reachable, for the report. */
  readonly xsProblem?: string;
  readonly now?: () => Date;
}

function tooNew(what: string, found: number, known: number): UpgradeError {
  return new UpgradeError(
    'UPGRADE_TOO_NEW',
    `${what} has version ${found}, but this ZynClone knows up to ${known}: it was written by a newer release; install that release again (a downgrade is not supported)`,
  );
}

function inspectState(paths: ZynclonePaths): PartStatus {
  const file = paths.stateDb;
  if (!existsSync(file)) {
    return {
      part: 'state',
      found: `${file}: absent`,
      from: null,
      to: SCHEMA_VERSION,
      migrate: false,
    };
  }
  const from = readSchemaVersion(file);
  if (from > SCHEMA_VERSION) throw tooNew(`state database ${file}`, from, SCHEMA_VERSION);
  return { part: 'state', found: file, from, to: SCHEMA_VERSION, migrate: from < SCHEMA_VERSION };
}

function configVersionOf(file: string): number | null {
  if (!existsSync(file)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UpgradeError(
      'UPGRADE_FAILED',
      `${file} is not valid JSON: ${(err as Error).message}`,
    );
  }
  const v = (raw as { $version?: unknown } | null)?.$version;
  if (v === undefined) return 1;
  if (!Number.isSafeInteger(v) || (v as number) < 1) {
    throw new UpgradeError(
      'UPGRADE_FAILED',
      `${file}: "$version" must be an integer from 1, got ${JSON.stringify(v)}`,
    );
  }
  return v as number;
}

function inspectConfig(paths: ZynclonePaths): PartStatus {
  const files = [paths.baseConfigFile, ...jsonFiles(paths.overrideDir)];
  let oldest: number | null = null;
  for (const file of files) {
    const v = configVersionOf(file);
    if (v === null) continue;
    if (v > CONFIG_FORMAT_VERSION) throw tooNew(file, v, CONFIG_FORMAT_VERSION);
    oldest = oldest === null ? v : Math.min(oldest, v);
  }
  // Format 1 is the first; a format 2 adds its conversion here.
  return {
    part: 'config',
    found: oldest === null ? `${paths.configDir}: no configuration files` : paths.configDir,
    from: oldest,
    to: CONFIG_FORMAT_VERSION,
    migrate: false,
  };
}

function jsonFiles(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((n) => n.endsWith('.json') && vmNameProblem(n.slice(0, -5)) === undefined)
      .map((n) => join(dir, n));
  } catch {
    return [];
  }
}

/**
 * guest/<vm>.cfg files ZynClone did not generate: the legacy layout. It is
 * imported when base.json sets nothing yet (absent, or as the package installs
 * it, comments only); next to a base.json with settings it is refused, since
 * which of the two should win is the administrator's call.
 */
export function legacyGuestFiles(paths: ZynclonePaths): string[] {
  let names: string[];
  try {
    names = readdirSync(paths.guestDir);
  } catch {
    return [];
  }
  const files = names
    .filter((n) => n.endsWith('.cfg') && vmNameProblem(n.slice(0, -4)) === undefined)
    .map((n) => join(paths.guestDir, n))
    .filter((file) => !readFileSync(file, 'utf8').startsWith(GENERATED_MARK))
    .sort();
  if (files.length > 0 && Object.keys(readBaseConfig(paths)).length > 0) {
    throw new UpgradeError(
      'UPGRADE_LEGACY_INVALID',
      `${paths.guestDir} holds hand-written files (${files.map((f) => basename(f)).join(', ')}) while ${paths.baseConfigFile} has settings of its own; move their settings into base.json or override/<vm>.json by hand and delete them, then run vmclone upgrade again`,
    );
  }
  return files;
}

async function inspectXenstore(ctx: UpgradeContext): Promise<PartStatus> {
  const to = XENSTORE_LAYOUT_VERSION;
  if (ctx.xs === undefined) {
    return {
      part: 'xenstore',
      found: `skipped: ${ctx.xsProblem ?? 'not reachable'}`,
      from: null,
      to,
      migrate: false,
    };
  }
  if ((await ctx.xs.tryRead(ZC_TREE)) === undefined) {
    return { part: 'xenstore', found: `${ZC_TREE}: absent`, from: null, to, migrate: false };
  }
  const text = await ctx.xs.tryRead(LAYOUT_VERSION_PATH);
  const from = text === undefined ? null : Number(text);
  if (from !== null && (!Number.isSafeInteger(from) || from < 1)) {
    throw new UpgradeError(
      'UPGRADE_FAILED',
      `${LAYOUT_VERSION_PATH} holds ${JSON.stringify(text)}, not a version`,
    );
  }
  if (from !== null && from > to) throw tooNew(`XenStore tree ${ZC_TREE}`, from, to);
  // A tree without the node is the first layout; writing the node makes it explicit.
  return {
    part: 'xenstore',
    found: ZC_TREE,
    from: from ?? 1,
    to,
    migrate: from === null || from < to,
  };
}

async function dumpTree(xs: XsOps, path: string, out: Record<string, string>): Promise<void> {
  const value = await xs.tryRead(path);
  if (value === undefined) return;
  out[path] = value;
  for (const child of await xs.directory(path)) await dumpTree(xs, `${path}/${child}`, out);
}

/** Inspects, and unless `dryRun`, backs up and migrates. Throws UpgradeError before changing anything. */
export async function upgrade(
  ctx: UpgradeContext,
  options: { dryRun: boolean },
): Promise<UpgradeReport> {
  const legacy = legacyGuestFiles(ctx.paths);
  let legacyPlan: LegacyImport | undefined;
  if (legacy.length > 0) legacyPlan = planLegacyImport(ctx.paths, legacy);
  const parts: PartStatus[] = [
    inspectState(ctx.paths),
    inspectConfig(ctx.paths),
    {
      part: 'legacy-guest',
      found:
        legacy.length === 0
          ? 'none'
          : `${legacy.length} hand-written guest file(s) without base.json: ${legacyPlan!.vms.join(', ')}`,
      from: legacy.length === 0 ? null : 0,
      to: CONFIG_FORMAT_VERSION,
      migrate: legacy.length > 0,
    },
    await inspectXenstore(ctx),
  ];
  const pending = parts.filter((p) => p.migrate);
  if (options.dryRun || pending.length === 0) return { dryRun: options.dryRun, parts };

  const stamp = (ctx.now?.() ?? new Date()).toISOString().replace(/[:.]/g, '-');
  const backupDir = join(ctx.paths.stateDir, 'backups', stamp);
  mkdirSync(backupDir, { recursive: true, mode: 0o700 });
  if (existsSync(ctx.paths.stateDb)) copyDatabase(ctx.paths.stateDb, join(backupDir, 'state.db'));
  if (existsSync(ctx.paths.configDir))
    cpSync(ctx.paths.configDir, join(backupDir, 'config'), { recursive: true });
  if (ctx.xs !== undefined) {
    const tree: Record<string, string> = {};
    await dumpTree(ctx.xs, ZC_TREE, tree);
    writeFileAtomic(join(backupDir, 'xenstore.json'), `${JSON.stringify(tree, null, 2)}\n`, 0o600);
  }

  for (const p of pending) {
    if (p.part === 'state') openStateStore({ paths: ctx.paths }).close();
    if (p.part === 'legacy-guest') writeLegacyImport(ctx.paths, legacyPlan!);
    if (p.part === 'xenstore')
      await ctx.xs!.write(LAYOUT_VERSION_PATH, String(XENSTORE_LAYOUT_VERSION));
  }
  return { dryRun: false, parts, backupDir };
}
