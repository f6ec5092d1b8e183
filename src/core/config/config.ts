import { readFileSync, readdirSync, rmSync } from 'node:fs';
import {
  type VmName,
  type ZynclonePaths,
  asVmName,
  vmNameProblem,
  zynclonePaths,
} from '../paths.js';
import { commitStaged, discardStaged, stageFile } from './atomic-write.js';
import { ConfigError, type ConfigIssue, showValue } from './errors.js';
import { formatGuestCfg, parseGuestCfg } from './guest-cfg.js';
import {
  CONFIG_KEYS,
  CONFIG_SCHEMA,
  type ConfigKey,
  type ZyncloneConfig,
  checkValue,
  defaultConfig,
  isConfigKey,
  parseValueText,
  unknownKeyMessage,
  validateConfigObject,
} from './schema.js';
/**
 * base.json + override/<vm>.json -> effective config -> guest/<vm>.cfg.
 *
 * File operations are synchronous: the files are small, and the CLI and the
 * daemons read them at well-defined moments, never on a hot path.
 */
import { parseJsonStrict } from './strict-json.js';

/** Largest config file we read; real ones are a few hundred bytes. */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

export type ConfigOrigin = 'default' | 'base' | 'override';

export interface EffectiveConfig {
  readonly vm: VmName;
  readonly values: ZyncloneConfig;
  /** Where each value came from. */
  readonly origins: { readonly [K in ConfigKey]: ConfigOrigin };
  readonly baseFile: string;
  readonly baseExists: boolean;
  readonly overrideFile: string;
  readonly overrideExists: boolean;
  readonly guestCfgFile: string;
}

interface RawFile {
  exists: boolean;
  /** The parsed object, keys in file order (meta keys such as $schema included). */
  raw: Record<string, unknown>;
}

function readJsonObject(file: string): RawFile {
  let text: string;
  try {
    const buf = readFileSync(file);
    if (buf.length > MAX_CONFIG_FILE_BYTES) {
      throw new ConfigError('CONFIG_PARSE', [
        { file, message: `larger than ${MAX_CONFIG_FILE_BYTES} bytes` },
      ]);
    }
    text = buf.toString('utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { exists: false, raw: {} };
    throw new ConfigError(
      'CONFIG_IO',
      [{ file, message: `cannot read: ${(err as Error).message}` }],
      { cause: err },
    );
  }
  const parsed = parseJsonStrict(text, file);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError('CONFIG_INVALID', [
      { file, message: `expected a JSON object of configuration keys, got ${showValue(parsed)}` },
    ]);
  }
  return { exists: true, raw: parsed as Record<string, unknown> };
}

/** Validates a file's object; throws ConfigError with every issue. */
function validated(raw: Record<string, unknown>, file: string): Partial<ZyncloneConfig> {
  const { values, issues } = validateConfigObject(raw, file);
  if (issues.length > 0) throw new ConfigError('CONFIG_INVALID', issues);
  return values;
}

/** The clone's domain name for `vm` under `pattern` (key clone_name_pattern). */
export function cloneNameFor(vm: VmName, pattern: string): string {
  const name = pattern.split('{vm}').join(vm);
  const problem = vmNameProblem(name);
  if (problem !== undefined || name === vm) {
    throw new ConfigError('CONFIG_INVALID', [
      {
        file: '<effective config>',
        key: 'clone_name_pattern',
        value: showValue(pattern),
        message: `gives clone name ${showValue(name)} for VM ${vm}: ${problem ?? 'same as the VM itself'}`,
      },
    ]);
  }
  return name;
}

const HOST_WIDE_WHY: Partial<Record<ConfigKey, string>> = {
  clone_vif_prefix:
    ": the network domain's standing drop rule matches one prefix for every VM, so a per-VM value would escape it",
};

function combine(
  vm: VmName,
  paths: ZynclonePaths,
  base: RawFile,
  override: RawFile,
): EffectiveConfig {
  const baseFile = paths.baseConfigFile;
  const overrideFile = paths.overrideFile(vm);
  const issues: ConfigIssue[] = [];
  const collect = (raw: Record<string, unknown>, file: string): Partial<ZyncloneConfig> => {
    const r = validateConfigObject(raw, file);
    issues.push(...r.issues);
    return r.values;
  };
  const baseValues = collect(base.raw, baseFile);
  const overrideValues = collect(override.raw, overrideFile);
  for (const key of CONFIG_KEYS) {
    if (CONFIG_SCHEMA[key].hostWide && overrideValues[key] !== undefined) {
      issues.push({
        file: overrideFile,
        key,
        value: showValue(overrideValues[key]),
        message: `is host-wide and can only be set in ${baseFile}${HOST_WIDE_WHY[key] ?? ''}`,
      });
    }
  }
  if (issues.length > 0) throw new ConfigError('CONFIG_INVALID', issues);

  const values = defaultConfig() as unknown as Record<string, unknown>;
  const origins = {} as Record<ConfigKey, ConfigOrigin>;
  for (const key of CONFIG_KEYS) {
    origins[key] = 'default';
    if (baseValues[key] !== undefined) {
      values[key] = baseValues[key];
      origins[key] = 'base';
    }
    if (overrideValues[key] !== undefined) {
      values[key] = overrideValues[key];
      origins[key] = 'override';
    }
  }
  const config = values as unknown as ZyncloneConfig;
  try {
    cloneNameFor(vm, config.clone_name_pattern);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const origin = origins.clone_name_pattern;
    const file = origin === 'override' ? overrideFile : origin === 'base' ? baseFile : '<default>';
    throw new ConfigError(
      'CONFIG_INVALID',
      err.issues.map((i) => ({ ...i, file })),
    );
  }
  return {
    vm,
    values: config,
    origins,
    baseFile,
    baseExists: base.exists,
    overrideFile,
    overrideExists: override.exists,
    guestCfgFile: paths.guestCfgFile(vm),
  };
}

/**
 * The configuration of `vm`: defaults, then base.json, then override/<vm>.json.
 * Either file may be absent. Throws ConfigError naming every bad key.
 */
export function effectiveConfig(
  vm: VmName,
  paths: ZynclonePaths = zynclonePaths(),
): EffectiveConfig {
  return combine(
    vm,
    paths,
    readJsonObject(paths.baseConfigFile),
    readJsonObject(paths.overrideFile(vm)),
  );
}

/** base.json alone, validated (absent file: empty). */
export function readBaseConfig(paths: ZynclonePaths = zynclonePaths()): Partial<ZyncloneConfig> {
  return validated(readJsonObject(paths.baseConfigFile).raw, paths.baseConfigFile);
}

function guestCfgText(eff: EffectiveConfig): string {
  return formatGuestCfg(
    {
      vm: eff.vm,
      sources: [
        { file: eff.baseFile, exists: eff.baseExists },
        { file: eff.overrideFile, exists: eff.overrideExists },
      ],
      overridden: CONFIG_KEYS.filter((k) => eff.origins[k] === 'override'),
    },
    eff.values,
  );
}

function ioError(file: string, err: unknown): ConfigError {
  return new ConfigError(
    'CONFIG_IO',
    [{ file, message: `cannot write: ${(err as Error).message}` }],
    { cause: err },
  );
}

/**
 * Writes each file atomically (text null: removes it), staging all before
 * renaming any, so a bad write is caught while every file is still intact.
 */
function writeAll(files: readonly { file: string; text: string | null }[]): void {
  const staged: ReturnType<typeof stageFile>[] = [];
  try {
    for (const f of files) {
      if (f.text === null) continue;
      try {
        staged.push(stageFile(f.file, f.text));
      } catch (err) {
        throw ioError(f.file, err);
      }
    }
    // Nothing was renamed yet: up to here, a failure leaves every file as it was.
    while (staged.length > 0) {
      const s = staged[0]!;
      try {
        commitStaged(s);
      } catch (err) {
        throw ioError(s.file, err);
      }
      staged.shift();
    }
    for (const f of files) {
      if (f.text !== null) continue;
      try {
        rmSync(f.file, { force: true });
      } catch (err) {
        throw ioError(f.file, err);
      }
    }
  } finally {
    for (const s of staged) discardStaged(s);
  }
}

/** (Re)generates guest/<vm>.cfg from the current files. */
export function writeGuestCfg(vm: VmName, paths: ZynclonePaths = zynclonePaths()): EffectiveConfig {
  const eff = effectiveConfig(vm, paths);
  writeAll([{ file: eff.guestCfgFile, text: guestCfgText(eff) }]);
  return eff;
}

function editOverride(
  vm: VmName,
  paths: ZynclonePaths,
  edit: (raw: Record<string, unknown>, file: string) => void,
): EffectiveConfig {
  const overrideFile = paths.overrideFile(vm);
  const base = readJsonObject(paths.baseConfigFile);
  const current = readJsonObject(overrideFile);
  const next = { ...current.raw };
  edit(next, overrideFile);
  const remaining = Object.keys(next).length;
  const eff = combine(vm, paths, base, { exists: remaining > 0, raw: next });
  writeAll([
    { file: overrideFile, text: remaining > 0 ? `${JSON.stringify(next, null, 2)}\n` : null },
    { file: eff.guestCfgFile, text: guestCfgText(eff) },
  ]);
  return eff;
}

/**
 * Sets `key` for `vm` in its override file. A string `value` is read as typed
 * on a command line (see parseValueText); other values are taken as JSON.
 * The whole resulting configuration is validated before anything is written;
 * then the override and guest/<vm>.cfg are replaced atomically.
 */
export function setOverride(
  vm: VmName,
  key: string,
  value: unknown,
  paths: ZynclonePaths = zynclonePaths(),
): EffectiveConfig {
  return editOverride(vm, paths, (raw, file) => {
    if (!isConfigKey(key)) {
      throw new ConfigError('CONFIG_INVALID', [
        { file, key: key.slice(0, 64), message: unknownKeyMessage(key) },
      ]);
    }
    const typed = typeof value === 'string' ? parseValueText(key, value) : value;
    const check = checkValue(key, typed);
    if (!check.ok) {
      throw new ConfigError('CONFIG_INVALID', [
        { file, key, value: showValue(value), message: check.message },
      ]);
    }
    raw[key] = check.value;
  });
}

/** Removes `key` from `vm`'s override (it falls back to base.json / the default). */
export function unsetOverride(
  vm: VmName,
  key: string,
  paths: ZynclonePaths = zynclonePaths(),
): EffectiveConfig {
  return editOverride(vm, paths, (raw, file) => {
    if (!isConfigKey(key) && !Object.hasOwn(raw, key)) {
      throw new ConfigError('CONFIG_INVALID', [
        { file, key: key.slice(0, 64), message: unknownKeyMessage(key) },
      ]);
    }
    delete raw[key];
  });
}

/** Reads the generated guest/<vm>.cfg back (what the monitors use). */
export function readGuestCfg(vm: VmName, paths: ZynclonePaths = zynclonePaths()): ZyncloneConfig {
  const file = paths.guestCfgFile(vm);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      'CONFIG_IO',
      [{ file, message: `cannot read: ${(err as Error).message}` }],
      { cause: err },
    );
  }
  return parseGuestCfg(text, file);
}

function namesIn(dir: string, suffix: string): VmName[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return entries
    .filter((n) => n.endsWith(suffix))
    .flatMap((n) => asVmName(n.slice(0, -suffix.length)) ?? []);
}

/** VMs with an override file or a generated guest cfg, sorted. */
export function configuredVms(paths: ZynclonePaths = zynclonePaths()): VmName[] {
  const vms = new Set([...namesIn(paths.overrideDir, '.json'), ...namesIn(paths.guestDir, '.cfg')]);
  return [...vms].sort();
}

/**
 * Regenerates every configured VM's guest cfg (after base.json changed). A VM
 * whose config is invalid keeps its old file and is reported.
 */
export function regenerateGuestCfgs(
  paths: ZynclonePaths = zynclonePaths(),
): { vm: VmName; error?: ConfigError }[] {
  return configuredVms(paths).map((vm) => {
    try {
      writeGuestCfg(vm, paths);
      return { vm };
    } catch (err) {
      if (err instanceof ConfigError) return { vm, error: err };
      throw err;
    }
  });
}
