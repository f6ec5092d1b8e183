import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CONFIG_KEYS,
  ConfigError,
  type ZyncloneConfig,
  cloneNameFor,
  configJsonSchemaText,
  configuredVms,
  defaultConfig,
  effectiveConfig,
  parseGuestCfg,
  readGuestCfg,
  regenerateGuestCfgs,
  setOverride,
  unsetOverride,
  writeGuestCfg,
} from '../../src/core/config/index.js';
import { type ZynclonePaths, validateVmName, zynclonePaths } from '../../src/core/paths.js';

const web1 = validateVmName('web1');
const db1 = validateVmName('db1');
let root: string;
let paths: ZynclonePaths;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'zc-config-'));
  paths = zynclonePaths(root);
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function writeBase(obj: unknown): void {
  mkdirSync(paths.configDir, { recursive: true });
  writeFileSync(paths.baseConfigFile, typeof obj === 'string' ? obj : JSON.stringify(obj));
}

function writeOverride(name: string, obj: unknown): void {
  mkdirSync(paths.overrideDir, { recursive: true });
  writeFileSync(
    paths.overrideFile(validateVmName(name)),
    typeof obj === 'string' ? obj : JSON.stringify(obj),
  );
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

/** Every file under the config dir with its content, to prove nothing changed. */
function snapshotFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else out[full.slice(root.length)] = readFileSync(full, 'utf8');
    }
  };
  walk(paths.configDir);
  return out;
}

describe('effective configuration', () => {
  it('uses the defaults when neither file exists', () => {
    const eff = effectiveConfig(web1, paths);
    expect(eff.values).toEqual(defaultConfig());
    expect(eff.values.clone_vif_mask).toBe('all');
    expect(eff.values.original_vif_mask).toBe('none');
    expect(new Set(Object.values(eff.origins))).toEqual(new Set(['default']));
    expect(eff.baseExists).toBe(false);
  });

  it('layers base.json over the defaults and the override over base.json', () => {
    writeBase({ clone_kind: 'offline', clone_vif_mask: '0x5', keep_peripherals: ['usb'] });
    writeOverride(web1, { clone_kind: 'memory', shared_volumes: ['xvdb'] });
    const eff = effectiveConfig(web1, paths);
    expect(eff.values.clone_kind).toBe('memory');
    expect(eff.origins.clone_kind).toBe('override');
    expect(eff.values.clone_vif_mask).toBe('0,2');
    expect(eff.origins.clone_vif_mask).toBe('base');
    expect(eff.values.keep_peripherals).toEqual(['usb']);
    expect(eff.values.shared_volumes).toEqual(['xvdb']);
    expect(eff.origins.shared_volumes).toBe('override');
    expect(eff.origins.console_enabled).toBe('default');
    // Another VM sees base.json only.
    expect(effectiveConfig(db1, paths).values.clone_kind).toBe('offline');
  });

  it('names the file, the key, the bad value and what is allowed', () => {
    writeOverride(web1, { clone_kind: 'fast' });
    const err = configError(() => effectiveConfig(web1, paths));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.issues).toEqual([
      expect.objectContaining({
        file: paths.overrideFile(web1),
        key: 'clone_kind',
        value: '"fast"',
      }),
    ]);
    expect(err.message).toContain(paths.overrideFile(web1));
    expect(err.message).toContain('"offline", "online", "memory"');
  });

  it('reports every bad key of both files at once', () => {
    writeBase({ clone_vif_mask: '0,64', lockdown_ack_timeout_ms: 5 });
    writeOverride(web1, { keep_peripherals: ['pci', 'pci'] });
    const err = configError(() => effectiveConfig(web1, paths));
    expect(err.issues.map((i) => [i.file, i.key])).toEqual([
      [paths.baseConfigFile, 'clone_vif_mask'],
      [paths.baseConfigFile, 'lockdown_ack_timeout_ms'],
      [paths.overrideFile(web1), 'keep_peripherals'],
    ]);
    expect(err.message).toMatch(/device id 64 is above 63/);
    expect(err.message).toMatch(/from 100 to 600000/);
    expect(err.message).toMatch(/listed twice/);
  });

  it('refuses a host-wide key in an override, naming base.json, and keeps it in base.json', () => {
    writeBase({ clone_vif_prefix: 'zcx' });
    expect(effectiveConfig(web1, paths).values.clone_vif_prefix).toBe('zcx');
    const before = snapshotFiles();
    expect(() => setOverride(web1, 'clone_vif_prefix', 'zcy', paths)).toThrow(
      expect.objectContaining({
        code: 'CONFIG_INVALID',
        message: expect.stringMatching(/clone_vif_prefix.*host-wide.*base\.json/s),
      }),
    );
    expect(snapshotFiles()).toEqual(before);
  });

  it('refuses unknown keys and suggests the close one', () => {
    writeBase({ clone_vif_msk: 'all', totally_unrelated_setting: 1 });
    const err = configError(() => effectiveConfig(web1, paths));
    expect(err.issues[0]!.message).toMatch(/did you mean "clone_vif_mask"/);
    expect(err.issues[1]!.message).not.toMatch(/did you mean/);
  });

  it('allows a $schema key for editors', () => {
    writeBase({ $schema: '../../schema/zynclone-config.schema.json', clone_kind: 'offline' });
    expect(effectiveConfig(web1, paths).values.clone_kind).toBe('offline');
  });

  it('allows $comment lines and a $version it knows; refuses a newer $version', () => {
    writeBase({ $comment: ['defaults', 'for every VM'], $version: 1, clone_kind: 'offline' });
    expect(effectiveConfig(web1, paths).values.clone_kind).toBe('offline');
    writeBase({ $version: 2 });
    expect(configError(() => effectiveConfig(web1, paths)).issues[0]).toMatchObject({
      key: '$version',
      message: 'format 2 is from a newer ZynClone; this one reads up to 1',
    });
    writeBase({ $comment: 7 });
    expect(configError(() => effectiveConfig(web1, paths)).issues[0]!.message).toBe(
      'expected a string or a list of strings',
    );
  });

  it.each([
    ['clone_vif_mask', 3, /write the mask as a string: "3" means vif 3/],
    ['clone_vif_prefix', 'vif', /not overlapping "vif"/],
    ['clone_vif_prefix', 'v', /not overlapping/],
    ['isolation_bridge', 'a-very-long-bridge-name', /1-15/],
    ['clone_name_pattern', 'clone', /exactly one "\{vm\}"/],
    ['clone_name_pattern', '{vm}/x', /exactly one/],
    ['storage_dir', 'relative/dir', /absolute path/],
    ['storage_dir', '/var/../etc', /without "\.\."/],
    ['console_enabled', 'yes', /true or false/],
    ['lockdown_ack_timeout_ms', 1.5, /integer/],
    ['guest_allowed_operations', ['create', 'reboot'], /"reboot" is not allowed/],
    ['shared_volumes', ['bad\nname'], /printable/],
  ])('refuses %s = %j', (key, value, reason) => {
    writeBase({ [key]: value });
    const err = configError(() => effectiveConfig(web1, paths));
    expect(err.issues[0]!.key).toBe(key);
    expect(err.message).toMatch(reason);
  });

  it('refuses a clone name pattern that gives a bad name for this VM', () => {
    writeBase({ clone_name_pattern: '{vm}' });
    expect(configError(() => effectiveConfig(web1, paths)).message).toMatch(/same as the VM/);
    writeBase({ clone_name_pattern: '{vm}-clone-with-a-long-suffix' });
    writeOverride('x'.repeat(50), {});
    const err = configError(() => effectiveConfig(validateVmName('x'.repeat(50)), paths));
    expect(err.issues[0]).toMatchObject({ file: paths.baseConfigFile, key: 'clone_name_pattern' });
    expect(err.message).toMatch(/longer than 64/);
    expect(cloneNameFor(web1, '{vm}-clone')).toBe('web1-clone');
  });

  it('reports a file that is not JSON, or not an object', () => {
    writeBase('{ "clone_kind": ');
    const err = configError(() => effectiveConfig(web1, paths));
    expect(err.code).toBe('CONFIG_PARSE');
    expect(err.message).toContain(paths.baseConfigFile);
    writeBase('[1]');
    expect(configError(() => effectiveConfig(web1, paths)).message).toMatch(/JSON object/);
  });

  it('refuses a key given twice in base.json or an override, naming the key, file and lines', () => {
    writeBase(
      '{\n  "clone_kind": "offline",\n  "mac_policy": "keep",\n  "clone_kind": "memory"\n}',
    );
    let err = configError(() => effectiveConfig(web1, paths));
    expect(err.code).toBe('CONFIG_PARSE');
    expect(err.issues).toEqual([
      {
        file: paths.baseConfigFile,
        line: 4,
        key: 'clone_kind',
        message: 'key given twice (first on line 2)',
      },
    ]);
    expect(err.message).toBe(
      `${paths.baseConfigFile}:4: key "clone_kind": key given twice (first on line 2)`,
    );

    writeBase({ clone_kind: 'offline' });
    writeOverride(web1, '{"clone_vif_mask": "all", "clone_vif_mask": "none"}');
    err = configError(() => effectiveConfig(web1, paths));
    expect(err.issues).toMatchObject([{ file: paths.overrideFile(web1), key: 'clone_vif_mask' }]);
    // An edit through vmclone loses nothing: the file stays for the operator to fix.
    const before = snapshotFiles();
    expect(configError(() => setOverride(web1, 'mac_policy', 'keep', paths)).code).toBe(
      'CONFIG_PARSE',
    );
    expect(snapshotFiles()).toEqual(before);
  });

  it('finds keys given twice inside nested objects, naming the whole key', () => {
    writeBase('{"clone_kind": "offline", "x": [{"a": 1, "a": 2}]}');
    expect(configError(() => effectiveConfig(web1, paths)).issues).toMatchObject([
      { key: 'x[0].a', line: 1 },
    ]);
  });
});

describe('setOverride', () => {
  it('writes the override and the generated guest cfg', () => {
    writeBase({ clone_kind: 'offline' });
    const eff = setOverride(web1, 'clone_vif_mask', '0x3', paths);
    expect(eff.values.clone_vif_mask).toBe('0,1');
    expect(eff.origins.clone_vif_mask).toBe('override');
    expect(JSON.parse(readFileSync(paths.overrideFile(web1), 'utf8'))).toEqual({
      clone_vif_mask: '0,1',
    });
    const cfg = readFileSync(paths.guestCfgFile(web1), 'utf8');
    expect(cfg).toMatch(/^# Generated by ZynClone/);
    expect(cfg).toContain(`# from: ${paths.baseConfigFile}\n`);
    expect(cfg).toContain(`# from: ${paths.overrideFile(web1)}\n`);
    expect(cfg).toContain('# overridden: clone_vif_mask\n');
    expect(cfg).toContain('clone_name_pattern = "{vm}-clone"\n');
    expect(cfg).toContain('clone_kind = "offline"\n');
    expect(cfg).toContain('clone_vif_mask = "0,1"\n');
    expect(cfg).toContain('keep_peripherals = []\n');
    expect(readGuestCfg(web1, paths)).toEqual(eff.values);
  });

  it('parses command-line text per the key type', () => {
    setOverride(web1, 'console_enabled', 'off', paths);
    setOverride(web1, 'lockdown_ack_timeout_ms', '2500', paths);
    setOverride(web1, 'keep_peripherals', 'pci, usbdev', paths);
    setOverride(web1, 'shared_volumes', 'format=raw, vdev=xvdb, target=/dev/vg0/shared', paths);
    const eff = setOverride(web1, 'guest_allowed_operations', '["status"]', paths);
    expect(eff.values).toMatchObject({
      console_enabled: false,
      lockdown_ack_timeout_ms: 2500,
      keep_peripherals: ['pci', 'usbdev'],
      shared_volumes: ['format=raw, vdev=xvdb, target=/dev/vg0/shared'],
      guest_allowed_operations: ['status'],
    });
    expect(setOverride(web1, 'keep_peripherals', '', paths).values.keep_peripherals).toEqual([]);
    expect(setOverride(web1, 'keep_peripherals', ['vtpm'], paths).values.keep_peripherals).toEqual([
      'vtpm',
    ]);
  });

  it('keeps keys it does not touch, including $schema', () => {
    writeOverride(web1, { $schema: 'x.json', clone_kind: 'memory' });
    setOverride(web1, 'mac_policy', 'regenerate', paths);
    expect(JSON.parse(readFileSync(paths.overrideFile(web1), 'utf8'))).toEqual({
      $schema: 'x.json',
      clone_kind: 'memory',
      mac_policy: 'regenerate',
    });
  });

  it('loses nothing on bad input: every file stays as it was', () => {
    writeBase({ clone_kind: 'offline' });
    setOverride(web1, 'clone_vif_mask', '0', paths);
    const before = snapshotFiles();
    const bad: [string, unknown, RegExp][] = [
      ['clone_vif_mask', '0,99', /above 63/],
      ['clone_kind', 'quick', /"offline", "online", "memory"/],
      ['clone_vif_msk', 'all', /did you mean "clone_vif_mask"/],
      ['lockdown_ack_timeout_ms', 'soon', /integer/],
    ];
    for (const [key, value, reason] of bad) {
      const err = configError(() => setOverride(web1, key, value, paths));
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.message).toContain(paths.overrideFile(web1));
      expect(err.message).toMatch(reason);
    }
    expect(snapshotFiles()).toEqual(before);
  });

  it('refuses an edit while base.json is invalid, naming base.json, and writes nothing', () => {
    writeBase({ clone_kind: 'bogus' });
    const before = snapshotFiles();
    const err = configError(() => setOverride(web1, 'console_enabled', 'true', paths));
    expect(err.issues[0]).toMatchObject({ file: paths.baseConfigFile, key: 'clone_kind' });
    expect(snapshotFiles()).toEqual(before);
  });

  it('can repair a bad key in the override by setting or unsetting it', () => {
    writeOverride(web1, { clone_kind: 'bogus', mac_policy: 'regenerate' });
    expect(setOverride(web1, 'clone_kind', 'offline', paths).values.clone_kind).toBe('offline');
    writeOverride(web1, { clone_kind: 'bogus', mac_policy: 'regenerate' });
    const eff = unsetOverride(web1, 'clone_kind', paths);
    expect(eff.origins.clone_kind).toBe('default');
    expect(eff.values.mac_policy).toBe('regenerate');
  });

  it('removes the override file when its last key is unset', () => {
    setOverride(web1, 'clone_kind', 'offline', paths);
    const eff = unsetOverride(web1, 'clone_kind', paths);
    expect(eff.overrideExists).toBe(false);
    expect(() => statSync(paths.overrideFile(web1))).toThrow();
    expect(readFileSync(paths.guestCfgFile(web1), 'utf8')).toContain(
      `# from: ${paths.overrideFile(web1)} (absent)`,
    );
  });

  it('leaves no temporary files behind', () => {
    setOverride(web1, 'clone_kind', 'offline', paths);
    configError(() => setOverride(web1, 'clone_kind', 'nope', paths));
    expect(readdirSync(paths.overrideDir)).toEqual(['web1.json']);
    expect(readdirSync(paths.guestDir)).toEqual(['web1.cfg']);
  });
});

describe('guest cfg files', () => {
  it('round-trips every configuration through the generated text', () => {
    const values: ZyncloneConfig = {
      ...defaultConfig(),
      clone_kind: 'memory',
      keep_peripherals: ['pci', 'serial'],
      shared_volumes: ['vdev=xvdb, target="/srv/a b.img"', 'xvdc'],
      storage_volume_group: 'vg0',
    };
    writeBase(values);
    const eff = writeGuestCfg(web1, paths);
    expect(parseGuestCfg(readFileSync(eff.guestCfgFile, 'utf8'))).toEqual(values);
  });

  it('fills keys missing from an older file with their defaults', () => {
    expect(parseGuestCfg('# old\nclone_kind = "offline"\n')).toEqual({
      ...defaultConfig(),
      clone_kind: 'offline',
    });
  });

  it.each([
    ['clone_kind offline', 'CONFIG_PARSE', /:1: expected `key = value`/],
    ['Clone_kind = "offline"', 'CONFIG_PARSE', /:1: expected `key = value`/],
    ['clone_kind = offline', 'CONFIG_PARSE', /strings need double quotes/],
    ['clone_kind = "fast"', 'CONFIG_INVALID', /"offline", "online", "memory"/],
    [
      'clone_kind = "online"\nclone_kind = "online"',
      'CONFIG_INVALID',
      /:2: key "clone_kind".*twice/,
    ],
    ['mystery = 1', 'CONFIG_INVALID', /unknown key/],
  ])('refuses %j', (text, code, reason) => {
    const err = configError(() => parseGuestCfg(text, 'web1.cfg'));
    expect(err.code).toBe(code);
    expect(err.message).toMatch(reason);
  });

  it('refuses an oversized file', () => {
    expect(configError(() => parseGuestCfg('#'.repeat(70_000))).message).toMatch(/larger than/);
  });

  it('regenerates every configured VM after base.json changes, keeping bad ones as they were', () => {
    setOverride(web1, 'clone_kind', 'offline', paths);
    setOverride(db1, 'mac_policy', 'regenerate', paths);
    writeOverride('bad1', { clone_kind: 'nope' });
    writeBase({ console_enabled: false });
    const results = regenerateGuestCfgs(paths);
    expect(configuredVms(paths)).toEqual(['bad1', 'db1', 'web1']);
    expect(results.map((r) => [r.vm, r.error?.code])).toEqual([
      ['bad1', 'CONFIG_INVALID'],
      ['db1', undefined],
      ['web1', undefined],
    ]);
    expect(readGuestCfg(db1, paths).console_enabled).toBe(false);
    expect(readGuestCfg(web1, paths)).toMatchObject({
      console_enabled: false,
      clone_kind: 'offline',
    });
  });
});

describe('JSON Schema', () => {
  const file = resolve(__dirname, '../../schema/zynclone-config.schema.json');

  it('the committed schema file is the one generated from the schema table', () => {
    // To refresh it after changing the table: ZYNCLONE_WRITE_SCHEMA=1 npx vitest run test/core/config.test.ts
    if (process.env.ZYNCLONE_WRITE_SCHEMA === '1') {
      mkdirSync(resolve(file, '..'), { recursive: true });
      writeFileSync(file, configJsonSchemaText());
    }
    expect(readFileSync(file, 'utf8')).toBe(configJsonSchemaText());
  });

  it('describes every key with its default, and nothing else is allowed', () => {
    const schema = JSON.parse(configJsonSchemaText()) as {
      additionalProperties: boolean;
      properties: Record<string, { default?: unknown; pattern?: string }>;
    };
    expect(schema.additionalProperties).toBe(false);
    for (const key of CONFIG_KEYS) {
      expect(schema.properties[key]!.default).toEqual(defaultConfig()[key]);
    }
  });

  it('its patterns agree with the validator on vif masks and paths', () => {
    const schema = JSON.parse(configJsonSchemaText()) as {
      properties: Record<string, { pattern: string }>;
    };
    const mask = new RegExp(schema.properties.clone_vif_mask!.pattern);
    for (const ok of ['all', 'none', '0x5', '0,2', '63', ' 1 , 2 '])
      expect(mask.test(ok)).toBe(true);
    for (const bad of ['ALL', '64', '01', '0x', '1,', '']) expect(mask.test(bad)).toBe(false);
    const path = new RegExp(schema.properties.storage_dir!.pattern);
    expect(path.test('/var/lib/x')).toBe(true);
    expect(path.test('/a..b')).toBe(true);
    expect(path.test('/var/../etc')).toBe(false);
    expect(path.test('/..')).toBe(false);
    expect(path.test('var')).toBe(false);
  });
});

describe('docs/configuration.md', () => {
  const doc = readFileSync(resolve(__dirname, '../../docs/configuration.md'), 'utf8');

  it('documents every key with its default', () => {
    for (const key of CONFIG_KEYS) {
      const section = doc.split(`\n### ${key}\n`)[1]?.split('\n### ')[0];
      expect(section, key).toBeDefined();
      const d = defaultConfig()[key];
      const shown = Array.isArray(d)
        ? JSON.stringify(d)
        : typeof d === 'string'
          ? `"${d}"`
          : String(d);
      expect(section, key).toContain(`\`${shown}\``);
    }
  });

  it('shows a generated file that parses and lists every key', () => {
    const sample = `#${doc.split('```\n# Generated by ZynClone')[1]!.split('```')[0]!}`;
    const keys = [...sample.matchAll(/^([a-z_]+) = /gm)].map((m) => m[1]);
    expect(keys).toEqual(CONFIG_KEYS);
    expect(parseGuestCfg(sample).clone_vif_mask).toBe('0,2');
  });
});
