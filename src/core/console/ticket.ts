/**
 * Console tickets (docs/xenstore-contract.md, "Console"): a random secret the
 * user holds in a URL, and in XenStore only its SHA-256, under a node that dom0
 * writes and only the console domain reads. The record binds the ticket to one
 * incarnation of one clone: VM, clone UUID, domid and VNC port.
 */
import { createHash, randomBytes } from 'node:crypto';
import { validateVmName } from '../paths.js';
import { REQUESTER_PATTERN } from '../state/types.js';
import { ConsoleError } from './errors.js';

import { TICKET_ROOT } from '../xenstore/layout.js';

export {
  CONSOLE_ROOT,
  CONSOLE_URL_NODE,
  REDEEMED_ROOT,
  SESSIONS_ROOT,
  TICKET_ROOT,
  ZC_ROOT,
} from '../xenstore/layout.js';

export const TICKET_TTL_MS = 60_000;
/** Outstanding (unexpired) tickets at most; more is a runaway script, not a user. */
export const MAX_LIVE_TICKETS = 256;

const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;
const HASH_RE = /^[0-9a-f]{64}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface TicketRecord {
  readonly vm: string;
  readonly cloneName: string;
  readonly cloneUuid: string;
  readonly domid: number;
  readonly port: number;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly requestedBy: string;
}

/** 256 random bits, base64url: what the user's URL carries. */
export function newTicketToken(): string {
  return randomBytes(32).toString('base64url');
}

export function isTicketToken(text: string): boolean {
  return TOKEN_RE.test(text);
}

export function isTicketHash(text: string): boolean {
  return HASH_RE.test(text);
}

export function ticketHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function ticketNode(hash: string): string {
  if (!isTicketHash(hash)) throw new Error(`not a ticket hash: ${JSON.stringify(hash)}`);
  return `${TICKET_ROOT}/${hash}`;
}

/** The short id that logs, session records and the audit use for a ticket. */
export function ticketId(hash: string): string {
  return hash.slice(0, 16);
}

export function encodeTicket(t: TicketRecord): string {
  return JSON.stringify({
    vm: t.vm,
    cloneName: t.cloneName,
    cloneUuid: t.cloneUuid,
    domid: t.domid,
    port: t.port,
    issuedAt: t.issuedAt,
    expiresAt: t.expiresAt,
    requestedBy: t.requestedBy,
  });
}

function malformed(why: string): ConsoleError {
  return new ConsoleError('CONSOLE_TICKET_MALFORMED', `console ticket record ${why}`);
}

const isInt = (v: unknown, min: number, max: number): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;

/** Parses a ticket node strictly; throws CONSOLE_TICKET_MALFORMED naming the bad field. */
export function parseTicket(text: string): TicketRecord {
  if (text.length > 2048) throw malformed('is longer than 2048 bytes');
  let o: Record<string, unknown>;
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    o = v as Record<string, unknown>;
  } catch {
    throw malformed('is not a JSON object');
  }
  const str = (k: string): string => {
    const v = o[k];
    if (typeof v !== 'string') throw malformed(`has no string field ${k}`);
    return v;
  };
  const vm = str('vm');
  const cloneName = str('cloneName');
  try {
    validateVmName(vm);
    validateVmName(cloneName);
  } catch {
    throw malformed('names an invalid VM or clone');
  }
  const cloneUuid = str('cloneUuid');
  if (!UUID_RE.test(cloneUuid)) throw malformed('has an invalid cloneUuid');
  const requestedBy = str('requestedBy');
  if (!REQUESTER_PATTERN.test(requestedBy)) throw malformed('has an invalid requestedBy');
  const { domid, port, issuedAt, expiresAt } = o;
  if (!isInt(domid, 1, 32751)) throw malformed('has an invalid domid');
  if (!isInt(port, 1, 65535)) throw malformed('has an invalid port');
  if (!isInt(issuedAt, 0, Number.MAX_SAFE_INTEGER)) throw malformed('has an invalid issuedAt');
  if (!isInt(expiresAt, issuedAt, issuedAt + 3_600_000)) {
    throw malformed('has an invalid expiresAt');
  }
  return { vm, cloneName, cloneUuid, domid, port, issuedAt, expiresAt, requestedBy };
}
