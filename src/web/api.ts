/**
 * The JSON API, `/api/v1`: every vmclone command, on the same core calls
 * (src/cli/vmclone.ts), with the same JSON shapes, error codes and messages.
 * The route definitions here validate requests and generate the OpenAPI
 * document served at /api/v1/openapi.json.
 */
import { OpenAPIHono, type RouteConfig, createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import { CloneError } from '../core/clones/errors.js';
import { cloneJson, createResultJson, statusJson } from '../core/clones/json.js';
import type { ProgressEvent } from '../core/clones/lifecycle.js';
import { effectiveConfig, setOverride, unsetOverride } from '../core/config/index.js';
import { consoleTicketJson } from '../core/console/issue.js';
import { type VmName, validateVmName } from '../core/paths.js';
import type { OperationKind } from '../core/state/types.js';
import { holdingsJson } from '../core/volumes/index.js';
import { WebError, errorResponse } from './errors.js';
import type { CoreHost } from './host.js';
import type { LiveEvent, LiveFeed } from './live.js';
import {
  AuditQuery,
  AuditSchema,
  CloneListItemSchema,
  ConfigPatch,
  ConfigSchema,
  ConsoleTicketSchema,
  CreateBody,
  CreateResultSchema,
  DoctorSchema,
  ErrorSchema,
  RemoveResult,
  SessionSchema,
  StatusSchema,
  StopBody,
  TransitionResult,
  VmParam,
  VmsSchema,
} from './schemas.js';

export interface WebEnv {
  Variables: {
    /** The requester recorded in operations and the audit, e.g. `user:web-admin`. */
    who: string;
    remote: string;
    /** The session's CSRF token; null for Bearer clients. */
    csrf: string | null;
  };
}

export interface ApiDeps {
  readonly host: CoreHost;
  readonly feed: LiveFeed;
  /** Events queued for one page before it is dropped as too slow. */
  readonly maxQueuedEvents?: number;
}

const json = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { 'application/json': { schema } },
  description,
});

const ERRORS = {
  400: json(ErrorSchema, 'malformed request (REQUEST_INVALID)'),
  401: json(ErrorSchema, 'not logged in (AUTH_REQUIRED)'),
  403: json(
    ErrorSchema,
    'cross-site, replayed or CSRF-less request (CSRF_FAILED, REQUEST_REPLAYED)',
  ),
  404: json(ErrorSchema, 'no such VM or clone (VM_NOT_FOUND, CLONE_NOT_FOUND)'),
  409: json(
    ErrorSchema,
    'busy or refused (VM_BUSY, CLONE_EXISTS, CLONE_STATE, CLONE_REFUSED, storage refusals, CONSOLE_*)',
  ),
  422: json(
    ErrorSchema,
    'invalid configuration or VM name (CONFIG_*, CLONE_CONFIG, VM_NAME_INVALID)',
  ),
  500: json(ErrorSchema, 'a step failed; a create or start was rolled back'),
  504: json(
    ErrorSchema,
    'the net monitor did not acknowledge the lockdown in time (LOCKDOWN_TIMEOUT)',
  ),
} as const;

function route<R extends Omit<RouteConfig, 'responses'>>(
  r: R,
  ok: { status: 200 | 201; schema: z.ZodType; description: string },
) {
  return createRoute({
    ...r,
    security: [{ session: [] }, { bearer: [] }],
    responses: { [ok.status]: json(ok.schema, ok.description), ...ERRORS },
  } as R & { responses: RouteConfig['responses'] });
}

function body<T extends z.ZodType>(schema: T) {
  return { body: { content: { 'application/json': { schema } }, required: false } };
}

function configJson(
  vm: string,
  eff: ReturnType<typeof effectiveConfig>,
): z.infer<typeof ConfigSchema> {
  return {
    vm,
    values: { ...eff.values },
    origins: eff.origins,
    files: { base: eff.baseFile, override: eff.overrideFile, generated: eff.guestCfgFile },
  };
}

export function buildApi(deps: ApiDeps): OpenAPIHono<WebEnv> {
  const { host, feed } = deps;
  const api = new OpenAPIHono<WebEnv>({
    defaultHook: (result, c) => {
      if (!result.success) {
        const what = result.error.issues
          .map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`)
          .join('; ');
        const { status, body } = errorResponse(
          new WebError('REQUEST_INVALID', 400, `invalid request: ${what}`),
        );
        return c.json(body, status as 400);
      }
    },
  });
  api.openAPIRegistry.registerComponent('securitySchemes', 'session', {
    type: 'apiKey',
    in: 'cookie',
    name: 'zc_session',
    description:
      'from POST /login; state-changing requests also need X-CSRF-Token and a fresh X-Request-Id',
  });
  api.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'the admin token',
  });

  /** Runs `fn` and records a `web.<action>` audit entry with its outcome and the client. */
  async function audited<T>(
    c: { get(k: 'who' | 'remote'): string },
    action: string,
    vm: string,
    detail: Record<string, unknown>,
    fn: () => Promise<T> | T,
  ): Promise<T> {
    let outcome = 'ok';
    try {
      return await fn();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      outcome = typeof code === 'string' ? code : 'FAILED';
      throw err;
    } finally {
      host.store.recordAudit({
        who: c.get('who'),
        action: `web.${action}`,
        vm,
        outcome,
        detail: { remote: c.get('remote'), ...detail },
      });
    }
  }

  /**
   * Runs one operation as vmclone runs it: recovery first, progress to every
   * page, an audit entry with its outcome, and the live view refreshed after.
   */
  async function operate<T>(
    c: { get(k: 'who' | 'remote'): string },
    vm: VmName,
    kind: OperationKind,
    fn: (lc: Awaited<ReturnType<CoreHost['lifecycle']>>) => Promise<T>,
  ): Promise<T> {
    const who = c.get('who');
    const progress = (e: ProgressEvent) => feed.publishProgress(vm, kind, e);
    try {
      return await audited(c, kind, vm, {}, async () => fn(await host.lifecycle(who, progress)));
    } finally {
      await feed.refresh().catch(() => {});
    }
  }

  api.openapi(
    route(
      { method: 'get', path: '/clones', summary: 'list the clones (vmclone list --json)' },
      { status: 200, schema: z.array(CloneListItemSchema), description: 'every clone' },
    ),
    async (c) => {
      const volumes = await host.volumes(c.get('who'));
      const clones = host.store.listClones().map((clone) => {
        let sharedVolumes: unknown[] = [];
        try {
          sharedVolumes = volumes.holders(clone.vm);
        } catch {
          // The VM's xl config is gone: nothing to show, as vmclone list.
        }
        return { ...cloneJson(clone), sharedVolumes };
      });
      return c.json(clones, 200);
    },
  );

  api.openapi(
    route(
      {
        method: 'get',
        path: '/clones/{vm}',
        summary: "a VM's clone: state, domain, lockdown generation and ack (vmclone status --json)",
        request: { params: VmParam },
      },
      { status: 200, schema: StatusSchema, description: 'the status' },
    ),
    async (c) => {
      const vm = validateVmName(c.req.valid('param').vm);
      const lc = await host.lifecycle(c.get('who'));
      const st = await lc.status(vm);
      if (!st.clone) throw new CloneError('CLONE_NOT_FOUND', `${vm} has no clone`);
      const volumes = await host.volumes(c.get('who'));
      const held = await volumes.holdings(vm).catch(() => []);
      return c.json(statusJson(st, holdingsJson(held)) as z.infer<typeof StatusSchema>, 200);
    },
  );

  api.openapi(
    route(
      {
        method: 'post',
        path: '/clones/{vm}',
        summary:
          'clone a VM (vmclone create); answers when the clone is ready, progress goes to /events',
        request: { params: VmParam, ...body(CreateBody) },
      },
      { status: 201, schema: CreateResultSchema, description: 'the clone was made' },
    ),
    async (c) => {
      const vm = validateVmName(c.req.valid('param').vm);
      const o = (c.req.valid('json') ?? {}) as z.infer<typeof CreateBody>;
      const r = await operate(c, vm, 'create', (lc) =>
        lc.create(vm, {
          ...(o.kind === undefined ? {} : { kind: o.kind }),
          ...(o.start === undefined ? {} : { start: o.start }),
        }),
      );
      return c.json(createResultJson(r), 201);
    },
  );

  for (const [name, summary] of [
    ['start', 'start the clone (active or inactive -> running)'],
    ['activate', 'enforce the lockdowns on the original again (inactive -> active)'],
    ['deactivate', 'lift the lockdowns on the original, keep the clone (active -> inactive)'],
  ] as const) {
    api.openapi(
      route(
        { method: 'post', path: `/clones/{vm}/${name}`, summary, request: { params: VmParam } },
        { status: 200, schema: TransitionResult, description: 'the clone after the transition' },
      ),
      async (c) => {
        const vm = validateVmName(c.req.valid('param').vm);
        const clone = await operate(c, vm, name, (lc) => lc[name](vm));
        return c.json({ clone: cloneJson(clone) }, 200);
      },
    );
  }

  api.openapi(
    route(
      {
        method: 'post',
        path: '/clones/{vm}/stop',
        summary: 'shut the clone down (running -> active); lockdowns stay',
        request: { params: VmParam, ...body(StopBody) },
      },
      { status: 200, schema: TransitionResult, description: 'the clone after the transition' },
    ),
    async (c) => {
      const vm = validateVmName(c.req.valid('param').vm);
      const o = (c.req.valid('json') ?? {}) as z.infer<typeof StopBody>;
      const clone = await operate(c, vm, 'stop', (lc) => lc.stop(vm, { force: o.force ?? false }));
      return c.json({ clone: cloneJson(clone) }, 200);
    },
  );

  api.openapi(
    route(
      {
        method: 'delete',
        path: '/clones/{vm}',
        summary:
          'delete the clone from any state: domain, volumes, config, lockdowns (safe to repeat)',
        request: { params: VmParam },
      },
      { status: 200, schema: RemoveResult, description: 'removed: false when there was no clone' },
    ),
    async (c) => {
      const vm = validateVmName(c.req.valid('param').vm);
      const r = await operate(c, vm, 'remove', (lc) => lc.remove(vm));
      return c.json({ removed: r.removed }, 200);
    },
  );

  api.openapi(
    route(
      {
        method: 'get',
        path: '/vms',
        summary: 'the VMs that can be cloned (domains and configured VMs)',
      },
      { status: 200, schema: VmsSchema, description: 'VMs, clones excluded' },
    ),
    (c) => c.json(feed.snapshot().vms, 200),
  );

  api.openapi(
    route(
      {
        method: 'get',
        path: '/vms/{vm}/config',
        summary:
          "a VM's effective configuration and where each value comes from (vmclone config --json)",
        request: { params: VmParam },
      },
      { status: 200, schema: ConfigSchema, description: 'the effective configuration' },
    ),
    (c) => {
      const vm = validateVmName(c.req.valid('param').vm);
      return c.json(configJson(vm, effectiveConfig(vm, host.paths)), 200);
    },
  );

  api.openapi(
    route(
      {
        method: 'patch',
        path: '/vms/{vm}/config',
        summary:
          "change a VM's override file (vmclone config --set/--unset), validated before writing",
        request: { params: VmParam, ...body(ConfigPatch) },
      },
      {
        status: 200,
        schema: ConfigSchema,
        description: 'the effective configuration after the change',
      },
    ),
    async (c) => {
      const vm = validateVmName(c.req.valid('param').vm);
      const o = (c.req.valid('json') ?? {}) as z.infer<typeof ConfigPatch>;
      const detail = { set: Object.keys(o.set ?? {}), unset: o.unset ?? [] };
      const cfg = await audited(c, 'config', vm, detail, () => {
        for (const [key, value] of Object.entries(o.set ?? {}))
          setOverride(vm, key, value, host.paths);
        for (const key of o.unset ?? []) unsetOverride(vm, key, host.paths);
        return configJson(vm, effectiveConfig(vm, host.paths));
      });
      return c.json(cfg, 200);
    },
  );

  api.openapi(
    route(
      {
        method: 'post',
        path: '/clones/{vm}/console',
        summary:
          "a one-time URL (60 s) for the web console of the VM's running clone (vmclone console --json)",
        request: { params: VmParam },
      },
      { status: 200, schema: ConsoleTicketSchema, description: 'a fresh ticket URL' },
    ),
    async (c) => {
      const vm = validateVmName(c.req.valid('param').vm);
      const t = await audited(c, 'console', vm, {}, () => host.consoleTicket(vm, c.get('who')));
      return c.json(consoleTicketJson(t), 200);
    },
  );

  api.openapi(
    route(
      {
        method: 'get',
        path: '/doctor',
        summary:
          'check the host: xl, XenStore, monitor heartbeats, nftables lockdown, bridge, config',
      },
      { status: 200, schema: DoctorSchema, description: 'findings (healthy: every one ok)' },
    ),
    async (c) => {
      const findings = await host.doctor();
      return c.json({ healthy: findings.every((f) => f.ok), findings: [...findings] }, 200);
    },
  );

  api.openapi(
    route(
      {
        method: 'get',
        path: '/audit',
        summary: 'who did what, newest first',
        request: { query: AuditQuery },
      },
      { status: 200, schema: AuditSchema, description: 'audit entries' },
    ),
    (c) => {
      const q = c.req.valid('query');
      const entries = host.store.auditLog({
        ...(q.vm === undefined ? {} : { vm: validateVmName(q.vm) }),
        limit: q.limit ?? 100,
      });
      return c.json(
        entries.map((e) => ({ ...e, at: new Date(e.at).toISOString() })),
        200,
      );
    },
  );

  api.openapi(
    route(
      {
        method: 'get',
        path: '/session',
        summary: 'who is logged in, and the CSRF token of the session',
      },
      { status: 200, schema: SessionSchema, description: 'the session' },
    ),
    (c) => c.json({ who: c.get('who'), csrfToken: c.get('csrf') }, 200),
  );

  const eventsRoute = createRoute({
    method: 'get',
    path: '/events',
    summary:
      'the live view (Server-Sent Events): snapshot first, then clone, clone-gone, vms, daemons and progress events',
    security: [{ session: [] }, { bearer: [] }],
    responses: {
      200: {
        content: { 'text/event-stream': { schema: z.string() } },
        description: 'event stream',
      },
      401: ERRORS[401],
    },
  });
  const maxQueued = deps.maxQueuedEvents ?? 1000;
  api.openapi(eventsRoute, (c) =>
    streamSSE(c, async (stream) => {
      const queue: LiveEvent[] = [];
      let wake: (() => void) | undefined;
      let dropped = false;
      const unsubscribe = feed.subscribe((e) => {
        if (queue.length >= maxQueued) dropped = true;
        else queue.push(e);
        wake?.();
      });
      stream.onAbort(() => {
        dropped = true;
        wake?.();
      });
      try {
        await stream.writeSSE({ event: 'snapshot', data: JSON.stringify(feed.snapshot()) });
        const keepAlive = setInterval(() => {
          queue.push({ type: 'daemons', data: feed.snapshot().daemons });
          wake?.();
        }, 15_000);
        try {
          while (!dropped && !stream.aborted) {
            const e = queue.shift();
            if (e === undefined) {
              await new Promise<void>((r) => {
                wake = r;
              });
              wake = undefined;
              continue;
            }
            await stream.writeSSE({ event: e.type, data: JSON.stringify(e.data) });
          }
        } finally {
          clearInterval(keepAlive);
        }
      } finally {
        unsubscribe();
      }
    }),
  );

  api.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'ZynClone',
      version: 'v1',
      description:
        'Create and manage clones of Xen VMs. Errors carry the stable code and message vmclone prints, and the exit status it would give.',
    },
    servers: [{ url: '/api/v1' }],
  });
  return api;
}
