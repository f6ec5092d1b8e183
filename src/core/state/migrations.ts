/**
 * Schema versions, applied in order; PRAGMA user_version holds the last one
 * applied. Append only: a released migration is never edited.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: clones, operations with their journal, audit log.
  `
  CREATE TABLE clones (
    vm            TEXT PRIMARY KEY,
    clone_name    TEXT NOT NULL UNIQUE,
    clone_uuid    TEXT,
    clone_domid   INTEGER,
    state         TEXT NOT NULL CHECK (state IN ('running', 'active', 'inactive')),
    kind          TEXT NOT NULL CHECK (kind IN ('offline', 'online', 'memory')),
    source_uuid   TEXT NOT NULL,
    snapshots     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(snapshots)),
    requested_by  TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
  ) STRICT;

  CREATE TABLE operations (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    vm                TEXT NOT NULL,
    kind              TEXT NOT NULL
                      CHECK (kind IN ('create', 'start', 'stop', 'activate', 'deactivate', 'remove')),
    status            TEXT NOT NULL CHECK (status IN ('running', 'done', 'rolled-back', 'failed')),
    requested_by      TEXT NOT NULL,
    params            TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(params)),
    owner_pid         INTEGER NOT NULL,
    owner_host        TEXT NOT NULL,
    owner_start_time  TEXT,
    owner_boot_id     TEXT,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    error             TEXT
  ) STRICT;
  -- The database itself refuses a second running operation on one VM.
  CREATE UNIQUE INDEX operations_one_running_per_vm ON operations (vm) WHERE status = 'running';
  CREATE INDEX operations_by_vm ON operations (vm, id);

  CREATE TABLE operation_steps (
    op_id         INTEGER NOT NULL REFERENCES operations (id),
    seq           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('journaled', 'done', 'undone', 'failed')),
    intent        TEXT NOT NULL CHECK (json_valid(intent)),
    undo          TEXT NOT NULL CHECK (json_valid(undo)),
    result        TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(result)),
    error         TEXT,
    journaled_at  INTEGER NOT NULL,
    finished_at   INTEGER,
    PRIMARY KEY (op_id, seq)
  ) STRICT;

  CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    who       TEXT NOT NULL,
    action    TEXT NOT NULL,
    vm        TEXT,
    op_id     INTEGER,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(detail))
  ) STRICT;
  CREATE INDEX audit_by_vm ON audit (vm, id);
  `,
  // 2: switch-volume operations, and which side holds each shared volume.
  // SQLite cannot change a CHECK, so operations is rebuilt (the store runs
  // migrations with foreign keys off and checks them before committing).
  `
  CREATE TABLE operations_v2 (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    vm                TEXT NOT NULL,
    kind              TEXT NOT NULL
                      CHECK (kind IN ('create', 'start', 'stop', 'activate', 'deactivate', 'remove',
                                      'switch-volume')),
    status            TEXT NOT NULL CHECK (status IN ('running', 'done', 'rolled-back', 'failed')),
    requested_by      TEXT NOT NULL,
    params            TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(params)),
    owner_pid         INTEGER NOT NULL,
    owner_host        TEXT NOT NULL,
    owner_start_time  TEXT,
    owner_boot_id     TEXT,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    error             TEXT
  ) STRICT;
  INSERT INTO operations_v2 SELECT * FROM operations;
  DROP TABLE operations;
  ALTER TABLE operations_v2 RENAME TO operations;
  CREATE UNIQUE INDEX operations_one_running_per_vm ON operations (vm) WHERE status = 'running';
  CREATE INDEX operations_by_vm ON operations (vm, id);

  -- No row: the original holds the volume (a shared volume is the original's).
  CREATE TABLE volume_holders (
    vm          TEXT NOT NULL,
    vdev        TEXT NOT NULL,
    holder      TEXT NOT NULL CHECK (holder IN ('original', 'clone')),
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (vm, vdev)
  ) STRICT;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;
