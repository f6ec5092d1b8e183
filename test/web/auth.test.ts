// The web login's parts: the token file, sessions (CSRF, replay, expiry), the login limiter.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LoginLimiter, Sessions, ensureToken } from '../../src/web/auth.js';

const ID = 'A'.repeat(24);

describe('admin token file', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const file = () => {
    const d = mkdtempSync(join(tmpdir(), 'zc-token-'));
    dirs.push(d);
    return join(d, 'web/admin-token');
  };

  it('is created 0600 in a 0700 directory, once', () => {
    const f = file();
    const token = ensureToken(f);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(statSync(join(f, '..')).mode & 0o777).toBe(0o700);
    expect(ensureToken(f)).toBe(token);
    expect(readFileSync(f, 'utf8').trim()).toBe(token);
  });

  it('is refused when others may read it, or too short to be a secret', () => {
    const f = file();
    ensureToken(f);
    chmodSync(f, 0o644);
    expect(() => ensureToken(f)).toThrow(/readable by others \(mode 644\); run chmod 600/);
    writeFileSync(f, 'short\n', { mode: 0o600 });
    chmodSync(f, 0o600);
    expect(() => ensureToken(f)).toThrow(/no usable token/);
  });
});

describe('sessions', () => {
  it('accept a mutation with the CSRF token and a new request id, once', () => {
    const sessions = new Sessions();
    const s = sessions.create('127.0.0.1');
    expect(() => sessions.checkMutation(s.id, s.csrf, ID)).not.toThrow();
    expect(() => sessions.checkMutation(s.id, s.csrf, ID)).toThrow(
      expect.objectContaining({ code: 'REQUEST_REPLAYED', status: 403 }),
    );
    expect(() => sessions.checkMutation(s.id, 'forged', `${ID}B`)).toThrow(
      expect.objectContaining({ code: 'CSRF_FAILED' }),
    );
    expect(() => sessions.checkMutation(s.id, s.csrf, undefined)).toThrow(/X-Request-Id/i);
    expect(() => sessions.checkMutation(s.id, s.csrf, 'short')).toThrow(/16-128 characters/);
  });

  it('expire after their idle time and on logout', () => {
    let now = 1000;
    const sessions = new Sessions(60_000, () => now);
    const a = sessions.create('127.0.0.1');
    const b = sessions.create('127.0.0.1');
    now += 59_000;
    expect(sessions.get(a.id)).toBeDefined();
    now += 59_000;
    expect(sessions.get(a.id)).toBeDefined();
    expect(sessions.get(b.id)).toBeUndefined();
    sessions.destroy(a.id);
    expect(sessions.get(a.id)).toBeUndefined();
    expect(() => sessions.checkMutation(a.id, a.csrf, ID)).toThrow(
      expect.objectContaining({ code: 'AUTH_REQUIRED', status: 401 }),
    );
  });
});

describe('login limiter', () => {
  it('refuses a client after 5 failures in a minute, until the oldest ages out', () => {
    let now = 0;
    const limiter = new LoginLimiter(5, 60_000, () => now);
    for (let i = 0; i < 5; i++) {
      expect(limiter.retryAfter('a')).toBe(0);
      limiter.fail('a');
      now += 1000;
    }
    expect(limiter.retryAfter('a')).toBe(55);
    expect(limiter.retryAfter('b')).toBe(0);
    now = 60_001;
    expect(limiter.retryAfter('a')).toBe(0);
    limiter.fail('a');
    limiter.succeed('a');
    expect(limiter.retryAfter('a')).toBe(0);
  });
});
