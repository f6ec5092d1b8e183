/**
 * The whole HTTP surface: the login page, the dashboard and its bundle, the
 * API under /api/v1, and /metrics. Nothing but the login page (and the
 * OpenAPI document) is served to a client without credentials.
 */
import { getConnInfo } from '@hono/node-server/conninfo';
import { Hono } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { type ApiDeps, type WebEnv, buildApi } from './api.js';
import {
  CSRF_HEADER,
  LoginLimiter,
  REQUEST_ID_HEADER,
  SESSION_COOKIE,
  Sessions,
  sameSecret,
} from './auth.js';
import { WebError, errorResponse } from './errors.js';
import type { WebMetrics } from './metrics.js';
import { dashboardHtml, loginHtml } from './page/html.js';

export interface AppOptions extends ApiDeps {
  readonly adminToken: string;
  readonly metricsToken: string;
  readonly metrics: WebMetrics;
  /** The browser bundle of the dashboard (bundle.ts). */
  readonly bundle: () => Promise<string>;
  /** Served over TLS: cookies get `Secure`. */
  readonly tls: boolean;
}

/** Everything that is not one of these reads, and must prove it is not cross-site. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const ADMIN: string = 'user:web-admin';

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cache-Control': 'no-store',
};

function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** A request a browser made on behalf of another site (Fetch metadata, else Origin vs Host). */
function crossSite(req: Request): boolean {
  const site = req.headers.get('sec-fetch-site');
  if (site !== null) return site !== 'same-origin' && site !== 'none';
  const origin = req.headers.get('origin');
  if (origin === null) return false;
  try {
    return new URL(origin).host !== req.headers.get('host');
  } catch {
    return true;
  }
}

export function buildApp(o: AppOptions): Hono<WebEnv> {
  const sessions = new Sessions();
  const limiter = new LoginLimiter();
  const app = new Hono<WebEnv>();
  const audit = (action: string, outcome: string, remote: string) =>
    o.host.store.recordAudit({ who: ADMIN, action, outcome, detail: { remote } });

  app.onError((err, c) => {
    const { status, body } = errorResponse(err);
    if (err instanceof WebError && err.code === 'LOGIN_RATE_LIMITED') {
      c.header('Retry-After', String(limiter.retryAfter(c.get('remote'))));
    }
    return c.json(body, status as 500);
  });
  app.notFound((c) =>
    c.json(
      errorResponse(new WebError('REQUEST_INVALID', 404, `no route ${c.req.method} ${c.req.path}`))
        .body,
      404,
    ),
  );

  app.use('*', async (c, next) => {
    c.set('remote', getConnInfo(c).remote.address ?? 'unknown');
    await next();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.header(k, v);
  });

  // Who is asking: a session cookie or the admin token as a Bearer credential.
  app.use('*', async (c, next) => {
    const authz = c.req.header('authorization');
    const session = sessions.get(getCookie(c, SESSION_COOKIE));
    if (authz?.startsWith('Bearer ') && sameSecret(authz.slice(7).trim(), o.adminToken)) {
      c.set('who', ADMIN);
      c.set('csrf', null);
    } else if (session) {
      c.set('who', ADMIN);
      c.set('csrf', session.csrf);
      if (!SAFE_METHODS.has(c.req.method) && c.req.path !== '/login') {
        if (crossSite(c.req.raw)) {
          throw new WebError('CSRF_FAILED', 403, 'cross-site request refused');
        }
        sessions.checkMutation(
          getCookie(c, SESSION_COOKIE)!,
          c.req.header(CSRF_HEADER),
          c.req.header(REQUEST_ID_HEADER),
        );
      }
    }
    await next();
  });

  app.use('/api/*', async (c, next) => {
    if (c.get('who') === undefined && c.req.path !== '/api/v1/openapi.json') {
      throw new WebError(
        'AUTH_REQUIRED',
        401,
        'log in first (POST /login), or send the admin token as a Bearer credential',
      );
    }
    await next();
  });

  app.get('/login', (c) => c.html(loginHtml()));
  app.post('/login', async (c) => {
    const remote = c.get('remote');
    if (crossSite(c.req.raw)) throw new WebError('CSRF_FAILED', 403, 'cross-site login refused');
    const wait = limiter.retryAfter(remote);
    if (wait > 0) {
      audit('web.login', 'LOGIN_RATE_LIMITED', remote);
      throw new WebError(
        'LOGIN_RATE_LIMITED',
        429,
        `too many failed logins; try again in ${wait} s`,
      );
    }
    const form = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>);
    const token = typeof form.token === 'string' ? form.token.trim() : '';
    const wantsJson = (c.req.header('accept') ?? '').includes('application/json');
    if (!sameSecret(token, o.adminToken)) {
      limiter.fail(remote);
      audit('web.login', 'AUTH_FAILED', remote);
      if (wantsJson) throw new WebError('AUTH_FAILED', 401, 'wrong token');
      return c.html(loginHtml('Wrong token.'), 401);
    }
    limiter.succeed(remote);
    const s = sessions.create(remote);
    setCookie(c, SESSION_COOKIE, s.id, {
      httpOnly: true,
      sameSite: 'Strict',
      secure: o.tls,
      path: '/',
    });
    audit('web.login', 'ok', remote);
    return wantsJson ? c.json({ who: ADMIN, csrfToken: s.csrf }) : c.redirect('/', 303);
  });
  app.post('/logout', (c) => {
    if (c.get('who') === undefined) throw new WebError('AUTH_REQUIRED', 401, 'not logged in');
    sessions.destroy(getCookie(c, SESSION_COOKIE));
    deleteCookie(c, SESSION_COOKIE, { path: '/' });
    audit('web.logout', 'ok', c.get('remote'));
    return c.body(null, 204);
  });

  app.get('/metrics', async (c) => {
    const authz = c.req.header('authorization');
    const byToken =
      authz?.startsWith('Bearer ') && sameSecret(authz.slice(7).trim(), o.metricsToken);
    if (!byToken && !isLoopback(c.get('remote'))) {
      throw new WebError(
        'METRICS_FORBIDDEN',
        403,
        '/metrics answers loopback clients, or the metrics token as a Bearer credential',
      );
    }
    return c.body(await o.metrics.text(), 200, { 'Content-Type': o.metrics.contentType });
  });

  app.route('/api/v1', buildApi(o));

  // The page and its bundle: for a logged-in browser only.
  app.get('/', (c) =>
    c.get('who') === undefined ? c.redirect('/login', 303) : c.html(dashboardHtml()),
  );
  app.get('/dashboard.js', async (c) => {
    if (c.get('who') === undefined) throw new WebError('AUTH_REQUIRED', 401, 'log in first');
    return c.body(await o.bundle(), 200, { 'Content-Type': 'text/javascript; charset=utf-8' });
  });
  return app;
}
