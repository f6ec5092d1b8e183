/**
 * Issuing console tickets, in dom0 (vmclone console, and the dashboard's console route).
 * Checks that the clone runs and may be shown, writes the ticket's hash
 * record for the console domain, and audits who asked for which clone.
 */
import type { XlDriver } from '../../xen/index.js';
import { type XsClient, type XsOps, type XsPerm, isXsErrno } from '../../xenstore/index.js';
import { effectiveConfig } from '../config/index.js';
import type { VmName, ZynclonePaths } from '../paths.js';
import type { StateStore } from '../state/index.js';
import { daemonLeaf, vmLeaf } from '../xenstore/layout.js';
import { ConsoleError } from './errors.js';
import {
  CONSOLE_ROOT,
  CONSOLE_URL_NODE,
  MAX_LIVE_TICKETS,
  TICKET_ROOT,
  TICKET_TTL_MS,
  type TicketRecord,
  encodeTicket,
  isTicketHash,
  newTicketToken,
  parseTicket,
  ticketHash,
  ticketId,
  ticketNode,
} from './ticket.js';

export interface TicketIssuerDeps {
  readonly xs: Pick<XsClient, 'transaction'> & XsOps;
  readonly store: Pick<StateStore, 'getClone' | 'recordAudit'>;
  readonly xl: Pick<XlDriver, 'list'>;
  readonly paths: ZynclonePaths;
  readonly now?: () => number;
}

export interface IssuedTicket {
  /** Opening this URL is all a user does. */
  readonly url: string;
  /** The short id the audit and the console monitor's logs use. */
  readonly ticketId: string;
  readonly vm: string;
  readonly cloneName: string;
  readonly cloneUuid: string;
  readonly domid: number;
  readonly port: number;
  readonly expiresAt: number;
}

/** A ticket as vmclone --json and the API show it: one shape for both. */
export function consoleTicketJson(t: IssuedTicket) {
  return {
    url: t.url,
    vm: t.vm,
    cloneName: t.cloneName,
    cloneUuid: t.cloneUuid,
    domid: t.domid,
    ticket: t.ticketId,
    expiresAt: new Date(t.expiresAt).toISOString(),
  };
}

const MISSED_BEATS = 3;

/** Issues a ticket for the console of `vm`'s clone, valid for `ttlMs` and one connection. */
export async function issueConsoleTicket(
  deps: TicketIssuerDeps,
  vm: VmName,
  requestedBy: string,
  opts: { ttlMs?: number } = {},
): Promise<IssuedTicket> {
  const now = deps.now ?? Date.now;
  const { xs } = deps;
  const clone = deps.store.getClone(vm);
  if (!clone) throw new ConsoleError('CONSOLE_NOT_RUNNING', `${vm} has no clone`);
  if (clone.state !== 'running') {
    throw new ConsoleError(
      'CONSOLE_NOT_RUNNING',
      `the clone ${clone.cloneName} of ${vm} is ${clone.state}, not running (vmclone start ${vm})`,
    );
  }
  if (!effectiveConfig(vm, deps.paths).values.console_enabled) {
    throw new ConsoleError(
      'CONSOLE_DISABLED',
      `the console of ${vm}'s clone is disabled (vmclone config ${vm} --set console_enabled=true)`,
    );
  }
  // Independent reads go out together: every round trip is time before the
  // user sees the screen (npm run bench -- console). A monitor that is down
  // is reported after what is wrong with the clone, as before.
  const monitor = monitorUrl(xs, now());
  monitor.catch(() => {});
  const [type, domid] = await Promise.all([
    xs.tryRead(vmLeaf(vm, 'console/type')),
    cloneDomid(deps, vm, clone.cloneName),
  ]);
  if (type === 'spice') {
    throw new ConsoleError(
      'CONSOLE_SPICE',
      `${vm} uses a SPICE console only; the web console shows VNC consoles (a stated limitation)`,
    );
  }
  if (domid === undefined) {
    throw new ConsoleError(
      'CONSOLE_NOT_RUNNING',
      `the clone ${clone.cloneName} of ${vm} has no domain (vmclone status ${vm})`,
    );
  }
  const [vmPath, portText] = await Promise.all([
    xs.tryRead(`/local/domain/${domid}/vm`),
    xs.tryRead(`/local/domain/${domid}/console/vnc-port`),
  ]);
  const cloneUuid = uuidOf(vmPath);
  if (cloneUuid === undefined || (clone.cloneUuid !== null && clone.cloneUuid !== cloneUuid)) {
    throw new ConsoleError(
      'CONSOLE_NOT_RUNNING',
      `domain ${domid} (${clone.cloneName}) is not the clone recorded for ${vm}`,
    );
  }
  const port = Number(portText);
  if (portText === undefined || !/^[0-9]{1,5}$/.test(portText) || port < 1 || port > 65535) {
    throw new ConsoleError(
      'CONSOLE_NO_VNC',
      `the clone ${clone.cloneName} of ${vm} has no VNC console (no valid console/vnc-port of domain ${domid}); ` +
        `its configuration needs vnc=1 (HVM) or vfb=['vnc=1'] (PV)`,
    );
  }
  const baseUrl = await monitor;

  const issuedAt = now();
  const token = newTicketToken();
  const hash = ticketHash(token);
  const record: TicketRecord = {
    vm,
    cloneName: clone.cloneName,
    cloneUuid,
    domid,
    port,
    issuedAt,
    expiresAt: issuedAt + (opts.ttlMs ?? TICKET_TTL_MS),
    requestedBy,
  };
  const [live, perms] = await Promise.all([sweepExpiredTickets(xs, issuedAt), ticketPerms(xs)]);
  if (live >= MAX_LIVE_TICKETS) {
    throw new ConsoleError(
      'CONSOLE_TICKET_LIMIT',
      `${live} console tickets are outstanding; wait a minute for them to expire`,
    );
  }
  await xs.transaction(async (tx) => {
    await tx.mkdir(TICKET_ROOT);
    await tx.setPerms(TICKET_ROOT, [{ domid: 0, access: 'none' }]);
    await tx.write(ticketNode(hash), encodeTicket(record));
    await tx.setPerms(ticketNode(hash), perms);
  });
  const id = ticketId(hash);
  deps.store.recordAudit({
    who: requestedBy,
    action: 'console.ticket',
    vm,
    outcome: 'issued',
    detail: {
      ticket: id,
      cloneName: clone.cloneName,
      cloneUuid,
      domid,
      port,
      expiresAt: record.expiresAt,
    },
  });
  return {
    url: `${baseUrl}/console/${encodeURIComponent(vm)}#ticket=${token}`,
    ticketId: id,
    vm,
    cloneName: clone.cloneName,
    cloneUuid,
    domid,
    port,
    expiresAt: record.expiresAt,
  };
}

/**
 * The clone's domid as clone_monitor published it, if libxl's dom0-owned
 * name node confirms it; otherwise (a reboot clone_monitor has not caught up
 * with) from xl. XenStore first: it answers in a round trip, xl is a process.
 */
async function cloneDomid(
  deps: TicketIssuerDeps,
  vm: string,
  cloneName: string,
): Promise<number | undefined> {
  const published = await deps.xs.tryRead(vmLeaf(vm, 'clone-domid'));
  if (published !== undefined && /^[0-9]{1,5}$/.test(published)) {
    const name = await deps.xs.tryRead(`/local/domain/${published}/name`);
    if (name === cloneName) return Number(published);
  }
  return (await deps.xl.list()).find((d) => d.name === cloneName)?.domid;
}

function uuidOf(vmPath: string | undefined): string | undefined {
  const m = /^\/vm\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/.exec(
    vmPath ?? '',
  );
  return m?.[1];
}

/** The URL clone_console_monitor serves, if it runs (fresh heartbeat). */
async function monitorUrl(xs: XsOps, now: number): Promise<string> {
  const [url, beat, beatMs] = await Promise.all([
    xs.tryRead(CONSOLE_URL_NODE),
    xs.tryRead(daemonLeaf('console-monitor', 'heartbeat')),
    xs.tryRead(daemonLeaf('console-monitor', 'heartbeat-ms')),
  ]);
  const interval = /^[0-9]+$/.test(beatMs ?? '') ? Number(beatMs) : 5000;
  const age = now - Number(beat);
  if (url === undefined || !/^https?:\/\/[\x21-\x7e]+$/.test(url)) {
    throw new ConsoleError(
      'CONSOLE_MONITOR_DOWN',
      `clone_console_monitor has not published its URL (${CONSOLE_URL_NODE}); is it running? (systemctl status zynclone-console-monitor)`,
    );
  }
  if (!/^[0-9]+$/.test(beat ?? '') || age > MISSED_BEATS * interval) {
    throw new ConsoleError(
      'CONSOLE_MONITOR_DOWN',
      `clone_console_monitor's heartbeat is ${beat === undefined ? 'absent' : `${Math.round(age / 1000)} s old`}; is it running? (systemctl status zynclone-console-monitor)`,
    );
  }
  return url.replace(/\/+$/, '');
}

/**
 * Ticket nodes are readable by the console domain only: the domain that
 * clone_monitor gave write access to console/ (docs/xenstore-contract.md).
 * Without that node, only dom0 reads them.
 */
export async function ticketPerms(xs: XsOps): Promise<XsPerm[]> {
  const perms: XsPerm[] = [{ domid: 0, access: 'none' }];
  let consolePerms: XsPerm[] = [];
  try {
    consolePerms = await xs.getPerms(CONSOLE_ROOT);
  } catch (err) {
    if (!isXsErrno(err, 'ENOENT')) throw err;
  }
  const consoleDomain = consolePerms.find((p, i) => i > 0 && p.domid !== 0 && p.access === 'both');
  if (consoleDomain) perms.push({ domid: consoleDomain.domid, access: 'read' });
  return perms;
}

/** Removes expired or unreadable ticket nodes; returns how many live ones remain. */
export async function sweepExpiredTickets(xs: XsOps, now: number): Promise<number> {
  let names: string[];
  try {
    names = await xs.directory(TICKET_ROOT);
  } catch (err) {
    if (isXsErrno(err, 'ENOENT')) return 0;
    throw err;
  }
  let live = 0;
  for (const name of names) {
    const path = `${TICKET_ROOT}/${name}`;
    let expired = !isTicketHash(name);
    if (!expired) {
      const text = await xs.tryRead(path);
      try {
        expired = text === undefined || parseTicket(text).expiresAt <= now;
      } catch {
        expired = true;
      }
    }
    if (expired) await xs.rm(path).catch(() => {});
    else live++;
  }
  return live;
}
