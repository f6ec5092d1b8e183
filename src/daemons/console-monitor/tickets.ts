// Redeeming console tickets: each is good for one WebSocket upgrade. A spent
// ticket is remembered here and published under console/redeemed/, so a
// restarted monitor refuses it too; both forget it once it has expired.
import {
  REDEEMED_ROOT,
  type TicketRecord,
  isTicketHash,
  isTicketToken,
  parseTicket,
  ticketHash,
  ticketNode,
} from '../../core/console/index.js';
import { type XsOps, isXsErrno } from '../../xenstore/index.js';

export type Refusal = { status: 401 | 403; code: string; message: string };

export type Redemption =
  | { ok: true; hash: string; ticket: TicketRecord }
  | ({ ok: false } & Refusal);

const refuse = (status: 401 | 403, code: string, message: string): Redemption => ({
  ok: false,
  status,
  code,
  message,
});

export class TicketBook {
  /** hash -> when it may be forgotten (ms since the epoch). */
  private readonly spent = new Map<string, number>();

  constructor(
    private readonly xs: XsOps,
    private readonly now: () => number = Date.now,
  ) {}

  /** Loads the tickets a previous run spent. */
  async load(): Promise<void> {
    let names: string[] = [];
    try {
      names = await this.xs.directory(REDEEMED_ROOT);
    } catch (err) {
      if (!isXsErrno(err, 'ENOENT')) throw err;
    }
    for (const hash of names) {
      if (!isTicketHash(hash)) continue;
      const until = Number(await this.xs.tryRead(`${REDEEMED_ROOT}/${hash}`));
      // Unreadable: keep it an hour, the longest a ticket can live.
      this.spent.set(hash, Number.isSafeInteger(until) ? until : this.now() + 3_600_000);
    }
  }

  /**
   * Spends the ticket `token` for the console of `vm`. Every check after the
   * first sight of a real ticket counts as its one use: a refused ticket is
   * not tried again.
   */
  async redeem(token: string | null, vm: string): Promise<Redemption> {
    if (token === null || token === '') {
      return refuse(401, 'TICKET_MISSING', 'no console ticket in the request; run vmclone console');
    }
    if (!isTicketToken(token)) {
      return refuse(401, 'TICKET_UNKNOWN', 'no such console ticket');
    }
    const hash = ticketHash(token);
    if (this.spent.has(hash)) {
      return refuse(
        403,
        'TICKET_USED',
        'this console ticket was used already; run vmclone console for a new one',
      );
    }
    // Claimed before the first await: two upgrades racing with one ticket get one console.
    this.spent.set(hash, this.now() + 3_600_000);
    let raw: string | undefined;
    try {
      raw = await this.xs.tryRead(ticketNode(hash));
    } catch (err) {
      this.spent.delete(hash);
      if (isXsErrno(err, 'EACCES')) {
        return refuse(401, 'TICKET_UNKNOWN', 'no such console ticket (not readable here)');
      }
      throw err;
    }
    if (raw === undefined) {
      this.spent.delete(hash);
      return refuse(401, 'TICKET_UNKNOWN', 'no such console ticket');
    }
    let ticket: TicketRecord;
    try {
      ticket = parseTicket(raw);
    } catch (err) {
      return refuse(401, 'TICKET_UNKNOWN', `unusable console ticket: ${(err as Error).message}`);
    }
    this.spent.set(hash, ticket.expiresAt);
    await this.xs.write(`${REDEEMED_ROOT}/${hash}`, String(ticket.expiresAt));
    if (ticket.expiresAt <= this.now()) {
      return refuse(
        403,
        'TICKET_EXPIRED',
        `this console ticket expired at ${new Date(ticket.expiresAt).toISOString()}; run vmclone console ${ticket.vm} again`,
      );
    }
    if (ticket.vm !== vm) {
      return refuse(
        403,
        'TICKET_OTHER_CLONE',
        `this console ticket is for the clone of ${ticket.vm}, not of ${vm}`,
      );
    }
    return { ok: true, hash, ticket };
  }

  /** Forgets expired tickets, here and in XenStore. */
  async sweep(): Promise<void> {
    const now = this.now();
    for (const [hash, until] of this.spent) {
      if (until > now) continue;
      this.spent.delete(hash);
      await this.xs.rm(`${REDEEMED_ROOT}/${hash}`).catch(() => {});
    }
  }
}
