// clone_console_monitor: an HTTP(S) server with the console page, a control
// WebSocket per console session (where a ticket is redeemed and the page
// hears the clone's state) and a WebSocket-to-VNC proxy per connection.
//
//   GET  /console/<vm>               the page; the ticket is in the URL's #fragment
//   GET  /assets/<file>              the page's script and style
//   GET  /healthz                    200 while serving
//   WS   /session/<vm>?ticket=T      redeems T; JSON status messages from then on
//   WS   /vnc/<vm>?session=S         RFB to the clone's VNC server (subprotocol binary)
//
// A session lives as long as its control socket; it may open VNC connections
// again and again (reconnects after a reboot follow the clone to its new
// domid and port), but only to the clone its ticket named.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  type IncomingMessage,
  STATUS_CODES,
  type Server,
  type ServerResponse,
  createServer as createHttpServer,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type WebSocket, WebSocketServer } from 'ws';
import {
  CONSOLE_URL_NODE,
  type SessionRecord,
  encodeSession,
  readSessionRecords,
  sessionNode,
  ticketId,
} from '../../core/console/index.js';
import type { XsClient } from '../../xenstore/index.js';
import type { DaemonLogger } from '../common/log.js';
import { type CloneConsole, CloneConsoles, lockdownAcked, sameEndpoint } from './clones.js';
import { CLOSE, VncProxy } from './proxy.js';
import { type Refusal, TicketBook } from './tickets.js';

export const DEFAULT_REJECT_DELAY_MS = 1000;
const MAX_SESSIONS = 512;
const MAX_CONNECTIONS_PER_SESSION = 4;
const PING_MS = 30_000;
const SWEEP_MS = 30_000;
const VM_PATH = /^\/(console|session|vnc)\/([A-Za-z0-9][A-Za-z0-9._-]{0,63})$/;
const ASSETS: Record<string, string> = {
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};
const PAGE_HEADERS = {
  'Cache-Control': 'no-store',
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
};

export interface ConsoleMonitorOptions {
  xs: XsClient;
  log: DaemonLogger;
  listen: { host: string; port: number };
  /** PEM certificate and key: HTTPS and WSS instead of HTTP and WS. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
  /** The splice helper that moves VNC -> browser bytes, or why there is none (the proxy copies them). */
  splice: { helper: string } | { whyNot: string };
  /** Where the built page is (index.html, console.js, console.css). */
  assetsDir: string;
  /** How long a refused upgrade waits before its answer (slows guessing). */
  rejectDelayMs?: number;
  now?: () => number;
}

export interface StatusMessage {
  type: 'status';
  vm: string;
  cloneName: string;
  state: string;
  domid: number | null;
  /** available: a VNC connection can be made now; removed: the session is over. */
  console: 'available' | 'unavailable' | 'removed';
  reason: string | null;
  lockdown: { generation: number | null; ack: number | null; acknowledged: boolean };
}

interface Session {
  readonly record: Omit<SessionRecord, 'connections' | 'bytesToBrowser' | 'bytesToVnc'>;
  readonly token: string;
  readonly control: WebSocket;
  readonly proxies: Set<VncProxy>;
  connections: number;
  bytesToBrowser: number;
  bytesToVnc: number;
  alive: boolean;
  closed: boolean;
}

export class ConsoleMonitor {
  readonly clones: CloneConsoles;
  private readonly tickets: TicketBook;
  private readonly server: Server;
  private readonly controlWss = new WebSocketServer({
    noServer: true,
    maxPayload: 4096,
    perMessageDeflate: false,
  });
  private readonly vncWss = new WebSocketServer({
    noServer: true,
    maxPayload: 4 * 1024 * 1024,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has('binary') ? 'binary' : false),
  });
  private readonly sessions = new Map<string, Session>();
  private readonly assets = new Map<string, { body: Buffer; etag: string }>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly now: () => number;
  private readonly rejectDelayMs: number;
  private baseUrl = '';

  constructor(private readonly o: ConsoleMonitorOptions) {
    this.now = o.now ?? Date.now;
    this.rejectDelayMs = o.rejectDelayMs ?? DEFAULT_REJECT_DELAY_MS;
    this.clones = new CloneConsoles(o.xs, o.log);
    this.tickets = new TicketBook(o.xs, this.now);
    const handler = (req: IncomingMessage, res: ServerResponse) => this.http(req, res);
    this.server = o.tls
      ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }, handler)
      : createHttpServer(handler);
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.upgrade(req, socket, head).catch((err) => {
        o.log.error('upgrade failed', { error: err });
        this.refuseNow(socket, 500, 'INTERNAL', 'internal error');
      });
    });
  }

  /** The URL users open (without path). */
  get url(): string {
    return this.baseUrl;
  }

  async start(): Promise<string> {
    for (const file of ['index.html', ...Object.keys(ASSETS)]) {
      const body = readFileSync(join(this.o.assetsDir, file));
      const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
      this.assets.set(file, { body, etag });
    }
    await this.tickets.load();
    this.clones.onChange((vm, now, before) => this.cloneChanged(vm, now, before));
    this.clones.onResync(() => void this.publishUrl());
    await this.clones.start();
    await this.closeStaleSessions();
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.listen.port, this.o.listen.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const { port } = this.server.address() as AddressInfo;
    this.baseUrl = `${this.o.tls ? 'https' : 'http'}://${urlHost(this.o.listen.host)}:${port}`;
    await this.publishUrl();
    this.timers.push(
      setInterval(() => this.ping(), PING_MS),
      setInterval(() => void this.tickets.sweep().catch(() => {}), SWEEP_MS),
    );
    for (const t of this.timers) t.unref();
    return this.baseUrl;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    const closing = [...this.sessions.values()].map((s) =>
      this.endSession(s, CLOSE.SESSION_ENDED, 'console monitor stopping'),
    );
    await Promise.all(closing);
    await new Promise<void>((r) => this.server.close(() => r()));
    this.server.closeAllConnections?.();
    await this.o.xs.rm(CONSOLE_URL_NODE).catch(() => {});
    await this.clones.stop();
  }

  /** Sessions open now (tests, benchmarks). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  private async publishUrl(): Promise<void> {
    if (this.baseUrl) {
      await this.o.xs
        .write(CONSOLE_URL_NODE, this.baseUrl)
        .catch((err) => this.o.log.warn('cannot publish the URL', { error: err }));
    }
  }

  // ---- HTTP ---------------------------------------------------------------

  private http(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204, { 'Cache-Control': 'max-age=86400' }).end();
      return;
    }
    if (url.pathname === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-store' }).end('ok\n');
      return;
    }
    const page = VM_PATH.exec(url.pathname);
    if (page?.[1] === 'console') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', ...PAGE_HEADERS });
      res.end(req.method === 'HEAD' ? undefined : this.assets.get('index.html')?.body);
      return;
    }
    const name = /^\/assets\/([a-z.]+)$/.exec(url.pathname)?.[1];
    const asset = name === undefined ? undefined : this.assets.get(name);
    if (name !== undefined && ASSETS[name] !== undefined && asset !== undefined) {
      // Revalidated with an ETag rather than fetched whole: a browser that has
      // the script keeps its compiled code too, and the page starts sooner.
      const headers = {
        'Cache-Control': 'no-cache',
        ETag: asset.etag,
        'X-Content-Type-Options': 'nosniff',
      };
      if (req.headers['if-none-match'] === asset.etag) {
        res.writeHead(304, headers).end();
        return;
      }
      res.writeHead(200, { ...headers, 'Content-Type': ASSETS[name] });
      res.end(req.method === 'HEAD' ? undefined : asset.body);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
  }

  // ---- WebSocket upgrades -------------------------------------------------

  private async upgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const m = VM_PATH.exec(url.pathname);
    const remote = (socket.remoteAddress ?? 'unknown').slice(0, 64);
    if (!m || m[1] === 'console') {
      this.refuseNow(socket, 404, 'NOT_FOUND', 'no WebSocket here');
      return;
    }
    const kind = m[1]!;
    const vm = m[2]!;
    const origin = req.headers.origin;
    if (
      origin !== undefined &&
      origin !== `${this.o.tls ? 'https' : 'http'}://${req.headers.host}`
    ) {
      this.refuse(socket, { status: 403, code: 'ORIGIN', message: 'cross-origin request' }, remote);
      return;
    }
    if (kind === 'session') {
      const r = await this.tickets.redeem(url.searchParams.get('ticket'), vm);
      if (!r.ok) {
        this.refuse(socket, r, remote, vm);
        return;
      }
      const clone = this.clones.get(vm);
      const why = ticketMismatch(r.ticket, clone);
      if (why !== undefined) {
        this.refuse(socket, { status: 403, code: 'CLONE_CHANGED', message: why }, remote, vm);
        return;
      }
      if (this.sessions.size >= MAX_SESSIONS) {
        this.refuseNow(socket, 503, 'TOO_MANY_SESSIONS', 'too many console sessions open');
        return;
      }
      this.controlWss.handleUpgrade(req, socket, head, (ws) =>
        this.openSession(ws, r.hash, r.ticket, remote),
      );
      return;
    }
    const session = this.sessions.get(url.searchParams.get('session') ?? '');
    if (!session || session.record.vm !== vm || session.closed) {
      this.refuse(
        socket,
        { status: 403, code: 'SESSION_UNKNOWN', message: 'no such console session' },
        remote,
        vm,
      );
      return;
    }
    const clone = this.clones.get(vm);
    const status = statusOf(vm, clone, session.record.cloneUuid);
    if (status.console !== 'available' || !clone?.vnc) {
      this.refuseNow(socket, 503, 'CONSOLE_UNAVAILABLE', status.reason ?? 'console unavailable');
      return;
    }
    if (session.proxies.size >= MAX_CONNECTIONS_PER_SESSION) {
      this.refuseNow(
        socket,
        429,
        'TOO_MANY_CONNECTIONS',
        'too many VNC connections in this session',
      );
      return;
    }
    const target = clone.vnc;
    this.vncWss.handleUpgrade(req, socket, head, (ws) =>
      this.openProxy(session, ws, socket, target),
    );
  }

  private openSession(ws: WebSocket, hash: string, ticket: SessionTicket, remote: string): void {
    const token = randomBytes(32).toString('base64url');
    const session: Session = {
      record: {
        id: randomBytes(8).toString('hex'),
        ticket: ticketId(hash),
        vm: ticket.vm,
        cloneName: ticket.cloneName,
        cloneUuid: ticket.cloneUuid,
        requestedBy: ticket.requestedBy,
        remote,
        openedAt: this.now(),
      },
      token,
      control: ws,
      proxies: new Set(),
      connections: 0,
      bytesToBrowser: 0,
      bytesToVnc: 0,
      alive: true,
      closed: false,
    };
    this.sessions.set(token, session);
    const log = this.o.log.child({ session: session.record.id, vm: ticket.vm });
    log.info('console session opened', {
      ticket: session.record.ticket,
      requestedBy: ticket.requestedBy,
      remote,
    });
    void this.publishSession(session);
    ws.on('pong', () => {
      session.alive = true;
    });
    ws.on('message', () => {
      // The page sends nothing; anything it does send is ignored.
    });
    ws.on('close', () => void this.endSession(session, CLOSE.SESSION_ENDED, 'page closed'));
    ws.on(
      'error',
      () => void this.endSession(session, CLOSE.SESSION_ENDED, 'page connection failed'),
    );
    const status = statusOf(ticket.vm, this.clones.get(ticket.vm), ticket.cloneUuid);
    ws.send(JSON.stringify({ type: 'session', session: token, status }));
  }

  private openProxy(
    session: Session,
    ws: WebSocket,
    socket: Socket,
    target: { host: string; port: number },
  ): void {
    const log = this.o.log.child({ session: session.record.id, vm: session.record.vm });
    const splice = this.o.splice;
    const proxy = new VncProxy(ws, socket, target, {
      spliceHelper: 'helper' in splice ? splice.helper : undefined,
      onDataPath: (path, why) => log.info('vnc data path', { path, why }),
    });
    session.proxies.add(proxy);
    session.connections++;
    log.info('vnc connection opened', {
      target: `${target.host}:${target.port}`,
      ...('whyNot' in splice ? { dataPath: 'js', why: splice.whyNot } : {}),
    });
    void proxy.ended.then((end) => {
      session.proxies.delete(proxy);
      session.bytesToBrowser += proxy.stats.bytesToBrowser;
      session.bytesToVnc += proxy.stats.bytesToVnc;
      log.info('vnc connection closed', {
        reason: end.reason,
        dataPath: proxy.dataPath,
        ...proxy.stats,
      });
      if (!session.closed) void this.publishSession(session);
    });
  }

  private async endSession(session: Session, code: number, reason: string): Promise<void> {
    if (session.closed) return;
    session.closed = true;
    this.sessions.delete(session.token);
    const ended = [...session.proxies].map((p) => {
      p.close(code, reason);
      return p.ended;
    });
    await Promise.all(ended);
    // Let each proxy's own handler add its bytes first.
    await new Promise((r) => setImmediate(r));
    if (session.control.readyState === session.control.OPEN) {
      // A close reason is at most 123 bytes (RFC 6455).
      session.control.close(code, Buffer.from(reason).subarray(0, 120).toString());
    }
    setTimeout(() => session.control.terminate(), 2000).unref();
    this.o.log.info('console session closed', {
      session: session.record.id,
      vm: session.record.vm,
      reason,
      connections: session.connections,
      bytesToBrowser: session.bytesToBrowser,
      bytesToVnc: session.bytesToVnc,
    });
    await this.publishSession(session, reason);
  }

  /** The session's record under console/sessions/ for dom0's audit. */
  private async publishSession(session: Session, closeReason?: string): Promise<void> {
    const rec: SessionRecord = {
      ...session.record,
      connections: session.connections,
      bytesToBrowser: session.bytesToBrowser,
      bytesToVnc: session.bytesToVnc,
      ...(closeReason === undefined ? {} : { closedAt: this.now(), closeReason }),
    };
    await this.o.xs
      .write(sessionNode(rec.id), encodeSession(rec))
      .catch((err) => this.o.log.warn('cannot publish a session record', { error: err }));
  }

  /** Open records of a previous run: that run's sessions are over. */
  private async closeStaleSessions(): Promise<void> {
    for (const { id, record: rec } of await readSessionRecords(this.o.xs)) {
      if (!rec || rec.closedAt !== undefined) continue;
      const closed = { ...rec, closedAt: this.now(), closeReason: 'console monitor restarted' };
      await this.o.xs.write(sessionNode(id), encodeSession(closed));
    }
  }

  private cloneChanged(
    vm: string,
    now: CloneConsole | undefined,
    before: CloneConsole | undefined,
  ) {
    for (const s of this.sessions.values()) {
      if (s.record.vm !== vm || s.closed) continue;
      const status = statusOf(vm, now, s.record.cloneUuid);
      if (s.control.readyState === s.control.OPEN) s.control.send(JSON.stringify(status));
      if (status.console === 'removed') {
        void this.endSession(s, CLOSE.CLONE_GONE, status.reason ?? 'clone removed');
      } else if (status.console !== 'available' || !sameEndpoint(before, now)) {
        for (const p of s.proxies) p.close(CLOSE.CONSOLE_MOVED, status.reason ?? 'console moved');
      }
    }
  }

  private ping(): void {
    for (const s of this.sessions.values()) {
      if (!s.alive) {
        s.control.terminate();
        continue;
      }
      s.alive = false;
      s.control.ping();
    }
  }

  // ---- refusals -----------------------------------------------------------

  /** Answers after the reject delay, so guessing tickets is slow. */
  private refuse(socket: Socket, r: Refusal, remote: string, vm?: string): void {
    this.o.log.warn('console request refused', { code: r.code, reason: r.message, remote, vm });
    const timer = setTimeout(
      () => this.refuseNow(socket, r.status, r.code, r.message),
      this.rejectDelayMs,
    );
    socket.once('close', () => clearTimeout(timer));
  }

  private refuseNow(socket: Socket, status: number, code: string, message: string): void {
    if (socket.destroyed) return;
    const body = `${message}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
        'Content-Type: text/plain; charset=utf-8\r\n' +
        `X-ZynClone-Refusal: ${code}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Connection: close\r\n\r\n' +
        body,
    );
  }
}

type SessionTicket = Pick<SessionRecord, 'vm' | 'cloneName' | 'cloneUuid' | 'requestedBy'>;

/** Why a ticket no longer fits the clone as it is now; undefined when it fits. */
export function ticketMismatch(
  t: { vm: string; cloneUuid: string; domid: number; port: number },
  clone: CloneConsole | undefined,
): string | undefined {
  if (!clone) return `${t.vm} has no clone any more`;
  if (clone.state !== 'running') return `the clone of ${t.vm} is ${clone.state}, not running`;
  if (!clone.consoleEnabled) return `the console of ${t.vm}'s clone is disabled`;
  if (clone.cloneUuid !== t.cloneUuid || clone.domid !== t.domid || clone.vnc?.port !== t.port) {
    return `the clone of ${t.vm} was restarted or replaced since the ticket was issued; run vmclone console again`;
  }
  return undefined;
}

/** What the page is told about its clone. */
export function statusOf(
  vm: string,
  clone: CloneConsole | undefined,
  sessionUuid: string,
): StatusMessage {
  const base = {
    type: 'status' as const,
    vm,
    cloneName: clone?.cloneName ?? '',
    state: clone?.state ?? 'removed',
    domid: clone?.domid ?? null,
    lockdown: {
      generation: clone?.generation ?? null,
      ack: clone?.ack ?? null,
      acknowledged: clone ? lockdownAcked(clone) : false,
    },
  };
  const gone = (reason: string): StatusMessage => ({ ...base, console: 'removed', reason });
  const off = (reason: string): StatusMessage => ({ ...base, console: 'unavailable', reason });
  if (!clone) return gone(`the clone of ${vm} was removed`);
  if (clone.cloneUuid !== undefined && clone.cloneUuid !== sessionUuid) {
    return gone(`the clone of ${vm} was replaced by another clone`);
  }
  if (!clone.consoleEnabled) return off('the console of this clone is disabled');
  if (clone.state !== 'running') return off(`the clone is ${clone.state}`);
  if (clone.domid === undefined || clone.cloneUuid === undefined) {
    return off('the clone is between domains (rebooting)');
  }
  if (!clone.vnc) return off('the clone has no VNC server yet');
  return { ...base, console: 'available', reason: null };
}

function urlHost(listen: string): string {
  if (listen === '0.0.0.0' || listen === '::') return hostname();
  return listen.includes(':') ? `[${listen}]` : listen;
}
