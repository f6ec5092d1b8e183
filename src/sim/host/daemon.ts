// The simulator daemon: XenStore server, dom0's nodes, the network driver
// domain, and the domains themselves, driven through the control socket.
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import { XsClient } from '../../xenstore/index.js';
import type { ControlReply, ControlRequest } from '../control.js';
import { Journal } from '../journal.js';
import { SimNetwork } from '../network/netns.js';
import type { SimPaths } from '../paths.js';
import { XenstoreServer } from '../xenstored/server.js';
import { XlCommands, hostInfo, parseXlFaults } from '../xl/commands.js';
import { DomainManager } from './domains.js';
import { runGuestCommand } from './guest-disk.js';
import { runLiveSave } from './live-save.js';

export interface DaemonOptions {
  network?: boolean;
}

export class SimDaemon {
  private control?: Server;
  private stopping?: Promise<void>;

  private constructor(
    readonly paths: SimPaths,
    readonly journal: Journal,
    readonly xsd: XenstoreServer,
    readonly xs: XsClient,
    readonly net: SimNetwork,
    readonly dm: DomainManager,
    readonly xl: XlCommands,
    readonly log: (msg: string, fields?: Record<string, unknown>) => void,
  ) {}

  static async start(paths: SimPaths, opts: DaemonOptions = {}): Promise<SimDaemon> {
    const log = (msg: string, fields: Record<string, unknown> = {}) => {
      appendFileSync(
        paths.log,
        `${JSON.stringify({ t: new Date().toISOString(), msg, ...fields })}\n`,
      );
    };
    const journal = new Journal(paths.journal);
    journal.made({ kind: 'dir', path: paths.run });
    mkdirSync(paths.domains, { recursive: true });
    mkdirSync(paths.domainSockets, { recursive: true });
    const xsd = await XenstoreServer.start({
      socketPath: paths.xsSocket,
      domainSocketDir: paths.domainSockets,
    });
    const xs = await XsClient.connect({ path: paths.xsSocket, reconnect: false });
    // What xen-init-dom0 writes at boot.
    await xs.write('/local/domain/0/domid', '0');
    await xs.write('/local/domain/0/name', 'Domain-0');
    await xs.write('/local/pool/0/name', 'Pool-0');
    const net = await SimNetwork.init(paths, journal, opts.network ?? true);
    if (!net.enabled) log('network disabled', { reason: net.reason });
    const detachTimeout = Number(process.env.ZYNCLONE_SIM_DETACH_TIMEOUT_MS ?? '');
    const dm = new DomainManager(
      xs,
      net,
      journal,
      paths.domains,
      hostInfo(),
      log,
      (domid) => xsd.domainSocketPath(domid),
      Number.isInteger(detachTimeout) && detachTimeout > 0 ? detachTimeout : undefined,
    );
    const daemon = new SimDaemon(paths, journal, xsd, xs, net, dm, new XlCommands(dm), log);
    await daemon.listen();
    writeFileSync(paths.pidfile, `${process.pid}\n`);
    log('simulator ready', { pid: process.pid, network: net.enabled });
    return daemon;
  }

  private listen(): Promise<void> {
    rmSync(this.paths.control, { force: true });
    this.control = createServer((sock) => this.serve(sock));
    return new Promise((r, j) => {
      this.control!.once('error', j);
      this.control!.listen(this.paths.control, () => r());
    });
  }

  private serve(sock: Socket): void {
    sock.setEncoding('utf8');
    let buf = '';
    const send = (r: ControlReply) => {
      if (!sock.destroyed) sock.write(`${JSON.stringify(r)}\n`);
    };
    // Lines after the request (a live save's go-ahead) and the client's going away.
    const gone = new AbortController();
    let onLine: (() => void) | undefined;
    let started = false;
    sock.on('error', () => {});
    sock.on('close', () => gone.abort());
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      if (started) {
        onLine?.();
        return;
      }
      started = true;
      let req: ControlRequest;
      try {
        req = JSON.parse(line) as ControlRequest;
      } catch {
        send({ error: 'bad request', code: 'SIM_BAD_REQUEST' });
        return;
      }
      const next = () =>
        new Promise<void>((r) => {
          if (gone.signal.aborted) return r();
          onLine = r;
          gone.signal.addEventListener('abort', () => r(), { once: true });
        });
      void this.handle(req, send, { next, signal: gone.signal }).catch((err: Error) => {
        this.log('request failed', { error: err.stack ?? String(err) });
        send({ err: `xl: internal simulator error: ${err.message}\n` });
        send({ exit: 1 });
      });
    });
  }

  private async handle(
    req: ControlRequest,
    send: (r: ControlReply) => void,
    client: { next: () => Promise<void>; signal: AbortSignal },
  ): Promise<void> {
    if (req.op === 'ping') {
      const r: ControlReply = { ok: true, pid: process.pid, network: this.net.enabled };
      if (this.net.reason !== undefined) r.reason = this.net.reason;
      send(r);
    } else if (req.op === 'stop') {
      await this.stop();
      send({ ok: true, pid: process.pid, network: this.net.enabled });
      setImmediate(() => process.exit(0));
    } else if (req.op === 'xl') {
      let faults: Set<string>;
      try {
        faults = parseXlFaults(req.fault);
      } catch (err) {
        send({ err: `xl: ${(err as Error).message}\n` });
        send({ exit: 1 });
        return;
      }
      const code = await this.xl.run(req.argv, {
        cwd: req.cwd,
        out: (text) => send({ out: text }),
        err: (text) => send({ err: text }),
        faults,
        signal: client.signal,
      });
      send({ exit: code });
    } else if (req.op === 'livesave') {
      const code = await runLiveSave(this.dm, req.argv, {
        cwd: req.cwd,
        out: (text) => send({ out: text }),
        err: (text) => send({ err: text }),
        goAhead: client.next,
        signal: client.signal,
      });
      send({ exit: code });
    } else if (req.op === 'guest') {
      const code = await runGuestCommand(this.dm, req.argv, {
        out: (text) => send({ out: text }),
        err: (text) => send({ err: text }),
      });
      send({ exit: code });
    } else send({ error: 'unknown op', code: 'SIM_BAD_REQUEST' });
  }

  /** Destroys every domain and removes everything the simulator made. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log('simulator stopping');
      await this.dm.shutdownAll();
      await this.net.close().catch(() => {});
      await this.xs.close().catch(() => {});
      await this.xsd.close().catch(() => {});
      this.control?.close();
      rmSync(this.paths.control, { force: true });
    })();
    return this.stopping;
  }
}
