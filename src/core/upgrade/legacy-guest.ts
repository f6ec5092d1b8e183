/**
 * The layout before base.json: one hand-written key=value file per VM in
 * /etc/xen/clone/guest/<vm>.cfg. Values were written bare (`clone_kind =
 * offline`, `start_on_create = yes`) or as JSON literals, as the generated
 * files are now.
 *
 * The import keeps every VM's effective configuration exactly: values all VMs
 * share (and host-wide keys, which must agree) go to base.json, the rest to
 * override/<vm>.json; then each guest/<vm>.cfg is regenerated. The originals
 * are in the backup `vmclone upgrade` makes first.
 */
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import {
  CONFIG_FORMAT_VERSION,
  CONFIG_KEYS,
  CONFIG_SCHEMA,
  type ConfigIssue,
  type ConfigKey,
  type ZyncloneConfig,
  checkValue,
  defaultConfig,
  effectiveConfig,
  keyValueLines,
  parseValueText,
  showValue,
  writeFileAtomic,
  writeGuestCfg,
} from '../config/index.js';
import { type VmName, type ZynclonePaths, validateVmName } from '../paths.js';
import { UpgradeError } from './errors.js';

/** Largest legacy file read; real ones hold a dozen lines. */
const MAX_LEGACY_BYTES = 64 * 1024;

export interface LegacyImport {
  readonly vms: readonly VmName[];
  /** What each VM's file set, validated. */
  readonly values: ReadonlyMap<string, Partial<ZyncloneConfig>>;
  readonly base: Partial<ZyncloneConfig>;
  readonly overrides: ReadonlyMap<string, Partial<ZyncloneConfig>>;
}

function typedValue(key: ConfigKey, text: string): unknown {
  // A JSON literal the key accepts as is ("all", ["pci"], 10000, true) wins;
  // anything else is read like a command-line value (bare words, yes/no, a,b).
  try {
    const json = JSON.parse(text) as unknown;
    if (checkValue(key, json).ok) return json;
  } catch {
    // not JSON: a bare value
  }
  return parseValueText(key, text.replace(/^"(.*)"$/, '$1'));
}

/** One legacy file's settings; every problem is collected with its line. */
export function parseLegacyGuestFile(
  text: string,
  file: string,
  issues: ConfigIssue[],
): Partial<ZyncloneConfig> {
  if (Buffer.byteLength(text) > MAX_LEGACY_BYTES) {
    issues.push({ file, message: `larger than ${MAX_LEGACY_BYTES} bytes` });
    return {};
  }
  const values: Record<string, unknown> = {};
  const problems = { syntax: issues, keys: issues };
  for (const { line, key, valueText } of keyValueLines(text, file, problems, true)) {
    const check = checkValue(key, typedValue(key, valueText));
    if (check.ok) values[key] = check.value;
    else issues.push({ file, line, key, value: showValue(valueText), message: check.message });
  }
  return values as Partial<ZyncloneConfig>;
}

/** Reads and splits the legacy files; throws UPGRADE_LEGACY_INVALID naming every problem. */
export function planLegacyImport(paths: ZynclonePaths, files: readonly string[]): LegacyImport {
  const issues: ConfigIssue[] = [];
  const values = new Map<VmName, Partial<ZyncloneConfig>>();
  for (const file of files) {
    const vm = validateVmName(file.slice(paths.guestDir.length + 1, -'.cfg'.length));
    values.set(vm, parseLegacyGuestFile(readFileSync(file, 'utf8'), file, issues));
  }
  const vms = [...values.keys()];
  const defaults = defaultConfig();
  const effective = (vm: VmName, key: ConfigKey) => values.get(vm)![key] ?? defaults[key];
  const base: Record<string, unknown> = {};
  const overrides = new Map(vms.map((vm) => [vm, {} as Record<string, unknown>]));
  for (const key of CONFIG_KEYS) {
    const first = effective(vms[0]!, key);
    const shared = vms.every((vm) => isDeepStrictEqual(effective(vm, key), first));
    if (shared) {
      if (!isDeepStrictEqual(first, defaults[key])) base[key] = first;
    } else if (CONFIG_SCHEMA[key].hostWide) {
      issues.push({
        file: paths.guestDir,
        key,
        message: `is host-wide, but the VMs' files disagree (${vms.map((vm) => `${vm}: ${showValue(effective(vm, key))}`).join(', ')}); give every file the same value`,
      });
    } else {
      for (const vm of vms) {
        if (values.get(vm)![key] !== undefined) overrides.get(vm)![key] = values.get(vm)![key];
      }
    }
  }
  if (issues.length > 0) {
    throw new UpgradeError(
      'UPGRADE_LEGACY_INVALID',
      `the legacy guest files cannot be imported; nothing was changed:\n${issues
        .map(
          (i) =>
            `  ${i.file}${i.line ? `:${i.line}` : ''}: ${i.key ? `key "${i.key}"${i.value ? ` = ${i.value}` : ''}: ` : ''}${i.message}`,
        )
        .join('\n')}`,
    );
  }
  return {
    vms,
    values,
    base: base as Partial<ZyncloneConfig>,
    overrides: overrides as Map<string, Partial<ZyncloneConfig>>,
  };
}

const json = (value: object) => `${JSON.stringify(value, null, 2)}\n`;

/** Writes base.json and the overrides, regenerates guest/<vm>.cfg, and checks nothing changed meaning. */
export function writeLegacyImport(paths: ZynclonePaths, plan: LegacyImport): void {
  for (const vm of plan.vms) {
    const o = plan.overrides.get(vm)!;
    if (Object.keys(o).length > 0) writeFileAtomic(paths.overrideFile(vm), json(o));
  }
  // base.json last: until it exists, a rerun still sees the legacy layout.
  writeFileAtomic(paths.baseConfigFile, json({ $version: CONFIG_FORMAT_VERSION, ...plan.base }));
  for (const vm of plan.vms) {
    writeGuestCfg(vm, paths);
    const want = { ...defaultConfig(), ...plan.values.get(vm) };
    if (!isDeepStrictEqual(effectiveConfig(vm, paths).values, want)) {
      throw new UpgradeError(
        'UPGRADE_FAILED',
        `the imported configuration of ${vm} differs from its legacy file; restore the backup`,
      );
    }
  }
}
