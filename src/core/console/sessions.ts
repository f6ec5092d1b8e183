/**
 * Console session records: clone_console_monitor publishes one under
 * console/sessions/ when a ticket is redeemed and rewrites it when the session
 * closes; dom0 (clone_monitor) copies closed ones into the state store's
 * audit and removes them. At least once: a crash between the two may record a
 * session twice, never lose one.
 */
import { type XsOps, isXsErrno } from '../../xenstore/index.js';
import { validateVmName } from '../paths.js';
import type { StateStore } from '../state/index.js';
import { REQUESTER_PATTERN } from '../state/types.js';
import { SESSIONS_ROOT } from './ticket.js';

export interface SessionRecord {
  readonly id: string;
  /** The ticket's short id (ticketId), as in the `console.ticket` audit entry. */
  readonly ticket: string;
  readonly vm: string;
  readonly cloneName: string;
  readonly cloneUuid: string;
  readonly requestedBy: string;
  /** The browser's address as the monitor saw it. */
  readonly remote: string;
  readonly openedAt: number;
  readonly closedAt?: number;
  /** VNC connections made through the session (reconnects after a reboot count). */
  readonly connections: number;
  readonly bytesToBrowser: number;
  readonly bytesToVnc: number;
  readonly closeReason?: string;
}

const SESSION_ID = /^[0-9a-f]{16}$/;

export function sessionNode(id: string): string {
  if (!SESSION_ID.test(id)) throw new Error(`not a session id: ${JSON.stringify(id)}`);
  return `${SESSIONS_ROOT}/${id}`;
}

export function encodeSession(s: SessionRecord): string {
  return JSON.stringify(s);
}

const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const text = (v: unknown, max: number) => typeof v === 'string' && v.length <= max;

/** Parses a session record; undefined for anything the monitor would not write. */
export function parseSession(id: string, raw: string): SessionRecord | undefined {
  if (!SESSION_ID.test(id) || raw.length > 2048) return undefined;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null || o.id !== id) return undefined;
  if (!text(o.ticket, 16) || !text(o.cloneUuid, 36) || !text(o.remote, 64)) return undefined;
  if (!text(o.requestedBy, 80) || !REQUESTER_PATTERN.test(o.requestedBy as string)) {
    return undefined;
  }
  try {
    validateVmName(o.vm);
    validateVmName(o.cloneName);
  } catch {
    return undefined;
  }
  if (!count(o.openedAt) || !count(o.connections)) return undefined;
  if (!count(o.bytesToBrowser) || !count(o.bytesToVnc)) return undefined;
  if (o.closedAt !== undefined && !count(o.closedAt)) return undefined;
  if (o.closeReason !== undefined && !text(o.closeReason, 200)) return undefined;
  return o as unknown as SessionRecord;
}

/**
 * Every record under console/sessions/: its id, node and parsed record
 * (`undefined` when malformed). Records that vanish while read are skipped.
 */
export async function readSessionRecords(
  xs: Pick<XsOps, 'directory' | 'tryRead'>,
): Promise<{ id: string; path: string; record: SessionRecord | undefined }[]> {
  let ids: string[];
  try {
    ids = await xs.directory(SESSIONS_ROOT);
  } catch (err) {
    if (isXsErrno(err, 'ENOENT')) return [];
    throw err;
  }
  const out = [];
  for (const id of ids) {
    const path = `${SESSIONS_ROOT}/${id}`;
    const raw = await xs.tryRead(path);
    if (raw !== undefined) out.push({ id, path, record: parseSession(id, raw) });
  }
  return out;
}

/**
 * Copies closed session records into the audit (`console.session`) and
 * removes them; open ones stay. Returns how many were recorded.
 */
export async function importConsoleSessions(
  xs: XsOps,
  store: Pick<StateStore, 'recordAudit'>,
): Promise<number> {
  let recorded = 0;
  for (const { id, path, record: s } of await readSessionRecords(xs)) {
    if (s === undefined) {
      store.recordAudit({
        who: 'system:console-monitor',
        action: 'console.session',
        outcome: 'malformed record dropped',
        detail: { id: id.slice(0, 64) },
      });
      await xs.rm(path).catch(() => {});
      continue;
    }
    if (s.closedAt === undefined) continue;
    store.recordAudit({
      who: s.requestedBy,
      action: 'console.session',
      vm: s.vm,
      outcome: 'closed',
      detail: {
        session: s.id,
        ticket: s.ticket,
        cloneName: s.cloneName,
        cloneUuid: s.cloneUuid,
        remote: s.remote,
        openedAt: new Date(s.openedAt).toISOString(),
        closedAt: new Date(s.closedAt).toISOString(),
        connections: s.connections,
        bytesToBrowser: s.bytesToBrowser,
        bytesToVnc: s.bytesToVnc,
        closeReason: s.closeReason ?? null,
      },
    });
    recorded++;
    await xs.rm(path).catch(() => {});
  }
  return recorded;
}
