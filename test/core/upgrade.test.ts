// vmclone upgrade from what each earlier release left on a host
// (test/fixtures/upgrade/), against a real XenStore server and SQLite.
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runVmclone } from '../../src/cli/vmclone.js';
import {
  CONFIG_FORMAT_VERSION,
  GENERATED_MARK,
  effectiveConfig,
  readGuestCfg,
} from '../../src/core/config/index.js';
import { type ZynclonePaths, validateVmName, zynclonePaths } from '../../src/core/paths.js';
import { SCHEMA_VERSION, openStateStore, readSchemaVersion } from '../../src/core/state/index.js';
import {
  LAYOUT_VERSION_PATH,
  UpgradeError,
  XENSTORE_LAYOUT_VERSION,
  upgrade,
} from '../../src/core/upgrade/index.js';
import { XenstoreServer } from '../../src/sim/xenstored/server.js';
import { XsClient } from '../../src/xenstore/index.js';

const FIXTURES = resolve(__dirname, '../fixtures/upgrade');
const fixture = (name: string) => join(FIXTURES, name);

let work: string;
let paths: ZynclonePaths;
let server: XenstoreServer;
let xs: XsClient;

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'zc-upgrade-'));
  paths = zynclonePaths(join(work, 'root'));
  const socketPath = join(work, 'xs.sock');
  server = await XenstoreServer.start({ socketPath });
  xs = await XsClient.connect({ path: socketPath, reconnect: false });
});
afterEach(async () => {
  await xs.close();
  await server.close();
  rmSync(work, { recursive: true, force: true });
});

function loadState(version: number): void {
  mkdirSync(paths.stateDir, { recursive: true });
  const db = new DatabaseSync(paths.stateDb);
  db.exec(readFileSync(fixture(`state-v${version}.sql`), 'utf8'));
  db.close();
}

async function loadTree(version: number): Promise<Record<string, string>> {
  const tree = JSON.parse(readFileSync(fixture(`xenstore-v${version}.json`), 'utf8')) as Record<
    string,
    string
  >;
  for (const [path, value] of Object.entries(tree)) await xs.write(path, value);
  return tree;
}

function writeBase(text: string): void {
  mkdirSync(paths.configDir, { recursive: true });
  writeFileSync(paths.baseConfigFile, text);
}

const backups = () => {
  const dir = join(paths.stateDir, 'backups');
  return existsSync(dir) ? readdirSync(dir) : [];
};

describe('fixtures', () => {
  it('exist for every version of each part up to this release', () => {
    const need = [
      ...Array.from({ length: SCHEMA_VERSION }, (_, i) => `state-v${i + 1}.sql`),
      ...Array.from({ length: CONFIG_FORMAT_VERSION }, (_, i) => `base-v${i + 1}.json`),
      ...Array.from({ length: XENSTORE_LAYOUT_VERSION }, (_, i) => `xenstore-v${i + 1}.json`),
    ];
    for (const name of need) expect(existsSync(fixture(name)), name).toBe(true);
  });
});

describe('vmclone upgrade from each earlier version', () => {
  for (let v = 1; v <= SCHEMA_VERSION; v++) {
    it(`state database v${v}, base.json v${Math.min(v, CONFIG_FORMAT_VERSION)}, XenStore tree: clones survive`, async () => {
      loadState(v);
      writeBase(readFileSync(fixture(`base-v${Math.min(v, CONFIG_FORMAT_VERSION)}.json`), 'utf8'));
      const tree = await loadTree(Math.min(v, XENSTORE_LAYOUT_VERSION));

      const report = await upgrade({ paths, xs }, { dryRun: false });

      expect(readSchemaVersion(paths.stateDb)).toBe(SCHEMA_VERSION);
      const store = openStateStore({ paths });
      try {
        expect(store.getClone('web1')).toMatchObject({ cloneName: 'web1-clone', state: 'running' });
        expect(store.auditLog().map((a) => a.action)).toEqual(
          expect.arrayContaining(['create', 'remove']),
        );
      } finally {
        store.close();
      }
      expect(effectiveConfig(validateVmName('web1'), paths).values.clone_kind).toBe('offline');
      expect(await xs.read(LAYOUT_VERSION_PATH)).toBe(String(XENSTORE_LAYOUT_VERSION));
      // Nothing published was touched: the clone stays locked as it was.
      for (const [path, value] of Object.entries(tree)) expect(await xs.read(path)).toBe(value);

      // Backed up before the change: the old database, files and tree.
      const backup = report.backupDir!;
      expect(readSchemaVersion(join(backup, 'state.db'))).toBe(v);
      expect(readFileSync(join(backup, 'config/base.json'), 'utf8')).toBe(
        readFileSync(fixture(`base-v${Math.min(v, CONFIG_FORMAT_VERSION)}.json`), 'utf8'),
      );
      const saved = JSON.parse(readFileSync(join(backup, 'xenstore.json'), 'utf8'));
      expect(saved).toEqual(tree);
    });
  }

  it('is idempotent: a second run changes nothing and makes no backup', async () => {
    loadState(1);
    await loadTree(1);
    await upgrade({ paths, xs }, { dryRun: false });
    expect(backups()).toHaveLength(1);
    const again = await upgrade({ paths, xs }, { dryRun: false });
    expect(again.parts.filter((p) => p.migrate)).toEqual([]);
    expect(again.backupDir).toBeUndefined();
    expect(backups()).toHaveLength(1);
  });

  it('--dry-run reports and changes nothing', async () => {
    await loadTree(1);
    const r = await upgrade({ paths, xs }, { dryRun: true });
    expect(r.parts.find((p) => p.part === 'xenstore')).toMatchObject({ from: 1, migrate: true });
    expect(await xs.tryRead(LAYOUT_VERSION_PATH)).toBeUndefined();
    expect(backups()).toEqual([]);
  });

  it('skips the XenStore part, and says so, when none is reachable', async () => {
    loadState(1);
    const r = await upgrade({ paths, xsProblem: 'no socket' }, { dryRun: false });
    expect(r.parts.find((p) => p.part === 'xenstore')?.found).toBe('skipped: no socket');
  });
});

describe('refuses what a newer release wrote, before changing anything', () => {
  async function refused(): Promise<UpgradeError> {
    const err = await upgrade({ paths, xs }, { dryRun: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpgradeError);
    expect((err as UpgradeError).code).toBe('UPGRADE_TOO_NEW');
    expect(backups()).toEqual([]);
    expect(await xs.tryRead(LAYOUT_VERSION_PATH)).not.toBe(String(XENSTORE_LAYOUT_VERSION));
    return err as UpgradeError;
  }

  it('a state database of a newer schema', async () => {
    await loadTree(1);
    loadState(1);
    const db = new DatabaseSync(paths.stateDb);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect((await refused()).message).toMatch(
      new RegExp(
        `state database .* has version ${SCHEMA_VERSION + 1}, but this ZynClone knows up to ${SCHEMA_VERSION}`,
      ),
    );
    expect(readSchemaVersion(paths.stateDb)).toBe(SCHEMA_VERSION + 1);
  });

  it('a base.json of a newer format', async () => {
    await loadTree(1);
    writeBase(`{ "$version": ${CONFIG_FORMAT_VERSION + 1} }\n`);
    expect((await refused()).message).toMatch(/base\.json has version 2.*newer release/);
  });

  it('a XenStore tree of a newer layout', async () => {
    await loadTree(1);
    await xs.write(LAYOUT_VERSION_PATH, String(XENSTORE_LAYOUT_VERSION + 1));
    expect((await refused()).message).toMatch(/XenStore tree \/tool\/zynclone has version 2/);
    expect(await xs.read(LAYOUT_VERSION_PATH)).toBe(String(XENSTORE_LAYOUT_VERSION + 1));
  });
});

describe('legacy key=value guest files without base.json', () => {
  beforeEach(() => {
    cpSync(fixture('legacy-guest'), paths.guestDir, { recursive: true });
  });

  it('imports them into base.json plus overrides, keeping every VM exactly as configured', async () => {
    const r = await upgrade({ paths, xs }, { dryRun: false });
    expect(r.parts.find((p) => p.part === 'legacy-guest')).toMatchObject({ migrate: true });

    const base = JSON.parse(readFileSync(paths.baseConfigFile, 'utf8'));
    // Shared by all three files: in base.json once.
    expect(base).toEqual({ $version: 1, keep_peripherals: ['serial'] });
    expect(JSON.parse(readFileSync(paths.overrideFile(validateVmName('web1')), 'utf8'))).toEqual({
      clone_kind: 'online',
      clone_vif_mask: '0,2',
      start_on_create: true,
    });
    expect(effectiveConfig(validateVmName('db1'), paths).values).toMatchObject({
      clone_kind: 'offline',
      clone_vif_mask: 'all',
      lockdown_ack_timeout_ms: 30000,
    });
    expect(effectiveConfig(validateVmName('app1'), paths).values.start_on_create).toBe(false);
    // guest/<vm>.cfg is now the generated file, read back as the monitors do.
    for (const vm of ['web1', 'db1', 'app1'].map(validateVmName)) {
      expect(readFileSync(paths.guestCfgFile(vm), 'utf8').startsWith(GENERATED_MARK)).toBe(true);
      expect(readGuestCfg(vm, paths)).toEqual(effectiveConfig(vm, paths).values);
    }
    // The originals are in the backup.
    expect(readFileSync(join(r.backupDir!, 'config/guest/web1.cfg'), 'utf8')).toBe(
      readFileSync(fixture('legacy-guest/web1.cfg'), 'utf8'),
    );
    const again = await upgrade({ paths, xs }, { dryRun: false });
    expect(again.backupDir).toBeUndefined();
  });

  it('imports them beside the packaged base.json, which sets nothing', async () => {
    writeBase('{ "$comment": ["as installed"], "$version": 1 }\n');
    await upgrade({ paths, xs }, { dryRun: false });
    expect(JSON.parse(readFileSync(paths.baseConfigFile, 'utf8'))).toEqual({
      $version: 1,
      keep_peripherals: ['serial'],
    });
  });

  it('refuses them beside a base.json with settings of its own', async () => {
    writeBase('{ "clone_kind": "memory" }\n');
    const err = await upgrade({ paths, xs }, { dryRun: false }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'UPGRADE_LEGACY_INVALID' });
    expect((err as Error).message).toMatch(
      /app1\.cfg, db1\.cfg, web1\.cfg\) while .*base\.json has settings/,
    );
    expect(readFileSync(paths.guestCfgFile(validateVmName('web1')), 'utf8')).toBe(
      readFileSync(fixture('legacy-guest/web1.cfg'), 'utf8'),
    );
  });

  it('refuses files it cannot read as they are, naming each problem, and writes nothing', async () => {
    writeFileSync(
      join(paths.guestDir, 'web2.cfg'),
      'clone_kind = fast\nclone_vif_msk = all\nCLONE_VIF_PREFIX = zcv\nclone_vif_prefix = zcv\nnot a setting\n',
    );
    writeFileSync(join(paths.guestDir, 'web3.cfg'), 'clone_vif_prefix = zcx\n');
    const err = await upgrade({ paths, xs }, { dryRun: false }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'UPGRADE_LEGACY_INVALID' });
    const message = (err as Error).message;
    expect(message).toMatch(/web2\.cfg:1: key "clone_kind" = "fast": expected one of/);
    expect(message).toMatch(
      /web2\.cfg:2: key "clone_vif_msk": unknown key; did you mean "clone_vif_mask"/,
    );
    // Hand-written keys may be upper-case: the same key twice is refused.
    expect(message).toMatch(/web2\.cfg:4: key "clone_vif_prefix": key given twice/);
    expect(message).toMatch(/web2\.cfg:5: expected `key = value`/);
    expect(message).toMatch(/key "clone_vif_prefix": is host-wide, but the VMs' files disagree/);
    expect(existsSync(paths.baseConfigFile)).toBe(false);
    expect(backups()).toEqual([]);
  });
});

describe('vmclone upgrade (command line)', () => {
  async function vmclone(...args: string[]) {
    const out = new PassThrough();
    const err = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    err.resume();
    const code = await runVmclone(['upgrade', ...args], {
      stdout: out,
      stderr: err,
      env: { ...process.env, ZYNCLONE_ROOT: paths.root, XENSTORED_PATH: join(work, 'xs.sock') },
    });
    return { code, stdout: Buffer.concat(chunks).toString('utf8') };
  }

  it('shows each part, migrates, then has nothing to do', async () => {
    loadState(SCHEMA_VERSION);
    await loadTree(1);
    const dry = await vmclone('--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^xenstore +1 -> 1 +\/tool\/zynclone$/m);
    expect(dry.stdout).toMatch(/1 part\(s\) would be migrated \(dry run: nothing changed\)/);
    const real = await vmclone();
    expect(real.stdout).toMatch(/1 part\(s\) migrated; backup in .*backups/);
    expect((await vmclone('--quiet')).stdout).toBe('');
    expect((await vmclone()).stdout).toMatch(/nothing to upgrade/);
  });

  it('exits 5 on data of a newer release', async () => {
    await loadTree(1);
    await xs.write(LAYOUT_VERSION_PATH, '99');
    expect((await vmclone()).code).toBe(5);
  });
});
