// The JSON API against a simulated host (plain temp dir: offline clones by
// full copy, the lockdown ack from the stand-in), compared with what vmclone
// prints for the same commands.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openWs } from '../../bench/rfb-client.js';
import { qemuBinary } from '../../src/sim/console/vnc.js';
import type { WebServer } from '../../src/web/server.js';
import { ConsoleHost, waitFor } from '../daemons/console-monitor/console-host.js';
import { type AckStandIn, CloneHost, E2E_NEEDS, canRunE2e, run } from '../e2e/clone-helpers.js';
import { skipWithout } from '../prerequisites.js';
import { writeLoopbackCert } from '../tls.js';
import { WebClient, adminToken, errorCode, requestId, startWeb } from './web-helpers.js';

const canRun = existsSync('/usr/bin/xenstore-read');

describe.skipIf(skipWithout(canRun, 'xenstore-utils'))('zynclone web: the API', () => {
  let host: CloneHost;
  let server: WebServer;
  let token: string;
  let admin: WebClient;
  let browser: WebClient;

  const cliJson = async (...args: string[]) => {
    const r = await host.vmclone([...args, '--json']);
    return { code: r.code, json: JSON.parse(r.stdout) as Record<string, unknown> };
  };
  /** vmclone's error for a command: the code and message it prints on stderr, and its status. */
  const cliError = async (...args: string[]) => {
    const r = await host.vmclone(args);
    const m = /^vmclone: (.*) \[([A-Z_]+)\]$/s.exec(r.stderr.trim());
    return { code: m?.[2], message: m?.[1], exitCode: r.code };
  };
  const ackStandIn = () => host.ack as AckStandIn;
  /** Resumes the stand-in and has it acknowledge what is published now. */
  const releaseAck = async (vm: string) => {
    ackStandIn().resume();
    const g = await host.xsRead(`/tool/zynclone/vm/${vm}/generation`);
    if (g !== undefined)
      await run('xenstore-write', [`/tool/zynclone/vm/${vm}/generation`, g], host.env);
  };
  const operationRunning = async (vm: string) => {
    const deadline = Date.now() + 20_000;
    while (server.core.store.runningOperation(vm) === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  beforeAll(async () => {
    host = await CloneHost.create({ plain: true });
    expect((await host.xl('shutdown', '-w', 'db01')).code).toBe(0);
    for (const vm of ['web01', 'db01']) {
      expect((await host.vmclone(['config', vm, '--set', 'storage_backend=copy'])).code).toBe(0);
    }
    server = await startWeb(host);
    token = adminToken(host);
    admin = new WebClient(server.url, { bearer: token });
    browser = await WebClient.login(server.url, token);
  }, 120_000);

  // A failed test leaves no clone to the next one.
  afterEach(async () => {
    ackStandIn()?.resume();
    await host?.vmclone(['remove', 'db01', '-q']);
  });

  afterAll(async () => {
    await server?.close();
    await host?.dispose();
  }, 60_000);

  it('creates the admin token 0600 at first start', () => {
    const file = join(host.root, 'var/lib/zynclone/web/admin-token');
    expect(execFileSync('stat', ['-c', '%a', file], { encoding: 'utf8' }).trim()).toBe('600');
    expect(token.length).toBeGreaterThanOrEqual(40);
  });

  it('serves nothing but the login page and the OpenAPI document without credentials', async () => {
    const anon = new WebClient(server.url, undefined);
    const doc = await anon.get('/api/v1/openapi.json');
    expect(doc.status).toBe(200);
    const paths = (doc.body as { paths: Record<string, Record<string, unknown>> }).paths;
    let checked = 0;
    for (const [path, ops] of Object.entries(paths)) {
      for (const method of Object.keys(ops)) {
        const r = await anon.request(
          method.toUpperCase(),
          `/api/v1${path.replace('{vm}', 'web01')}`,
        );
        expect({ path, method, status: r.status, code: errorCode(r) }).toEqual({
          path,
          method,
          status: 401,
          code: 'AUTH_REQUIRED',
        });
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(13);
    expect((await anon.get('/')).headers.get('location')).toBe('/login');
    expect((await anon.get('/dashboard.js')).status).toBe(401);
    const login = await anon.get('/login');
    expect(login.status).toBe(200);
    expect(login.text).toContain('<form class="login" method="post" action="/login">');
    expect(login.headers.get('content-security-policy')).toContain("script-src 'self'");
    // A wrong token is no credential either.
    expect(
      (await new WebClient(server.url, { bearer: 'x'.repeat(43) }).get('/api/v1/clones')).status,
    ).toBe(401);
  });

  it('documents every route it serves, from the same definitions that validate requests', async () => {
    const doc = (await admin.get('/api/v1/openapi.json')).body as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, { properties?: Record<string, { enum?: string[] }> }> };
    };
    expect(
      Object.entries(doc.paths)
        .flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`))
        .sort(),
    ).toEqual(
      [
        'GET /audit',
        'GET /clones',
        'GET /clones/{vm}',
        'POST /clones/{vm}',
        'DELETE /clones/{vm}',
        'POST /clones/{vm}/start',
        'POST /clones/{vm}/stop',
        'POST /clones/{vm}/activate',
        'POST /clones/{vm}/deactivate',
        'POST /clones/{vm}/console',
        'GET /doctor',
        'GET /events',
        'GET /session',
        'GET /vms',
        'GET /vms/{vm}/config',
        'PATCH /vms/{vm}/config',
      ].sort(),
    );
    expect(doc.paths['/clones/{vm}']!.post!.responses).toHaveProperty('409');
    expect(doc.components.schemas.CreateRequest!.properties!.kind!.enum).toEqual([
      'offline',
      'online',
      'memory',
    ]);
    // The documented enum is the one the route enforces.
    const bad = await admin.post('/api/v1/clones/db01', { kind: 'sideways' });
    expect(bad.status).toBe(400);
    expect(errorCode(bad)).toBe('REQUEST_INVALID');
    expect((bad.body as { error: { message: string } }).error.message).toMatch(/kind/);
  });

  it('runs every transition as vmclone does, with the same JSON', async () => {
    const created = await browser.post('/api/v1/clones/db01', { kind: 'offline', start: false });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ clone: { vm: 'db01', state: 'active', kind: 'offline' } });
    expect((await browser.get('/api/v1/clones')).body).toEqual((await cliJson('list')).json);
    const st = await browser.get('/api/v1/clones/db01');
    expect(st.body).toEqual((await cliJson('status', 'db01')).json);

    for (const [path, state] of [
      ['start', 'running'],
      ['stop', 'active'],
      ['deactivate', 'inactive'],
      ['activate', 'active'],
    ] as const) {
      const r = await browser.post(`/api/v1/clones/db01/${path}`, path === 'stop' ? {} : undefined);
      expect({
        path,
        status: r.status,
        state: (r.body as { clone?: { state: string } }).clone?.state,
      }).toEqual({
        path,
        status: 200,
        state,
      });
      expect(((await cliJson('status', 'db01')).json.clone as { state: string }).state).toBe(state);
    }
    expect((await browser.request('DELETE', '/api/v1/clones/db01')).body).toEqual({
      removed: true,
    });
    expect((await browser.request('DELETE', '/api/v1/clones/db01')).body).toEqual({
      removed: false,
    });
    expect(await host.leftovers('db01')).toEqual([]);

    const audit = (await admin.get('/api/v1/audit?vm=db01&limit=20')).body as {
      who: string;
      action: string;
      outcome: string;
    }[];
    // The web's own entries (with the client's address) next to the store's operation entries.
    const web = audit.filter((a) => a.action.startsWith('web.'));
    expect(web.slice(0, 7).map((a) => `${a.action} ${a.outcome}`)).toEqual([
      'web.remove ok',
      'web.remove ok',
      'web.activate ok',
      'web.deactivate ok',
      'web.stop ok',
      'web.start ok',
      'web.create ok',
    ]);
    expect(audit.find((a) => a.action === 'create')).toMatchObject({
      who: 'user:web-admin',
      outcome: 'done',
    });
    // Everything since the create (newest first) was done by the web's admin.
    const byWeb = audit.slice(0, audit.findIndex((a) => a.action === 'create') + 1);
    expect(byWeb.length).toBeGreaterThanOrEqual(12);
    expect(new Set(byWeb.map((a) => a.who))).toEqual(new Set(['user:web-admin']));
  }, 120_000);

  it("answers every error with vmclone's code and message and a fitting HTTP status", async () => {
    const cases: {
      api: [string, string, unknown?];
      cli: string[];
      status: number;
      code: string;
    }[] = [
      {
        api: ['POST', '/api/v1/clones/nosuchvm', {}],
        cli: ['create', 'nosuchvm'],
        status: 404,
        code: 'VM_NOT_FOUND',
      },
      {
        api: ['POST', '/api/v1/clones/web01/start'],
        cli: ['start', 'web01'],
        status: 404,
        code: 'CLONE_NOT_FOUND',
      },
      {
        api: ['POST', '/api/v1/clones/bad%20name', {}],
        cli: ['create', 'bad name'],
        status: 422,
        code: 'VM_NAME_INVALID',
      },
      {
        api: ['POST', '/api/v1/clones/web01', { kind: 'online' }],
        cli: ['create', 'web01', '--online'],
        status: 409,
        code: 'STORAGE_COPY_NEEDS_PAUSE',
      },
      {
        api: ['POST', '/api/v1/clones/db01', { kind: 'memory' }],
        cli: ['create', 'db01', '--memory'],
        status: 409,
        code: 'CLONE_REFUSED',
      },
      {
        api: ['POST', '/api/v1/clones/db01/console'],
        cli: ['console', 'db01'],
        status: 409,
        code: 'CONSOLE_NOT_RUNNING',
      },
      {
        api: ['PATCH', '/api/v1/vms/web01/config', { set: { clone_vif_mask: 'sometimes' } }],
        cli: ['config', 'web01', '--set', 'clone_vif_mask=sometimes'],
        status: 422,
        code: 'CONFIG_INVALID',
      },
    ];
    for (const c of cases) {
      const r = await browser.request(c.api[0], c.api[1], c.api[2]);
      const cli = await cliError(...c.cli);
      expect({ status: r.status, body: r.body }).toEqual({
        status: c.status,
        body: { error: cli },
      });
      expect(errorCode(r)).toBe(c.code);
    }
    // The clone exists, or is in the wrong state for the transition.
    expect(
      (await admin.post('/api/v1/clones/db01', { kind: 'offline', start: false })).status,
    ).toBe(201);
    const again = await admin.post('/api/v1/clones/db01', { kind: 'offline' });
    expect([again.status, errorCode(again)]).toEqual([409, 'CLONE_EXISTS']);
    const stop = await admin.post('/api/v1/clones/db01/stop', {});
    expect([stop.status, errorCode(stop)]).toEqual([409, 'CLONE_STATE']);
    expect((stop.body as { error: { message: string } }).error.message).toMatch(/active/);
    const stopped = await admin.post('/api/v1/clones/db01/console');
    expect([stopped.status, errorCode(stopped)]).toEqual([409, 'CONSOLE_NOT_RUNNING']);
    expect((stopped.body as { error: { message: string } }).error.message).toMatch(
      /is active, not running/,
    );
    expect((await admin.request('DELETE', '/api/v1/clones/db01')).status).toBe(200);
    expect(await host.leftovers('db01')).toEqual([]);
  }, 120_000);

  it('answers 504 LOCKDOWN_TIMEOUT when the net monitor does not acknowledge, leaving nothing', async () => {
    const set = await browser.request('PATCH', '/api/v1/vms/db01/config', {
      set: { lockdown_ack_timeout_ms: 300 },
    });
    expect(set.status).toBe(200);
    expect((set.body as { origins: Record<string, string> }).origins.lockdown_ack_timeout_ms).toBe(
      'override',
    );
    ackStandIn().pause();
    try {
      const r = await browser.post('/api/v1/clones/db01', { kind: 'offline' });
      expect([r.status, errorCode(r)]).toEqual([504, 'LOCKDOWN_TIMEOUT']);
      expect((r.body as { error: { exitCode: number } }).error.exitCode).toBe(7);
    } finally {
      ackStandIn().resume();
      await browser.request('PATCH', '/api/v1/vms/db01/config', {
        unset: ['lockdown_ack_timeout_ms'],
      });
    }
    expect(await host.leftovers('db01')).toEqual([]);
  }, 60_000);

  it('lets one of concurrent creates through the API and the CLI win; the other is busy', async () => {
    // The held create must outlive a slow machine's CLI start-up and API round trip.
    await browser.request('PATCH', '/api/v1/vms/db01/config', {
      set: { lockdown_ack_timeout_ms: 120_000 },
    });
    // The stand-in holds the first create at its lockdown ack: both clients meet it running.
    ackStandIn().pause();
    const first = browser.post('/api/v1/clones/db01', { kind: 'offline' });
    try {
      await operationRunning('db01');
      const cli = await host.vmclone(['create', 'db01', '--offline', '-q']);
      expect(cli.code).toBe(3);
      expect(cli.stderr).toMatch(/VM db01 is busy.*\[VM_BUSY\]/);
      const api = await admin.post('/api/v1/clones/db01', { kind: 'offline' });
      expect([api.status, errorCode(api)]).toEqual([409, 'VM_BUSY']);
    } finally {
      await releaseAck('db01');
    }
    expect((await first).status).toBe(201);
    expect((await admin.request('DELETE', '/api/v1/clones/db01')).status).toBe(200);

    // And the other way round: the CLI's create makes the API busy.
    ackStandIn().pause();
    const cli = host.vmclone(['create', 'db01', '--offline', '-q']);
    try {
      await operationRunning('db01');
      const api = await admin.post('/api/v1/clones/db01', { kind: 'offline' });
      expect([api.status, errorCode(api)]).toEqual([409, 'VM_BUSY']);
      expect((api.body as { error: { exitCode: number } }).error.exitCode).toBe(3);
    } finally {
      await releaseAck('db01');
    }
    expect((await cli).code).toBe(0);
    expect((await admin.request('DELETE', '/api/v1/clones/db01')).status).toBe(200);
    expect(await host.leftovers('db01')).toEqual([]);
    await browser.request('PATCH', '/api/v1/vms/db01/config', {
      unset: ['lockdown_ack_timeout_ms'],
    });
  }, 180_000);

  it('refuses cross-site, CSRF-less and replayed requests of a session', async () => {
    const auth = browser.auth as { cookie: string; csrf: string };
    const patch = { set: { mac_policy: 'regenerate' } };
    const send = (headers: Record<string, string>) =>
      fetch(new URL('/api/v1/vms/web01/config', server.url), {
        method: 'PATCH',
        headers: {
          Cookie: auth.cookie,
          'Content-Type': 'application/json',
          Accept: 'application/json',
          ...headers,
        },
        body: JSON.stringify(patch),
      }).then(async (r) => ({
        status: r.status,
        code: ((await r.json()) as { error?: { code: string } }).error?.code,
      }));
    const id = requestId();
    expect(await send({ 'X-Request-Id': id })).toEqual({ status: 403, code: 'CSRF_FAILED' });
    expect(await send({ 'X-CSRF-Token': 'forged', 'X-Request-Id': id })).toEqual({
      status: 403,
      code: 'CSRF_FAILED',
    });
    expect(await send({ 'X-CSRF-Token': auth.csrf })).toEqual({ status: 403, code: 'CSRF_FAILED' });
    expect(
      await send({
        'X-CSRF-Token': auth.csrf,
        'X-Request-Id': requestId(),
        Origin: 'http://evil.example',
      }),
    ).toEqual({ status: 403, code: 'CSRF_FAILED' });
    expect(
      await send({
        'X-CSRF-Token': auth.csrf,
        'X-Request-Id': requestId(),
        'Sec-Fetch-Site': 'cross-site',
      }),
    ).toEqual({ status: 403, code: 'CSRF_FAILED' });
    expect(await send({ 'X-CSRF-Token': auth.csrf, 'X-Request-Id': id })).toEqual({
      status: 200,
      code: undefined,
    });
    expect(await send({ 'X-CSRF-Token': auth.csrf, 'X-Request-Id': id })).toEqual({
      status: 403,
      code: 'REQUEST_REPLAYED',
    });
    // Nothing refused was written: the only change is the one accepted request's.
    expect((await cliJson('config', 'web01')).json.origins).toMatchObject({
      mac_policy: 'override',
    });
    expect(
      (await browser.request('PATCH', '/api/v1/vms/web01/config', { unset: ['mac_policy'] }))
        .status,
    ).toBe(200);

    // The console route issues a ticket: state-changing, so it needs the CSRF token too.
    const consoleUrl = new URL('/api/v1/clones/db01/console', server.url);
    const noCsrf = await fetch(consoleUrl, {
      method: 'POST',
      headers: { Cookie: auth.cookie, Accept: 'application/json', 'X-Request-Id': requestId() },
    });
    expect([
      noCsrf.status,
      ((await noCsrf.json()) as { error: { code: string } }).error.code,
    ]).toEqual([403, 'CSRF_FAILED']);

    // After logout the cookie is worth nothing.
    const other = await WebClient.login(server.url, token);
    expect((await other.post('/logout')).status).toBe(204);
    expect((await other.get('/api/v1/clones')).status).toBe(401);
    const entries = (await admin.get('/api/v1/audit?limit=5')).body as { action: string }[];
    expect(entries.map((e) => e.action)).toContain('web.logout');
  });

  it("streams an API create's progress and a CLI stop to the live view", async () => {
    const ctrl = new AbortController();
    const r = await fetch(new URL('/api/v1/events', server.url), {
      headers: { Authorization: `Bearer ${token}` },
      signal: ctrl.signal,
    });
    expect(r.headers.get('content-type')).toContain('text/event-stream');
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    const nextEvent = async (): Promise<{ event: string; data: unknown }> => {
      for (;;) {
        const end = buffer.indexOf('\n\n');
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          return { event, data: JSON.parse(data) };
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        buffer += value;
      }
    };
    try {
      expect((await nextEvent()).event).toBe('snapshot');
      const created = admin.post('/api/v1/clones/db01', { kind: 'offline' });
      const progress: { message: string; done?: number; total?: number }[] = [];
      for (;;) {
        const e = await nextEvent();
        const d = e.data as { vm?: string; operation?: string; clone?: { state: string } };
        if (e.event === 'progress' && d.vm === 'db01' && d.operation === 'create') {
          progress.push(e.data as (typeof progress)[number]);
        }
        if (e.event === 'clone' && d.vm === 'db01' && d.clone?.state === 'running') break;
      }
      expect((await created).status).toBe(201);
      // The full copy of each disk, in bytes, as it goes.
      const copies = progress.filter((p) => /^copying xvd/.test(p.message));
      expect(copies.length).toBeGreaterThanOrEqual(2);
      expect(copies.at(-1)!.done).toBe(copies.at(-1)!.total);
      expect(progress.map((p) => p.message)).toContainEqual(
        expect.stringMatching(
          /^waiting for the network monitor to acknowledge lockdown generation \d+$/,
        ),
      );
      const stop = host.vmclone(['stop', 'db01', '--force', '-q']);
      let stoppedAt: number | undefined;
      void stop.then(() => {
        stoppedAt = Date.now();
      });
      for (;;) {
        const e = await nextEvent();
        const d = e.data as { vm?: string; clone?: { state: string } };
        if (e.event === 'clone' && d.vm === 'db01' && d.clone?.state === 'active') break;
      }
      const seenAt = Date.now();
      expect((await stop).code).toBe(0);
      // Seen no later than 200 ms after the command returned (usually before).
      expect(seenAt - (stoppedAt ?? seenAt)).toBeLessThanOrEqual(200);
    } finally {
      ctrl.abort();
    }
    expect((await admin.request('DELETE', '/api/v1/clones/db01')).status).toBe(200);
  }, 60_000);

  it('serves /metrics in the Prometheus text format', async () => {
    expect(
      (await admin.post('/api/v1/clones/db01', { kind: 'offline', start: false })).status,
    ).toBe(201);
    // A start waits for the lockdown ack; the stop leaves the clone active.
    expect((await admin.post('/api/v1/clones/db01/start')).status).toBe(200);
    expect((await admin.post('/api/v1/clones/db01/stop', { force: true })).status).toBe(200);
    const r = await fetch(new URL('/metrics', server.url));
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parsePrometheusTextFormat(await r.text());
    const family = (name: string) => families.find((f) => f.name === name)!;
    const clones = family('zynclone_clones');
    expect(clones.type).toBe('GAUGE');
    const value = (state: string, kind: string) =>
      Number(
        (clones.metrics as { labels: Record<string, string>; value: string }[]).find(
          (m) => m.labels.state === state && m.labels.kind === kind,
        )?.value,
      );
    expect(value('active', 'offline')).toBe(1);
    expect(value('running', 'offline')).toBe(0);
    const ops = family('zynclone_operation_duration_seconds');
    expect(ops.type).toBe('HISTOGRAM');
    // This parser folds the buckets of labelled histograms into one set and drops their
    // count and sum; the unlabelled ack histogram below keeps all of them.
    const buckets = (ops.metrics[0] as { buckets: Record<string, string> }).buckets;
    expect(Number(buckets['+Inf'])).toBeGreaterThanOrEqual(1);
    expect(Object.keys(buckets)).toContain('0.5');
    const ack = family('zynclone_lockdown_ack_latency_seconds');
    const ackSample = ack.metrics[0] as {
      count: string;
      sum: string;
      buckets: Record<string, string>;
    };
    expect(Number(ackSample.count)).toBeGreaterThanOrEqual(1);
    expect(Number(ackSample.sum)).toBeGreaterThan(0);
    expect(ackSample.buckets['+Inf']).toBe(ackSample.count);
    expect(family('zynclone_daemon_heartbeat_age_seconds').type).toBe('GAUGE');
    // The Grafana dashboard asks only for metrics the server exports.
    const grafana = readFileSync(
      join(__dirname, '../../packaging/grafana/zynclone-dashboard.json'),
      'utf8',
    );
    const asked = new Set(
      [...grafana.matchAll(/\b(zynclone_[a-z_]+)/g)].map((m) =>
        m[1]!.replace(/_(bucket|count|sum)$/, ''),
      ),
    );
    expect(asked.size).toBeGreaterThanOrEqual(5);
    for (const name of asked) expect(families.map((f) => f.name)).toContain(name);
    expect((await admin.request('DELETE', '/api/v1/clones/db01')).status).toBe(200);
  }, 60_000);

  it('serves HTTPS with a Secure session cookie', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zc-web-tls-'));
    let tls: WebServer | undefined;
    try {
      const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
      writeLoopbackCert(cert, key);
      const pem = { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
      tls = await startWeb(host, { tls: pem });
      expect(tls.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      const reply = await new Promise<{ status: number; cookie: string }>((resolve, reject) => {
        const req = httpsRequest(
          new URL('/login', tls!.url),
          {
            method: 'POST',
            ca: pem.cert,
            headers: {
              'Content-Type': 'application/x-www-form-urlencoded',
              Accept: 'application/json',
            },
          },
          (res) => {
            res.resume();
            resolve({ status: res.statusCode!, cookie: String(res.headers['set-cookie']) });
          },
        );
        req.on('error', reject);
        req.end(new URLSearchParams({ token }).toString());
      });
      expect(reply.status).toBe(200);
      expect(reply.cookie).toMatch(/HttpOnly/);
      expect(reply.cookie).toMatch(/Secure/);
      expect(reply.cookie).toMatch(/SameSite=Strict/);
    } finally {
      await tls?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('limits failed logins per client and audits them', async () => {
    const attempt = () =>
      fetch(new URL('/login', server.url), {
        method: 'POST',
        headers: {
          Accept: 'application/json',
          'Content-Type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ token: 'wrong' }),
      });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await attempt()).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
    const limited = await attempt();
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    // Even the right token waits now.
    const right = await fetch(new URL('/login', server.url), {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    expect(right.status).toBe(429);
    const audit = (await admin.get('/api/v1/audit?limit=10')).body as {
      action: string;
      outcome: string;
    }[];
    expect(audit.filter((a) => a.action === 'web.login').map((a) => a.outcome)).toContain(
      'AUTH_FAILED',
    );
    expect(audit.map((a) => a.outcome)).toContain('LOGIN_RATE_LIMITED');
  });
});

describe.skipIf(
  skipWithout(canRunE2e && qemuBinary() !== undefined, `${E2E_NEEDS}, qemu-system-x86`),
)('zynclone web: the console route', () => {
  // A running clone of win01 whose QEMU serves VNC, and clone_console_monitor as a process.
  let h: ConsoleHost;
  let server: WebServer;
  let browser: WebClient;

  const openSessions = async () => {
    const text = await (await fetch(new URL('/metrics', server.url))).text();
    const f = parsePrometheusTextFormat(text).find((m) => m.name === 'zynclone_console_sessions');
    return Number((f?.metrics[0] as { value: string } | undefined)?.value);
  };

  beforeAll(async () => {
    h = await ConsoleHost.create();
    await h.startConsoleMonitor();
    server = await startWeb(h.host);
    browser = await WebClient.login(server.url, adminToken(h.host));
  }, 180_000);

  afterAll(async () => {
    await server?.close();
    await h?.dispose();
  }, 60_000);

  it('issues a one-time console URL for the web user that the console monitor honours', async () => {
    expect(await openSessions()).toBe(0);
    const r = await browser.post('/api/v1/clones/win01/console');
    expect(r.status).toBe(200);
    const t = r.body as {
      url: string;
      vm: string;
      cloneName: string;
      ticket: string;
      expiresAt: string;
    };
    expect(t).toMatchObject({ vm: 'win01', cloneName: 'win01-clone' });
    expect(t.url.startsWith(`${h.url.replace(/\/+$/, '')}/console/win01#ticket=`)).toBe(true);
    const ttl = Date.parse(t.expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(30_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    // The same JSON keys as vmclone console --json.
    expect(Object.keys(t).sort()).toEqual(Object.keys(await h.ticketUrl()).sort());

    // The ticket opens a session at the console monitor, once.
    const token = new URL(t.url).hash.replace(/^#ticket=/, '');
    const session = `${h.url.replace(/^http/, 'ws').replace(/\/+$/, '')}/session/win01?ticket=${token}`;
    const s = await openWs(session);
    if ('refused' in s) throw new Error(`refused: ${JSON.stringify(s.refused)}`);
    const first = await waitFor('the session message', () => s.received[0]);
    expect(JSON.parse(String(first))).toMatchObject({ type: 'session', status: { vm: 'win01' } });
    expect(
      await waitFor(
        'an open console session in /metrics',
        async () => (await openSessions()) === 1 || undefined,
      ),
    ).toBe(true);
    const again = await openWs(session);
    expect('refused' in again && again.refused.code).toBe('TICKET_USED');
    s.ws.close();
    expect(
      await waitFor(
        'the session closed in /metrics',
        async () => (await openSessions()) === 0 || undefined,
      ),
    ).toBe(true);

    const audit = (await browser.get('/api/v1/audit?vm=win01&limit=10')).body as {
      who: string;
      action: string;
      outcome: string;
      detail: { ticket?: string };
    }[];
    expect(
      audit.find((a) => a.action === 'console.ticket' && a.detail.ticket === t.ticket),
    ).toMatchObject({ who: 'user:web-admin', outcome: 'issued' });
    expect(audit.find((a) => a.action === 'web.console')?.outcome).toBe('ok');
  }, 60_000);

  it('answers CONSOLE_MONITOR_DOWN as vmclone does when the monitor is gone', async () => {
    await ConsoleHost.stop(h.consoleMonitor);
    const cli = await h.vmclone(['console', 'win01']);
    const r = await browser.post('/api/v1/clones/win01/console');
    // The monitor clears its URL on the way out, or its heartbeat goes stale: the CLI says which.
    expect(cli.stderr).toMatch(/\[CONSOLE_MONITOR_DOWN\]/);
    expect(r.body).toEqual({
      error: {
        code: 'CONSOLE_MONITOR_DOWN',
        message: cli.stderr.trim().replace(/^vmclone: (.*) \[CONSOLE_MONITOR_DOWN\]$/s, '$1'),
        exitCode: cli.code,
      },
    });
    expect(r.status).toBe(500);
  }, 60_000);
});
