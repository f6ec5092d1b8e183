import { mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import {
  XENSTORE_PAYLOAD_MAX,
  type XsFrame,
  type XsPerm,
  XsType,
  xsTypeName,
} from '../../xenstore/wire.js';
import { Connection, type ConnectionLimits, Turns } from './connection.js';
import { XsdError, fail } from './errors.js';
import { canonicalize, domainPath } from './paths.js';
import { DOMID_ANY, type Principal, formatPerms, parsePerms } from './perms.js';
import { type Quotas, resolveQuotas } from './quotas.js';
import { type ChangeEvent, type NodeView, Store, TreeOps, TxView, ownerOf } from './tree.js';
import { type Watch, matchingWatches, reportedPath, watchPermitted } from './watches.js';

export type { Quotas } from './quotas.js';

export interface XenstoreServerOptions {
  socketPath: string;
  domainSocketDir?: string;
  quotas?: Partial<Quotas>;
  logger?: (rec: Record<string, unknown>) => void;
}

const PRIV_DOMID = 0;
/** Xen's DOMID_SELF: always "introduced". */
const DOMID_SELF = 0x7ff0;
const OK = Buffer.from('OK\0', 'latin1');
const INTRODUCE_DOMAIN = '@introduceDomain';
const RELEASE_DOMAIN = '@releaseDomain';
/** dom0 is never limited; its requests wait unread only to bound memory. */
const PRIVILEGED_LIMITS: ConnectionLimits = {
  outstandingRequests: 1024,
  queuedWatchEvents: Number.POSITIVE_INFINITY,
};

interface Domain {
  domid: number;
  mfn: string;
  port: number;
  socketPath: string;
  listener: net.Server;
  connections: Set<Connection>;
  /** SET_TARGET: this domain acts with the rights of that one (a stub domain's device model). */
  target?: number;
  ready: Promise<void>;
  /** The write rate limit's credit (C xenstored's wrl_credit), in writes, and when it was last brought up to date. */
  writeCredit: number;
  creditAt: number;
}

/** What the write rate limit charges: a change outside a transaction, or a commit. */
const WRITE_TYPES: ReadonlySet<number> = new Set([
  XsType.WRITE,
  XsType.MKDIR,
  XsType.RM,
  XsType.SET_PERMS,
]);

/** A request's payload split at NULs like xenstored's get_strings(). */
function getStrings(payload: Buffer): string[] {
  const out: string[] = [];
  let off = 0;
  for (;;) {
    const nul = payload.indexOf(0, off);
    if (nul < 0) break;
    out.push(payload.toString('latin1', off, nul));
    off = nul + 1;
  }
  return out;
}

/** onearg(): exactly one string, NUL-terminated. */
function oneArg(payload: Buffer): string {
  if (payload.length === 0 || payload.indexOf(0) !== payload.length - 1) {
    fail('EINVAL', 'expected exactly one NUL-terminated argument');
  }
  return payload.toString('latin1', 0, payload.length - 1);
}

function parseDomid(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 65535) fail('EINVAL', `bad domid '${text}'`);
  return Number(text);
}

function nulTerminated(text: string): Buffer {
  return Buffer.from(`${text}\0`, 'latin1');
}

/**
 * A XenStore daemon speaking xs_wire on Unix sockets. Clients of the main socket
 * are dom0 (privileged); each introduced domain gets its own socket whose
 * clients act as that domain, the way a guest's xenbus device would.
 */
export class XenstoreServer {
  private readonly store = new Store();
  private readonly connections = new Set<Connection>();
  private readonly domains = new Map<number, Domain>();
  private readonly quotas: Quotas;
  private readonly turns = new Turns((c, f) => this.handleFrame(c, f));
  private readonly log: (rec: Record<string, unknown>) => void;
  private readonly socketDir: string;
  private main!: net.Server;
  private closing: Promise<void> | undefined;

  private constructor(private readonly opts: XenstoreServerOptions) {
    this.quotas = resolveQuotas(opts.quotas);
    this.log = opts.logger ?? (() => {});
    this.socketDir = opts.domainSocketDir ?? path.dirname(opts.socketPath);
    this.setupStructure();
  }

  static async start(opts: XenstoreServerOptions): Promise<XenstoreServer> {
    const server = new XenstoreServer(opts);
    await mkdir(server.socketDir, { recursive: true });
    await mkdir(path.dirname(opts.socketPath), { recursive: true });
    server.main = await server.listen(opts.socketPath, (socket) =>
      server.accept(socket, PRIV_DOMID, true),
    );
    server.log({ event: 'listening', socket: opts.socketPath, domainSocketDir: server.socketDir });
    return server;
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  domainSocketPath(domid: number): string {
    return path.join(this.socketDir, `dom${domid}.sock`);
  }

  /** What a domain's connections hold now: requests read and unanswered, watch events dropped. */
  domainLoad(domid: number): { queuedRequests: number; droppedWatchEvents: number } {
    let queuedRequests = 0;
    let droppedWatchEvents = 0;
    for (const c of this.connections) {
      if (c.domid !== domid) continue;
      queuedRequests += c.queuedRequests;
      droppedWatchEvents += c.droppedWatchEvents;
    }
    return { queuedRequests, droppedWatchEvents };
  }

  /** Closes every connection and listener and removes the socket files. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    for (const conn of [...this.connections]) conn.close('server closing');
    const domains = [...this.domains.values()];
    this.domains.clear();
    await Promise.all([
      closeListener(this.main, this.opts.socketPath),
      ...domains.map((d) => d.ready.then(() => closeListener(d.listener, d.socketPath))),
    ]);
    this.log({ event: 'closed', socket: this.opts.socketPath });
  }

  // C xenstored's setup_structure(), plus what xen-init-dom0 writes at boot.
  private setupStructure(): void {
    const dom0: XsPerm[] = [{ domid: PRIV_DOMID, access: 'none' }];
    const empty = Buffer.alloc(0);
    this.store.put('/', { value: empty, perms: dom0, children: ['tool', 'local'] });
    this.store.put('/tool', { value: empty, perms: dom0, children: ['xenstored'] });
    this.store.put('/tool/xenstored', { value: empty, perms: dom0, children: [] });
    this.store.put('/local', { value: empty, perms: dom0, children: ['domain'] });
    this.store.put('/local/domain', { value: empty, perms: dom0, children: ['0'] });
    this.store.put('/local/domain/0', { value: empty, perms: dom0, children: ['domid', 'name'] });
    this.store.put('/local/domain/0/domid', {
      value: Buffer.from('0'),
      perms: dom0,
      children: [],
    });
    this.store.put('/local/domain/0/name', {
      value: Buffer.from('Domain-0'),
      perms: dom0,
      children: [],
    });
    this.store.put(RELEASE_DOMAIN, {
      value: empty,
      perms: [...dom0, { domid: DOMID_ANY, access: 'read' }],
      children: [],
    });
    this.store.put(INTRODUCE_DOMAIN, { value: empty, perms: dom0, children: [] });
  }

  private listen(socketPath: string, onSocket: (s: net.Socket) => void): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      const srv = net.createServer(onSocket);
      const tryListen = (retried: boolean): void => {
        srv.once('error', async (err: NodeJS.ErrnoException) => {
          if (err.code === 'EADDRINUSE' && !retried && !(await socketAlive(socketPath))) {
            await unlink(socketPath).catch(() => {});
            tryListen(true);
            return;
          }
          reject(err);
        });
        srv.listen(socketPath, () => {
          srv.removeAllListeners('error');
          srv.on('error', (e) =>
            this.log({ event: 'listener-error', socket: socketPath, error: String(e) }),
          );
          resolve(srv);
        });
      };
      tryListen(false);
    });
  }

  private accept(socket: net.Socket, domid: number, privileged: boolean): Connection {
    const conn = new Connection(
      socket,
      domid,
      privileged,
      privileged ? PRIVILEGED_LIMITS : this.quotas,
      this.turns,
      (c, reason) => {
        this.connections.delete(c);
        this.domains.get(c.domid)?.connections.delete(c);
        this.log({ event: 'disconnect', conn: c.id, domid: c.domid, reason });
      },
    );
    if (this.closing) {
      conn.close('server closing');
      return conn;
    }
    this.connections.add(conn);
    this.log({ event: 'connect', conn: conn.id, domid });
    return conn;
  }

  private principal(conn: Connection): Principal {
    return {
      domid: conn.domid,
      privileged: conn.privileged,
      target: this.domains.get(conn.domid)?.target,
    };
  }

  private handleFrame(conn: Connection, frame: XsFrame): void | Promise<void> {
    const reply = (payload: Buffer, type: number = frame.type): void => {
      if (payload.length > XENSTORE_PAYLOAD_MAX) {
        conn.send({ ...frame, type: XsType.ERROR, payload: nulTerminated('E2BIG') });
        return;
      }
      conn.send({ type, reqId: frame.reqId, txId: frame.txId, payload });
    };
    const onError = (err: unknown): void => {
      if (err instanceof XsdError) {
        reply(nulTerminated(err.errno), XsType.ERROR);
        return;
      }
      this.log({ event: 'internal-error', conn: conn.id, op: frame.type, error: String(err) });
      reply(nulTerminated('EIO'), XsType.ERROR);
    };
    try {
      const pending = this.dispatch(conn, frame, reply);
      if (pending) return pending.catch(onError);
    } catch (err) {
      onError(err);
    }
  }

  private dispatch(
    conn: Connection,
    frame: XsFrame,
    reply: (payload: Buffer) => void,
  ): void | Promise<void> {
    const who = this.principal(conn);
    const type = frame.type;
    const name = xsTypeName(type);
    const privOnly: number[] = [
      XsType.CONTROL,
      XsType.INTRODUCE,
      XsType.RELEASE,
      XsType.IS_DOMAIN_INTRODUCED,
      XsType.RESUME,
      XsType.SET_TARGET,
    ];
    if (
      name === undefined ||
      type === XsType.WATCH_EVENT ||
      type === XsType.ERROR ||
      type === XsType.INVALID
    ) {
      fail('ENOSYS', `unknown operation ${type}`);
    }
    if (privOnly.includes(type) && !who.privileged) fail('EACCES', `${name} is privileged`);

    if (
      !who.privileged &&
      ((WRITE_TYPES.has(type) && frame.txId === 0) || type === XsType.TRANSACTION_END)
    ) {
      this.chargeWrite(conn.domid);
    }
    let tx: TxView | undefined;
    if (type !== XsType.WATCH && type !== XsType.UNWATCH && frame.txId !== 0) {
      tx = conn.transactions.get(frame.txId);
      if (!tx) fail('ENOENT', `no transaction ${frame.txId}`);
    }
    const view: NodeView = tx ?? this.store;
    const events: ChangeEvent[] = tx ? tx.events : [];
    const ops = new TreeOps(view, who, this.quotas, events);
    const canon = (p: string, special = false): string =>
      canonicalize(p, who.domid, special, this.quotas.maxPathLength);
    const payload = frame.payload;

    switch (type) {
      case XsType.READ:
        reply(ops.read(canon(oneArg(payload))));
        return;
      case XsType.DIRECTORY: {
        const node = ops.directory(canon(oneArg(payload)));
        reply(Buffer.from(node.children.map((c) => `${c}\0`).join(''), 'latin1'));
        return;
      }
      case XsType.DIRECTORY_PART:
        reply(this.directoryPart(ops, payload, canon));
        return;
      case XsType.GET_PERMS:
        reply(formatPerms(ops.getPerms(canon(oneArg(payload), true))));
        return;
      case XsType.WRITE: {
        const nul = payload.indexOf(0);
        if (nul < 0) fail('EINVAL', 'WRITE without a NUL after the path');
        ops.write(
          canon(payload.toString('latin1', 0, nul)),
          Buffer.from(payload.subarray(nul + 1)),
        );
        this.fire(events, tx);
        reply(OK);
        return;
      }
      case XsType.MKDIR:
        ops.mkdir(canon(oneArg(payload)));
        this.fire(events, tx);
        reply(OK);
        return;
      case XsType.RM:
        ops.rm(canon(oneArg(payload)));
        this.fire(events, tx);
        reply(OK);
        return;
      case XsType.SET_PERMS: {
        const parts = getStrings(payload);
        if (parts.length < 2) fail('EINVAL', 'SET_PERMS needs a path and at least one permission');
        const target = canon(parts[0]!, true);
        ops.setPerms(target, parsePerms(parts.slice(1)));
        this.fire(events, tx);
        reply(OK);
        return;
      }
      case XsType.WATCH:
        this.watch(conn, who, payload, canon, reply);
        return;
      case XsType.UNWATCH: {
        const parts = getStrings(payload);
        if (parts.length !== 2) fail('EINVAL', 'UNWATCH needs a path and a token');
        const p = canon(parts[0]!, true);
        const i = conn.watches.findIndex((w) => w.path === p && w.token === parts[1]);
        if (i < 0) fail('ENOENT', `no watch on ${p} with that token`);
        conn.watches.splice(i, 1);
        reply(OK);
        return;
      }
      case XsType.TRANSACTION_START: {
        if (tx) fail('EBUSY', 'nested transactions are not supported');
        if (
          !who.privileged &&
          this.countForDomain(conn.domid, (c) => c.transactions.size) >=
            this.quotas.transactionsPerDomain
        ) {
          fail(
            'ENOSPC',
            `domain ${conn.domid} has ${this.quotas.transactionsPerDomain} transactions open`,
          );
        }
        const id = conn.allocTxId();
        conn.transactions.set(id, new TxView(this.store));
        reply(nulTerminated(String(id)));
        return;
      }
      case XsType.TRANSACTION_END: {
        const arg = oneArg(payload);
        if (arg !== 'T' && arg !== 'F')
          fail('EINVAL', `TRANSACTION_END wants T or F, got '${arg}'`);
        if (!tx) fail('ENOENT', 'no transaction given');
        conn.transactions.delete(frame.txId);
        if (arg === 'T') {
          if (tx.conflicts()) fail('EAGAIN', `transaction ${frame.txId} conflicts`);
          tx.apply();
          this.fire(tx.events, undefined);
        }
        reply(OK);
        return;
      }
      case XsType.GET_DOMAIN_PATH:
        reply(nulTerminated(domainPath(parseDomid(oneArg(payload)))));
        return;
      case XsType.IS_DOMAIN_INTRODUCED: {
        const domid = parseDomid(oneArg(payload));
        const known = domid === PRIV_DOMID || domid === DOMID_SELF || this.domains.has(domid);
        reply(nulTerminated(known ? 'T' : 'F'));
        return;
      }
      case XsType.INTRODUCE:
        return this.introduce(payload).then(() => reply(OK));
      case XsType.RELEASE:
        return this.release(this.domainArg(payload).domid).then(() => reply(OK));
      case XsType.RESUME:
        this.domainArg(payload);
        reply(OK);
        return;
      case XsType.SET_TARGET: {
        const parts = getStrings(payload);
        if (parts.length < 2) fail('EINVAL', 'SET_TARGET needs two domids');
        const domid = parseDomid(parts[0]!);
        const target = parseDomid(parts[1]!);
        const domain = this.domains.get(domid);
        if (!domain || !this.domains.has(target)) fail('ENOENT', 'domain not introduced');
        domain.target = target;
        reply(OK);
        return;
      }
      case XsType.RESET_WATCHES:
        conn.watches.length = 0;
        conn.transactions.clear();
        reply(OK);
        return;
      case XsType.CONTROL: {
        const parts = getStrings(payload);
        if (parts[0] === 'print') {
          this.log({ event: 'control-print', text: parts.slice(1).join(' ') });
          reply(OK);
          return;
        }
        fail('EINVAL', `unsupported control command '${parts[0] ?? ''}'`);
        return;
      }
      default:
        fail('ENOSYS', `unsupported operation ${name}`);
    }
  }

  private directoryPart(ops: TreeOps, payload: Buffer, canon: (p: string) => string): Buffer {
    const parts = getStrings(payload);
    if (parts.length !== 2 || payload[payload.length - 1] !== 0) {
      fail('EINVAL', 'DIRECTORY_PART needs a path and an offset');
    }
    const node = ops.directory(canon(parts[0]!));
    const offset = Number.parseInt(parts[1]!, 10) || 0;
    const children = Buffer.from(node.children.map((c) => `${c}\0`).join(''), 'latin1');
    const gen = nulTerminated(String(node.generation));
    if (offset >= children.length) return Buffer.concat([gen, Buffer.from([0])]);
    // As C xenstored: whole names only, and a final empty string once the list is complete.
    const maxlen = XENSTORE_PAYLOAD_MAX - gen.length - 1;
    let len = 0;
    let pos = offset;
    while (pos < children.length) {
      const end = children.indexOf(0, pos);
      const nameLen = end - pos;
      if (len + nameLen >= maxlen) break;
      len += nameLen + 1;
      pos = end + 1;
    }
    const chunk = children.subarray(offset, offset + len);
    const done = offset + len === children.length;
    return Buffer.concat([gen, chunk, done ? Buffer.from([0]) : Buffer.alloc(0)]);
  }

  private watch(
    conn: Connection,
    who: Principal,
    payload: Buffer,
    canon: (p: string, special?: boolean) => string,
    reply: (payload: Buffer) => void,
  ): void {
    const parts = getStrings(payload);
    if (parts.length !== 2) fail('EINVAL', 'WATCH needs a path and a token');
    const raw = parts[0]!;
    const token = parts[1]!;
    const relative = !raw.startsWith('/') && !raw.startsWith('@');
    const p = canon(raw, true);
    if (conn.watches.some((w) => w.path === p && w.token === token)) {
      fail('EEXIST', `watch on ${p} with that token exists`);
    }
    if (
      !who.privileged &&
      this.countForDomain(conn.domid, (c) => c.watches.length) >= this.quotas.watchesPerDomain
    ) {
      // Xen 4.17's xenstored answers an exceeded watch quota with E2BIG.
      fail('E2BIG', `domain ${conn.domid} has ${this.quotas.watchesPerDomain} watches`);
    }
    const w: Watch = {
      path: p,
      token,
      prefixLength: relative ? domainPath(conn.domid).length + 1 : 0,
    };
    conn.watches.push(w);
    reply(OK);
    this.sendEvent(conn, reportedPath(w, p), token);
  }

  /**
   * C xenstored's write rate limit (XSA-206): a domain's writes spend credit
   * that comes back at `writeRate` a second, up to `writeBurst`; in debt, its
   * connections are not read until the debt is paid.
   */
  private chargeWrite(domid: number): void {
    const domain = this.domains.get(domid);
    const rate = this.quotas.writeRate;
    if (!domain || rate === 0) return;
    const now = performance.now();
    domain.writeCredit = Math.min(
      this.quotas.writeBurst,
      domain.writeCredit + ((now - domain.creditAt) * rate) / 1000,
    );
    domain.creditAt = now;
    domain.writeCredit -= 1;
    if (domain.writeCredit < 0) {
      const until = now + (-domain.writeCredit * 1000) / rate;
      for (const conn of domain.connections) conn.holdUntil(until);
    }
  }

  private countForDomain(domid: number, count: (c: Connection) => number): number {
    let n = 0;
    for (const c of this.connections) if (c.domid === domid && !c.privileged) n += count(c);
    return n;
  }

  private sendEvent(conn: Connection, eventPath: string, token: string): void {
    conn.send({
      type: XsType.WATCH_EVENT,
      reqId: 0,
      txId: 0,
      payload: Buffer.from(`${eventPath}\0${token}\0`, 'latin1'),
    });
  }

  /** Delivers events now, or keeps them for the commit when inside a transaction. */
  private fire(events: ChangeEvent[], tx: TxView | undefined): void {
    if (tx) return;
    for (const event of events) {
      for (const conn of this.connections) {
        if (conn.watches.length === 0) continue;
        const matching = matchingWatches(conn.watches, event);
        if (matching.length === 0 || !watchPermitted(this.principal(conn), event)) continue;
        for (const w of matching) this.sendEvent(conn, reportedPath(w, event.path), w.token);
      }
    }
  }

  private fireSpecial(special: string): void {
    this.fire(
      [
        {
          path: special,
          match: 'exact',
          perms: this.store.get(special)?.perms,
          parentPerms: undefined,
        },
      ],
      undefined,
    );
  }

  private domainArg(payload: Buffer): Domain {
    const domid = parseDomid(oneArg(payload));
    if (domid === PRIV_DOMID) fail('EINVAL', 'domain 0 cannot be released or resumed');
    const domain = this.domains.get(domid);
    if (!domain) fail('ENOENT', `domain ${domid} is not introduced`);
    return domain;
  }

  private async introduce(payload: Buffer): Promise<void> {
    const parts = getStrings(payload);
    if (parts.length < 3) fail('EINVAL', 'INTRODUCE needs domid, mfn and port');
    const domid = parseDomid(parts[0]!);
    const port = Number.parseInt(parts[2]!, 10);
    if (!(port > 0)) fail('EINVAL', `bad event channel port '${parts[2]}'`);
    if (domid === PRIV_DOMID) return;
    const existing = this.domains.get(domid);
    if (existing) {
      existing.port = port;
      await existing.ready;
      return;
    }
    const socketPath = this.domainSocketPath(domid);
    const connections = new Set<Connection>();
    const domain: Domain = {
      domid,
      mfn: parts[1]!,
      port,
      socketPath,
      connections,
      listener: undefined as unknown as net.Server,
      ready: Promise.resolve(),
      writeCredit: this.quotas.writeBurst,
      creditAt: performance.now(),
    };
    domain.ready = this.listen(socketPath, (socket) => {
      if (this.domains.get(domid) !== domain) {
        socket.destroy();
        return;
      }
      connections.add(this.accept(socket, domid, false));
    }).then((listener) => {
      domain.listener = listener;
    });
    this.domains.set(domid, domain);
    try {
      await domain.ready;
    } catch (err) {
      this.domains.delete(domid);
      this.log({ event: 'introduce-failed', domid, socket: socketPath, error: String(err) });
      fail('EIO', `cannot listen on ${socketPath}`);
    }
    this.log({ event: 'introduce', domid, socket: socketPath });
    this.fireSpecial(INTRODUCE_DOMAIN);
  }

  private async release(domid: number): Promise<void> {
    const domain = this.domains.get(domid)!;
    this.domains.delete(domid);
    for (const conn of [...domain.connections]) conn.close(`domain ${domid} released`);
    for (const conn of this.connections) {
      if (conn.domid === domid) conn.close(`domain ${domid} released`);
    }
    this.dropDomainPerms(domid);
    await domain.ready.then(() => closeListener(domain.listener, domain.socketPath));
    this.log({ event: 'release', domid });
    this.fireSpecial(RELEASE_DOMAIN);
  }

  /** domain_tree_remove(): a gone domain's nodes pass to dom0 and its ACL entries vanish. */
  private dropDomainPerms(domid: number): void {
    for (const p of [...this.store.paths()]) {
      const node = this.store.get(p)!;
      if (!node.perms.some((x) => x.domid === domid)) continue;
      const perms = node.perms
        .map((x, i) => (i === 0 && x.domid === domid ? { ...x, domid: PRIV_DOMID } : x))
        .filter((x, i) => i === 0 || x.domid !== domid);
      if (ownerOf(node) !== ownerOf({ ...node, perms }) || perms.length !== node.perms.length) {
        this.store.put(p, { value: node.value, perms, children: node.children });
      }
    }
  }
}

async function socketAlive(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function closeListener(listener: net.Server | undefined, socketPath: string): Promise<void> {
  if (listener) await new Promise<void>((resolve) => listener.close(() => resolve()));
  // Node removes a Unix socket file it bound on close; unlink stays for a crashed predecessor's.
  await unlink(socketPath).catch(() => {});
}
