/**
 * Login for the dashboard and the API. One admin token, created 0600 under
 * the ZynClone root at first start (PAM would need a native addon and a
 * setuid helper or root; the token works the same on every host and in the
 * simulator). A login trades the token for a session cookie (HttpOnly,
 * SameSite=Strict); every state-changing request of a session carries the
 * session's CSRF token and a fresh request id, so a cross-site or replayed
 * request is refused. Scripts may send the token as a Bearer credential
 * instead: a browser never adds that header on its own, so no CSRF applies.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ZynclonePaths } from '../core/paths.js';
import { WebError } from './errors.js';

export const SESSION_COOKIE = 'zc_session';
export const CSRF_HEADER = 'x-csrf-token';
export const REQUEST_ID_HEADER = 'x-request-id';

/** Where the tokens live: `<root>/var/lib/zynclone/web/`. */
export function tokenFiles(paths: ZynclonePaths): { admin: string; metrics: string } {
  const dir = join(paths.stateDir, 'web');
  return { admin: join(dir, 'admin-token'), metrics: join(dir, 'metrics-token') };
}

/**
 * Reads the token in `file`, creating it (0600, in a 0700 directory) when
 * missing. A token file others can read is refused: anyone on the host could
 * log in.
 */
export function ensureToken(file: string): string {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(file, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new Error(
      `${file} is readable by others (mode ${mode.toString(8)}); run chmod 600 ${file}`,
    );
  }
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16) throw new Error(`${file} holds no usable token (16 characters at least)`);
  chmodSync(file, 0o600);
  return token;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Constant-time comparison of a presented secret with the expected one. */
export function sameSecret(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

interface Session {
  readonly id: string;
  readonly csrf: string;
  readonly remote: string;
  expiresAt: number;
  /** Request ids already used: a request seen twice is a replay. */
  readonly usedRequestIds: Set<string>;
}

export interface SessionInfo {
  readonly csrf: string;
  readonly remote: string;
}

const MAX_REQUEST_IDS = 10_000;
const REQUEST_ID_RE = /^[A-Za-z0-9_-]{16,128}$/;

export class Sessions {
  private readonly byId = new Map<string, Session>();

  constructor(
    private readonly ttlMs = 12 * 3600_000,
    private readonly now: () => number = Date.now,
  ) {}

  create(remote: string): { id: string; csrf: string } {
    this.sweep();
    const s: Session = {
      id: randomBytes(32).toString('base64url'),
      csrf: randomBytes(32).toString('base64url'),
      remote,
      expiresAt: this.now() + this.ttlMs,
      usedRequestIds: new Set(),
    };
    this.byId.set(s.id, s);
    return { id: s.id, csrf: s.csrf };
  }

  /** The live session of this cookie value (sliding expiry), or undefined. */
  get(id: string | undefined): SessionInfo | undefined {
    if (id === undefined) return undefined;
    const s = this.byId.get(id);
    if (!s) return undefined;
    if (s.expiresAt <= this.now()) {
      this.byId.delete(id);
      return undefined;
    }
    s.expiresAt = this.now() + this.ttlMs;
    return { csrf: s.csrf, remote: s.remote };
  }

  /**
   * Checks a state-changing request of a session: the CSRF token must match
   * and the request id must be new. Throws WebError otherwise.
   */
  checkMutation(id: string, csrf: string | undefined, requestId: string | undefined): void {
    const s = this.byId.get(id);
    if (!s) throw new WebError('AUTH_REQUIRED', 401, 'log in first: the session is gone');
    if (csrf === undefined || !sameSecret(csrf, s.csrf)) {
      throw new WebError(
        'CSRF_FAILED',
        403,
        `a state-changing request needs the session's CSRF token in ${CSRF_HEADER}`,
      );
    }
    if (requestId === undefined || !REQUEST_ID_RE.test(requestId)) {
      throw new WebError(
        'CSRF_FAILED',
        403,
        `a state-changing request needs a fresh random ${REQUEST_ID_HEADER} (16-128 characters of A-Z a-z 0-9 _ -)`,
      );
    }
    if (s.usedRequestIds.has(requestId)) {
      throw new WebError(
        'REQUEST_REPLAYED',
        403,
        `request id ${requestId} was used before; a replayed request is refused`,
      );
    }
    if (s.usedRequestIds.size >= MAX_REQUEST_IDS) {
      // Oldest first: a Set iterates in insertion order.
      const oldest = s.usedRequestIds.values().next().value;
      if (oldest !== undefined) s.usedRequestIds.delete(oldest);
    }
    s.usedRequestIds.add(requestId);
  }

  destroy(id: string | undefined): void {
    if (id !== undefined) this.byId.delete(id);
  }

  private sweep(): void {
    const t = this.now();
    for (const [id, s] of this.byId) if (s.expiresAt <= t) this.byId.delete(id);
  }
}

/**
 * Failed logins per client address in a sliding window. A client over the
 * limit is refused before its token is even compared.
 */
export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly maxFailures = 5,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until `client` may try again, or 0. */
  retryAfter(client: string): number {
    const recent = this.recent(client);
    if (recent.length < this.maxFailures) return 0;
    return Math.max(1, Math.ceil((recent[0]! + this.windowMs - this.now()) / 1000));
  }

  fail(client: string): void {
    this.failures.set(client, [...this.recent(client), this.now()]);
  }

  succeed(client: string): void {
    this.failures.delete(client);
  }

  private recent(client: string): number[] {
    const t = this.now();
    const kept = (this.failures.get(client) ?? []).filter((at) => at > t - this.windowMs);
    if (kept.length === 0) this.failures.delete(client);
    else this.failures.set(client, kept);
    return kept;
  }
}
