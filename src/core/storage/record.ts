import { isAbsolute } from 'node:path';
import { StorageError } from './errors.js';
import type { SnapshotPlan, SnapshotRecord } from './types.js';

const FORMATS = ['raw', 'qcow2', 'qcow', 'qed', 'vhd'];

/**
 * Checks a value read back from the journal (JSON.parse output) and returns it
 * as a plan. Strict: a damaged record must not make remove() delete the wrong file.
 */
export function parseSnapshotPlan(value: unknown): SnapshotPlan {
  const o = object(value);
  const str = (key: string): string => {
    const v = o[key];
    if (typeof v !== 'string' || v === '') fail(`"${key}" must be a non-empty string`);
    return v as string;
  };
  const path = (key: string): string => {
    const v = str(key);
    if (!isAbsolute(v) || v.includes('\0')) fail(`"${key}" must be an absolute path`);
    return v;
  };
  const format = (key: string) => {
    const v = str(key);
    if (!FORMATS.includes(v)) fail(`"${key}" is not a disk format`);
    return v as SnapshotPlan['format'];
  };
  const base = {
    vdev: str('vdev'),
    source: path('source'),
    dest: path('dest'),
    format: format('format'),
    reason: typeof o.reason === 'string' ? o.reason : '',
  };
  if (base.source === base.dest) fail('"dest" equals "source"');
  switch (o.backend) {
    case 'reflink':
      return { ...base, backend: 'reflink' };
    case 'copy': {
      const bytes = o.bytes;
      if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) {
        fail('"bytes" must be a non-negative integer');
      }
      return { ...base, backend: 'copy', bytes: bytes as number };
    }
    case 'qcow2-overlay':
      return { ...base, backend: 'qcow2-overlay', backingFormat: format('backingFormat') };
    case 'lvm-thin':
    case 'lvm-classic': {
      const lvm = { ...base, vg: str('vg'), lv: str('lv'), name: str('name') };
      if (lvm.name === lvm.lv) fail('"name" equals the original "lv"');
      if (o.backend === 'lvm-thin') return { ...lvm, backend: 'lvm-thin' };
      return { ...lvm, backend: 'lvm-classic', size: str('size') };
    }
    default:
      return fail(`unknown backend ${JSON.stringify(o.backend)}`);
  }
}

/** As parseSnapshotPlan, for a record of a snapshot that was made. */
export function parseSnapshotRecord(value: unknown): SnapshotRecord {
  const plan = parseSnapshotPlan(value);
  const o = object(value);
  if (typeof o.createdAt !== 'string' || Number.isNaN(Date.parse(o.createdAt))) {
    fail('"createdAt" must be an ISO-8601 time');
  }
  if (typeof o.tookMs !== 'number' || !(o.tookMs >= 0)) fail('"tookMs" must be a number >= 0');
  return { ...plan, createdAt: o.createdAt as string, tookMs: o.tookMs as number };
}

function object(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail('not a JSON object');
  }
  return value as Record<string, unknown>;
}

function fail(message: string): never {
  throw new StorageError('STORAGE_BAD_RECORD', `invalid snapshot record: ${message}`);
}
