/**
 * What `vmclone upgrade` needs of the state database besides the store:
 * its schema version without migrating it, and a consistent copy.
 */
import type { DatabaseSync } from 'node:sqlite';
import { StateError } from './errors.js';

function openReadonly(file: string): DatabaseSync {
  try {
    const { DatabaseSync } = process.getBuiltinModule('node:sqlite');
    return new DatabaseSync(file, { readOnly: true });
  } catch (err) {
    throw new StateError(
      'STATE_OPEN',
      `cannot open state database ${file}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** The schema version (PRAGMA user_version) of the database in `file`, untouched. */
export function readSchemaVersion(file: string): number {
  const db = openReadonly(file);
  try {
    return Number(
      (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version,
    );
  } finally {
    db.close();
  }
}

/** A consistent copy of the database in `file` (WAL included) at `dest`, which must not exist. */
export function copyDatabase(file: string, dest: string): void {
  const db = openReadonly(file);
  try {
    db.prepare('VACUUM INTO ?').run(dest);
  } finally {
    db.close();
  }
}
