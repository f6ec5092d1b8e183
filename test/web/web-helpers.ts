// A `zynclone web` server on a simulated host, and an HTTP client that logs in
// as a browser does (session cookie, CSRF token, fresh request ids).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { zynclonePaths } from '../../src/core/paths.js';
import { createLogger } from '../../src/daemons/common/log.js';
import { type WebServer, startWebServer } from '../../src/web/server.js';
import type { CloneHost } from '../e2e/clone-helpers.js';

export async function startWeb(
  host: CloneHost,
  extra: { tls?: { cert: string; key: string }; host?: string; netns?: string } = {},
): Promise<WebServer> {
  const env = host.env;
  return startWebServer({
    paths: zynclonePaths(host.root),
    xenstorePath: env.XENSTORED_PATH!,
    env,
    host: extra.host ?? '127.0.0.1',
    port: 0,
    ...(extra.tls ? { tls: extra.tls } : {}),
    ...(extra.netns ? { netns: extra.netns } : {}),
    log: createLogger('web', { level: 'error' }),
  });
}

export function adminToken(host: CloneHost): string {
  return readFileSync(join(host.root, 'var/lib/zynclone/web/admin-token'), 'utf8').trim();
}

export function requestId(): string {
  return randomBytes(18).toString('base64url');
}

export interface Reply {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

/** A logged-in browser session, or a Bearer client. */
export class WebClient {
  constructor(
    readonly base: string,
    readonly auth: { cookie: string; csrf: string } | { bearer: string } | undefined,
  ) {}

  static async login(base: string, token: string): Promise<WebClient> {
    const r = await fetch(new URL('/login', base), {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    if (r.status !== 200) throw new Error(`login failed: ${r.status} ${await r.text()}`);
    const cookie = r.headers.get('set-cookie')!.split(';')[0]!;
    const { csrfToken } = (await r.json()) as { csrfToken: string };
    return new WebClient(base, { cookie, csrf: csrfToken });
  }

  async request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Reply> {
    const h: Record<string, string> = { Accept: 'application/json' };
    if (this.auth && 'cookie' in this.auth) {
      h.Cookie = this.auth.cookie;
      if (method !== 'GET') {
        h['X-CSRF-Token'] = this.auth.csrf;
        h['X-Request-Id'] = requestId();
      }
    } else if (this.auth) {
      h.Authorization = `Bearer ${this.auth.bearer}`;
    }
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const r = await fetch(new URL(path, this.base), {
      method,
      headers: { ...h, ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      redirect: 'manual',
    });
    const text = await r.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: r.status, headers: r.headers, body: parsed, text };
  }

  get(path: string) {
    return this.request('GET', path);
  }
  post(path: string, body?: unknown) {
    return this.request('POST', path, body);
  }
}

export function errorCode(r: Reply): string | undefined {
  return (r.body as { error?: { code?: string } } | undefined)?.error?.code;
}
