import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { zynclonePaths } from '../../../src/core/paths.js';
import { SCHEMA_VERSION, type StateStore, openStateStore } from '../../../src/core/state/index.js';
import { MIGRATIONS } from '../../../src/core/state/migrations.js';

let root: string;
const stores: StateStore[] = [];
const open = () => {
  const s = openStateStore({ paths: zynclonePaths(root) });
  stores.push(s);
  return s;
};

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'zc-holders-'));
});
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  rmSync(root, { recursive: true, force: true });
});

describe('state store: shared volume holders', () => {
  it('says original for a volume without a record, and keeps what is set', () => {
    const s = open();
    expect(s.volumeHolder('db01', 'xvdb')).toBe('original');
    s.setVolumeHolder('db01', 'xvdb', 'clone');
    expect(s.volumeHolder('db01', 'xvdb')).toBe('clone');
    s.setVolumeHolder('db01', 'xvdb', 'original');
    expect(s.volumeHolders('db01').map((h) => [h.vdev, h.holder])).toEqual([['xvdb', 'original']]);
    expect(s.clearVolumeHolders('db01')).toBe(1);
    expect(s.volumeHolders('db01')).toEqual([]);
  });

  it('refuses a bad vdev or holder, naming it', () => {
    const s = open();
    expect(() => s.setVolumeHolder('db01', '../x', 'clone')).toThrow(/invalid vdev "..\/x"/);
    expect(() => s.setVolumeHolder('db01', 'xvdb', 'both' as 'clone')).toThrow(
      /invalid holder "both"/,
    );
  });

  it('migrates a version 1 database: operations and their steps survive, switch-volume is a kind', () => {
    const file = join(root, 'var/lib/zynclone/state.db');
    mkdirSync(join(root, 'var/lib/zynclone'), { recursive: true });
    const db = new DatabaseSync(file);
    db.exec(MIGRATIONS[0]!);
    db.exec('PRAGMA user_version = 1');
    db.prepare(
      `INSERT INTO operations (vm, kind, status, requested_by, owner_pid, owner_host, started_at)
       VALUES ('db01', 'create', 'done', 'user:root', 1, 'h', 5)`,
    ).run();
    db.prepare(
      `INSERT INTO operation_steps (op_id, seq, name, status, intent, undo, journaled_at)
       VALUES (1, 1, 'plan', 'done', 'null', 'null', 5)`,
    ).run();
    db.close();

    const s = open();
    expect(s.schemaVersion).toBe(SCHEMA_VERSION);
    const old = s.getOperation(1)!;
    expect([old.kind, old.steps.map((x) => x.name)]).toEqual(['create', ['plan']]);
    const op = s.beginOperation('db01', 'switch-volume', { params: { vdev: 'xvdb' } });
    expect(op.kind).toBe('switch-volume');
    // The one-running-per-VM index was rebuilt with the table.
    expect(() => s.beginOperation('db01', 'create')).toThrow(/busy/);
  });
});
