// LVM backends. device-mapper is absent on the machines this suite runs on, so
// these tests check the exact lvm command lines the backends run and the parsing
// of real `lvs --reportformat json` output (fixtures). The end-to-end check
// against real LVM is lvmSnapshotSelfTest(), run by the real-Xen lane.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  type CommandResult,
  type CommandRunner,
  type DiskSpec,
  StorageError,
  classicSnapshotArgv,
  execute,
  lvsArgv,
  parseLvsReport,
  parseSnapshotRecord,
  planSnapshot,
  remove,
  removeArgv,
  runCommand,
  thinSnapshotArgv,
} from '../../../src/core/storage/index.js';

const fixture = (name: string) =>
  readFileSync(join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures', name), 'utf8');

const NOT_FOUND = (what: string): CommandResult => ({
  code: 5,
  stdout: '',
  stderr: `  Failed to find logical volume "${what}"\n`,
});

/** Plays the lvm tools: answers from a table keyed by the joined argv, records every call. */
function scriptedLvm(answers: Record<string, CommandResult | (() => CommandResult)>) {
  const calls: string[][] = [];
  const run: CommandRunner = async (argv) => {
    calls.push([...argv]);
    const a = answers[argv.join(' ')];
    if (a === undefined) throw new Error(`unexpected command: ${argv.join(' ')}`);
    return typeof a === 'function' ? a() : a;
  };
  return { run, calls };
}

const ok = (stdout = ''): CommandResult => ({ code: 0, stdout, stderr: '' });
const lvs = (target: string) => lvsArgv(target).join(' ');
const phy = (target: string, vdev = 'xvda'): DiskSpec => ({
  target,
  format: 'raw',
  vdev,
  kind: 'phy',
});

describe('lvm command lines', () => {
  it('asks lvs for a JSON report in bytes', () => {
    expect(lvsArgv('/dev/vg0/web')).toEqual([
      'lvs',
      '--reportformat',
      'json',
      '--units',
      'b',
      '--nosuffix',
      '--options',
      'lv_name,vg_name,lv_attr,lv_size,pool_lv,origin,lv_path',
      '/dev/vg0/web',
    ]);
  });

  it('makes thin snapshots activatable (no activation skip) and activates them', () => {
    expect(thinSnapshotArgv('vg0', 'web', 'web-clone.xvda')).toEqual([
      'lvcreate',
      '--snapshot',
      '--setactivationskip',
      'n',
      '--activate',
      'y',
      '--ignoreactivationskip',
      '--name',
      'web-clone.xvda',
      'vg0/web',
    ]);
  });

  it('gives classic snapshots a size in bytes, with a unit, or as extents', () => {
    expect(classicSnapshotArgv('vg', 'db', 's', '1073741824')).toEqual([
      'lvcreate',
      '--snapshot',
      '--size',
      '1073741824b',
      '--name',
      's',
      'vg/db',
    ]);
    expect(classicSnapshotArgv('vg', 'db', 's', '10G').slice(2, 4)).toEqual(['--size', '10G']);
    expect(classicSnapshotArgv('vg', 'db', 's', '20%ORIGIN').slice(2, 4)).toEqual([
      '--extents',
      '20%ORIGIN',
    ]);
    expect(() => classicSnapshotArgv('vg', 'db', 's', '10 G; rm')).toThrow(StorageError);
  });

  it('removes with lvremove --force', () => {
    expect(removeArgv('vg0', 'web-clone.xvda')).toEqual([
      'lvremove',
      '--force',
      'vg0/web-clone.xvda',
    ]);
  });
});

describe('lvs report parsing', () => {
  it('reads a single thin volume, ignoring the command log section', () => {
    expect(parseLvsReport(fixture('lvs-thin.json'))).toEqual([
      {
        name: 'web',
        vg: 'vg0',
        attr: 'Vwi-aotz--',
        sizeBytes: 21474836480,
        pool: 'pool0',
        origin: '',
        path: '/dev/vg0/web',
      },
    ]);
  });

  it('reads a whole volume group with pools, thin and classic snapshots', () => {
    const rows = parseLvsReport(fixture('lvs-vg.json'));
    expect(rows.map((r) => [r.name, r.attr.charAt(0), r.origin])).toEqual([
      ['pool0', 't', ''],
      ['web', 'V', ''],
      ['web-clone.xvda', 'V', 'web'],
      ['db', 'o', ''],
      ['db-c.xvdb', 's', 'db'],
    ]);
  });

  it('rejects malformed reports with STORAGE_LVM_FAILED', () => {
    for (const bad of ['', '{}', '{"report":{}}', '{"report":[{"lv":[{"lv_name":"x"}]}]}']) {
      expect(() => parseLvsReport(bad)).toThrow(
        expect.objectContaining({ code: 'STORAGE_LVM_FAILED' }),
      );
    }
    const hugeUnits = fixture('lvs-thin.json').replace('"21474836480"', '"20.00g"');
    expect(() => parseLvsReport(hugeUnits)).toThrow(/not bytes/);
  });
});

describe('LVM planning, execution and removal', () => {
  const base = { kind: 'online-disk', originalState: 'running' } as const;

  it('a thin volume gets a thin snapshot named after the clone and vdev', async () => {
    const lvm = scriptedLvm({
      [lvs('/dev/vg0/web')]: ok(fixture('lvs-thin.json')),
      [lvs('vg0/web-clone.xvda')]: NOT_FOUND('vg0/web-clone.xvda'),
      [thinSnapshotArgv('vg0', 'web', 'web-clone.xvda').join(' ')]: ok(),
    });
    const plan = await planSnapshot(phy('/dev/vg0/web'), {
      ...base,
      cloneName: 'web-clone',
      run: lvm.run,
    });
    expect(plan).toMatchObject({
      backend: 'lvm-thin',
      vg: 'vg0',
      lv: 'web',
      name: 'web-clone.xvda',
      dest: '/dev/vg0/web-clone.xvda',
    });
    const record = await execute(plan, { run: lvm.run });
    expect(lvm.calls.at(-1)).toEqual(thinSnapshotArgv('vg0', 'web', 'web-clone.xvda'));
    expect(parseSnapshotRecord(JSON.parse(JSON.stringify(record)))).toEqual(record);
  });

  it('a linear volume gets a classic snapshot with the default or given size', async () => {
    const lvm = scriptedLvm({
      [lvs('/dev/vg-prod/db-data')]: ok(fixture('lvs-linear.json')),
      [lvs('vg-prod/db-c.xvdb')]: NOT_FOUND('vg-prod/db-c.xvdb'),
      'lvcreate --snapshot --extents 20%ORIGIN --name db-c.xvdb vg-prod/db-data': ok(),
      'lvcreate --snapshot --size 4G --name db-c.xvdb vg-prod/db-data': ok(),
    });
    const opts = { ...base, cloneName: 'db-c', run: lvm.run };
    const plan = await planSnapshot(phy('/dev/vg-prod/db-data', 'xvdb'), opts);
    expect(plan).toMatchObject({
      backend: 'lvm-classic',
      size: '20%ORIGIN',
      dest: '/dev/vg-prod/db-c.xvdb',
    });
    await execute(plan, { run: lvm.run });
    const sized = await planSnapshot(phy('/dev/vg-prod/db-data', 'xvdb'), {
      ...opts,
      lvmSnapshotSize: '4G',
    });
    await execute(sized, { run: lvm.run });
    expect(lvm.calls.filter((c) => c[0] === 'lvcreate')).toEqual([
      [
        'lvcreate',
        '--snapshot',
        '--extents',
        '20%ORIGIN',
        '--name',
        'db-c.xvdb',
        'vg-prod/db-data',
      ],
      ['lvcreate', '--snapshot', '--size', '4G', '--name', 'db-c.xvdb', 'vg-prod/db-data'],
    ]);
  });

  it('refuses a thin snapshot of a linear volume and a phy disk that is no LV', async () => {
    const lvm = scriptedLvm({
      [lvs('/dev/vg-prod/db-data')]: ok(fixture('lvs-linear.json')),
      [lvs('vg-prod/c.xvda')]: NOT_FOUND('vg-prod/c.xvda'),
      [lvs('/dev/sdb')]: {
        code: 3,
        stdout: '',
        stderr: '  "/dev/sdb": Invalid path for Logical Volume.\n',
      },
    });
    await expect(
      planSnapshot(phy('/dev/vg-prod/db-data'), {
        ...base,
        cloneName: 'c',
        backend: 'lvm-thin',
        run: lvm.run,
      }),
    ).rejects.toMatchObject({
      code: 'STORAGE_NO_BACKEND',
      message: expect.stringMatching(/not a thin volume/),
    });
    await expect(
      planSnapshot(phy('/dev/sdb'), { ...base, cloneName: 'c', run: lvm.run }),
    ).rejects.toMatchObject({
      code: 'STORAGE_NO_BACKEND',
      message: expect.stringMatching(/not an LVM logical volume.*Invalid path/),
    });
  });

  it('refuses when the snapshot name is already taken', async () => {
    const lvm = scriptedLvm({
      [lvs('/dev/vg0/web')]: ok(fixture('lvs-thin.json')),
      [lvs('vg0/web-clone.xvda')]: ok(
        fixture('lvs-thin.json').replaceAll('"web"', '"web-clone.xvda"'),
      ),
    });
    await expect(
      planSnapshot(phy('/dev/vg0/web'), { ...base, cloneName: 'web-clone', run: lvm.run }),
    ).rejects.toMatchObject({ code: 'STORAGE_DEST_EXISTS' });
  });

  it('removal is idempotent and never removes a snapshot of another volume', async () => {
    let exists = true;
    const snap = fixture('lvs-vg.json');
    const row = JSON.stringify({
      report: [{ lv: [parseRaw(snap).report[0]!.lv[2]] }],
    });
    const lvm = scriptedLvm({
      [lvs('vg0/web-clone.xvda')]: () => (exists ? ok(row) : NOT_FOUND('vg0/web-clone.xvda')),
      'lvremove --force vg0/web-clone.xvda': () => {
        exists = false;
        return ok();
      },
    });
    const record = {
      backend: 'lvm-thin',
      vdev: 'xvda',
      vg: 'vg0',
      lv: 'web',
      source: '/dev/vg0/web',
      name: 'web-clone.xvda',
      dest: '/dev/vg0/web-clone.xvda',
      format: 'raw',
      reason: '',
      createdAt: new Date().toISOString(),
      tookMs: 1,
    } as const;
    expect(await remove(record, { run: lvm.run })).toBe(true);
    expect(await remove(record, { run: lvm.run })).toBe(false);
    expect(lvm.calls.filter((c) => c[0] === 'lvremove')).toHaveLength(1);

    exists = true;
    await expect(remove({ ...record, lv: 'db' }, { run: lvm.run })).rejects.toMatchObject({
      code: 'STORAGE_LVM_FAILED',
      message: expect.stringMatching(/snapshot of web, not of db/),
    });
    // An lvs failure that is not "not found" must not pass for "already removed".
    const broken = scriptedLvm({
      [lvs('vg0/web-clone.xvda')]: { code: 5, stdout: '', stderr: '  Locking failed.\n' },
    });
    await expect(remove(record, { run: broken.run })).rejects.toMatchObject({
      code: 'STORAGE_LVM_FAILED',
    });
  });

  it('names the missing tool when lvm2 is not installed', async () => {
    const run: CommandRunner = (argv) =>
      // The real runner, asked for a program that is not installed.
      runCommand([`/nonexistent/${argv[0]}`, ...argv.slice(1)]);
    await expect(
      planSnapshot(phy('/dev/vg0/web'), { ...base, cloneName: 'c', run }),
    ).rejects.toMatchObject({
      code: 'STORAGE_TOOL_MISSING',
      message: expect.stringMatching(/lvm2/),
    });
  });
});

function parseRaw(text: string): { report: Array<{ lv: unknown[] }> } {
  return JSON.parse(text) as { report: Array<{ lv: unknown[] }> };
}
