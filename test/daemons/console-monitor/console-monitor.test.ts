// clone_console_monitor as a process on a simulated host, against the real
// QEMU VNC server of a running clone: tickets at the HTTP level (every
// refusal, delayed), the RFB proxy, the guest's view of the ticket node,
// session audit, and proxy robustness (client gone, 50 consoles, a slow
// client, the VNC server killed, the clone removed); on both data paths of
// the proxy (VNC -> browser bytes copied by the monitor, or spliced by its
// helper).
import { readFileSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { openWs, readFrame, requestFrame, rfbHandshake } from '../../../bench/rfb-client.js';
import {
  TICKET_ROOT,
  encodeTicket,
  issueConsoleTicket,
  newTicketToken,
  ticketHash,
  ticketNode,
} from '../../../src/core/console/index.js';
import { validateVmName, zynclonePaths } from '../../../src/core/paths.js';
import { type StateStore, openStateStore } from '../../../src/core/state/index.js';
import { qemuBinary } from '../../../src/sim/console/vnc.js';
import { XlDriver } from '../../../src/xen/index.js';
import { XsClient, isXsErrno } from '../../../src/xenstore/index.js';
import { E2E_NEEDS, canRunE2e, run } from '../../e2e/clone-helpers.js';
import { skipWithout } from '../../prerequisites.js';
import { writeLoopbackCert } from '../../tls.js';
import { ConsoleHost, waitFor } from './console-host.js';
import { DATA_PATHS } from './splice-build.js';

const REJECT_DELAY_MS = 300;

describe
  .skipIf(skipWithout(canRunE2e && qemuBinary() !== undefined, `${E2E_NEEDS}, qemu-system-x86`))
  .each(DATA_PATHS)('clone_console_monitor, %s data path', (dataPath) => {
  let h: ConsoleHost;
  let xs: XsClient;
  let store: StateStore;
  let wsBase: string;

  const sessionUrl = (vm: string, ticket?: string) =>
    `${wsBase}/session/${vm}${ticket === undefined ? '' : `?ticket=${encodeURIComponent(ticket)}`}`;
  const tokenOf = (url: string) => new URL(url).hash.replace(/^#ticket=/, '');

  /** Redeems a ticket URL; resolves with the control socket and its first message. */
  async function openSession(url: string) {
    const vm = decodeURIComponent(new URL(url).pathname.split('/').pop()!);
    const r = await openWs(sessionUrl(vm, tokenOf(url)));
    if ('refused' in r) throw new Error(`refused: ${JSON.stringify(r.refused)}`);
    const messages = {
      at: (i: number) =>
        r.received.map((d) => JSON.parse(String(d)) as Record<string, unknown>).at(i),
    };
    const first = await waitFor('the session message', () => messages.at(0));
    const closed = new Promise<{ code: number; reason: string }>((res) =>
      r.ws.once('close', (code, reason) => res({ code, reason: reason.toString() })),
    );
    return { control: r.ws, first, messages, closed, session: first.session as string };
  }

  async function openVnc(vm: string, session: string) {
    const r = await openWs(`${wsBase}/vnc/${vm}?session=${session}`, ['binary']);
    if ('refused' in r) throw new Error(`vnc refused: ${JSON.stringify(r.refused)}`);
    return r;
  }

  /** A ticket from the same issuer vmclone uses, without a process per ticket. */
  async function issue(vm = 'win01') {
    return issueConsoleTicket(
      { xs, store, xl: new XlDriver({ env: h.host.env }), paths: zynclonePaths(h.root) },
      validateVmName(vm),
      'user:tester',
    );
  }

  beforeAll(async () => {
    h = await ConsoleHost.create(dataPath);
    await h.startCloneMonitor();
    const url = await h.startConsoleMonitor();
    wsBase = url.replace(/^http/, 'ws');
    xs = await XsClient.connect({ path: h.socket, transport: 'socket', reconnect: false });
    store = openStateStore({ paths: zynclonePaths(h.root) });
  }, 180_000);

  afterAll(async () => {
    store?.close();
    await xs?.close().catch(() => {});
    await h?.dispose();
  }, 60_000);

  it('prints a ticket URL, serves the page, and proxies RFB to the clone QEMU', async () => {
    const t = await h.ticketUrl();
    expect(t.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/console\/win01#ticket=[A-Za-z0-9_-]{43}$/);
    const page = await fetch(t.url.replace(/#.*/, ''));
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).toContain('/assets/console.js');
    const script = await fetch(`${h.url}/assets/console.js`);
    expect(script.status).toBe(200);
    // A browser that has the script revalidates it (and keeps its compiled code).
    const etag = script.headers.get('etag');
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{22}"$/);
    const again = await fetch(`${h.url}/assets/console.js`, {
      headers: { 'If-None-Match': etag! },
    });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');

    const s = await openSession(t.url);
    expect(s.first).toMatchObject({
      type: 'session',
      status: {
        vm: 'win01',
        cloneName: 'win01-clone',
        state: 'running',
        domid: t.domid,
        console: 'available',
        lockdown: { acknowledged: true },
      },
    });
    const { ws: vnc, received } = await openVnc('win01', s.session);
    expect(vnc.protocol).toBe('binary');
    const rfb = await rfbHandshake(vnc, received);
    expect(rfb.desktopName).toBe('QEMU (win01-clone)');
    requestFrame(vnc, rfb);
    expect(await readFrame(rfb)).toBe(rfb.width * rfb.height * rfb.bytesPerPixel);
    vnc.close();
    s.control.close();
    await s.closed;
    const closedLine = await waitFor('the connection closed in the log', () =>
      h
        .consoleLog()
        .split('\n')
        .find((l) => l.includes('"msg":"vnc connection closed"')),
    );
    expect(JSON.parse(closedLine)).toMatchObject({ dataPath });

    // clone_monitor copies the closed session record into the audit: who, which clone, bytes.
    const audit = await waitFor('the console.session audit entry', () => {
      const all = store.auditLog({ vm: 'win01' });
      return all.some((a) => a.action === 'console.session') ? all : undefined;
    });
    const ticketEntry = audit.find((a) => a.action === 'console.ticket');
    const sessionEntry = audit.find((a) => a.action === 'console.session');
    expect(ticketEntry?.detail).toMatchObject({ cloneName: 'win01-clone', domid: t.domid });
    expect(sessionEntry?.who).toBe(ticketEntry?.who);
    expect(sessionEntry?.detail).toMatchObject({
      cloneName: 'win01-clone',
      connections: 1,
      ticket: (ticketEntry?.detail as { ticket: string }).ticket,
    });
    expect((sessionEntry?.detail as { bytesToBrowser: number }).bytesToBrowser).toBeGreaterThan(
      rfb.width * rfb.height,
    );
    expect((sessionEntry?.detail as { bytesToVnc: number }).bytesToVnc).toBeGreaterThan(12);
  });

  it('names the clone domain in a ticket even when its published domid is stale', async () => {
    const node = '/tool/zynclone/vm/win01/clone-domid';
    const published = await xs.read(node);
    // A domid clone_monitor has not caught up with: libxl's name node disowns it.
    await xs.write(node, '4242');
    try {
      const t = await issue();
      expect(t.domid).toBe(Number(published));
    } finally {
      await xs.write(node, published);
    }
  });

  it('is checked by vmclone doctor: heartbeat and a web console that answers', async () => {
    const r = await h.vmclone(['doctor', '--json']);
    const findings = (
      JSON.parse(r.stdout) as { findings: { check: string; ok: boolean; message: string }[] }
    ).findings;
    expect(findings.find((f) => f.check === 'heartbeat:console-monitor')).toMatchObject({
      ok: true,
    });
    expect(findings.find((f) => f.check === 'console-monitor:url')).toMatchObject({
      ok: true,
      message: `the web console answers at ${h.url}`,
    });
  });

  it('refuses a missing, unknown, expired, reused or other-clone ticket, after a delay', async () => {
    const expectRefusal = async (url: string, status: number, code: string) => {
      const r = await openWs(url);
      expect('refused' in r, `${code}: the upgrade was accepted`).toBe(true);
      if (!('refused' in r)) return;
      expect(r.refused).toMatchObject({ status, code });
      expect(r.refused.body.length).toBeGreaterThan(10);
      expect(r.refused.elapsedMs).toBeGreaterThanOrEqual(REJECT_DELAY_MS - 20);
    };
    await expectRefusal(sessionUrl('win01'), 401, 'TICKET_MISSING');
    await expectRefusal(sessionUrl('win01', newTicketToken()), 401, 'TICKET_UNKNOWN');
    await expectRefusal(sessionUrl('win01', 'not a ticket'), 401, 'TICKET_UNKNOWN');

    // Expired: a record as the issuer writes it, whose minute is over.
    const token = newTicketToken();
    const fresh = await issue();
    const now = Date.now();
    await xs.write(
      ticketNode(ticketHash(token)),
      encodeTicket({
        vm: 'win01',
        cloneName: 'win01-clone',
        cloneUuid: fresh.cloneUuid,
        domid: fresh.domid,
        port: fresh.port,
        issuedAt: now - 61_000,
        expiresAt: now - 1000,
        requestedBy: 'user:tester',
      }),
    );
    await expectRefusal(sessionUrl('win01', token), 403, 'TICKET_EXPIRED');

    // Another clone's ticket.
    await expectRefusal(sessionUrl('web01', tokenOf(fresh.url)), 403, 'TICKET_OTHER_CLONE');
    // ... is spent by that attempt, like any ticket shown once.
    await expectRefusal(sessionUrl('win01', tokenOf(fresh.url)), 403, 'TICKET_USED');

    // Reused after a successful use.
    const good = await issue();
    const s = await openSession(good.url);
    await expectRefusal(sessionUrl('win01', tokenOf(good.url)), 403, 'TICKET_USED');
    s.control.close();

    // A session token is not a ticket, and a ticket is not a session.
    const r = await openWs(`${wsBase}/vnc/win01?session=${tokenOf(good.url)}`, ['binary']);
    expect('refused' in r && r.refused).toMatchObject({ status: 403, code: 'SESSION_UNKNOWN' });
    const log = h.consoleLog();
    expect(log).toContain('"code":"TICKET_EXPIRED"');
    expect(log).not.toContain(tokenOf(good.url));
  });

  it('refuses a replayed ticket after the monitor restarted', async () => {
    const t = await issue();
    const s = await openSession(t.url);
    s.control.close();
    await s.closed;
    await ConsoleHost.stop(h.consoleMonitor, 'SIGKILL');
    await h.startCloneMonitor();
    const url = await h.startConsoleMonitor();
    wsBase = url.replace(/^http/, 'ws');
    const r = await openWs(sessionUrl('win01', tokenOf(t.url)));
    expect('refused' in r && r.refused).toMatchObject({ status: 403, code: 'TICKET_USED' });
  });

  it('keeps ticket nodes from the guest: a guest connection can neither read nor write them', async () => {
    const t = await issue();
    const node = ticketNode(ticketHash(tokenOf(t.url)));
    expect(await xs.tryRead(node)).toContain('"vm":"win01"');
    const guest = await XsClient.connect({
      path: join(h.root, `run/xenstored/domains/dom${t.domid}.sock`),
      transport: 'socket',
      reconnect: false,
    });
    try {
      const denied = async (p: Promise<unknown>) => {
        const err = await p.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isXsErrno(err, 'EACCES'), String(err)).toBe(true);
      };
      await denied(guest.read(node));
      await denied(guest.write(node, 'forged'));
      await denied(guest.directory(TICKET_ROOT));
      await denied(guest.write(`${TICKET_ROOT}/${'0'.repeat(64)}`, '{}'));
      // Nor can it move its own console to another port.
      await denied(guest.write(`/local/domain/${t.domid}/console/vnc-port`, '5999'));
    } finally {
      await guest.close();
    }
    expect(await xs.read(node)).toContain('"vm":"win01"');
  });

  it('refuses the console of a VM whose console is disabled or SPICE only', async () => {
    expect((await h.vmclone(['config', 'win01', '--set', 'console_enabled=false'])).code).toBe(0);
    const off = await h.vmclone(['console', 'win01']);
    expect(off.code, `${off.stdout}${off.stderr}${(await h.host.xl('list')).stdout}`).toBe(5);
    expect(off.stderr).toMatch(/console of win01's clone is disabled.*CONSOLE_DISABLED/);
    expect((await h.vmclone(['config', 'win01', '--unset', 'console_enabled'])).code).toBe(0);

    // A VM whose only console is SPICE: its clone runs, but gets no web console.
    const disk = join(h.root, 'var/lib/xen/images/spice01.img');
    writeFileSync(disk, Buffer.alloc(1024 * 1024));
    writeFileSync(
      join(h.root, 'etc/xen/spice01.cfg'),
      `name = "spice01"\ntype = "hvm"\nmemory = 32\nvnc = 0\nspice = 1\nspiceport = 6000\ndisk = [ 'file:${disk},hda,w' ]\n`,
    );
    const made = await h.vmclone(['create', 'spice01', '--offline', '-q']);
    expect(made.code, made.stderr).toBe(0);
    const spice = await h.vmclone(['console', 'spice01', '--json']);
    expect(spice.code).toBe(5);
    expect(JSON.parse(spice.stdout).error.code).toBe('CONSOLE_SPICE');
    expect(spice.stderr).toMatch(/spice01 uses a SPICE console only/);
    expect((await h.vmclone(['remove', 'spice01', '-q'])).code).toBe(0);

    const none = await h.vmclone(['console', 'db01']);
    expect(none.code).toBe(5);
    expect(none.stderr).toMatch(/db01 has no clone/);
  });

  it('survives a client gone mid-stream and serves 50 consoles at once', async () => {
    const s = await openSession((await issue()).url);
    const { ws: vnc, received } = await openVnc('win01', s.session);
    const rfb = await rfbHandshake(vnc, received);
    for (let i = 0; i < 20; i++) requestFrame(vnc, rfb);
    await rfb.reader.read(1000);
    // The browser vanishes without a close frame, mid-stream.
    (vnc as unknown as { _socket: { destroy(): void } })._socket.destroy();
    await waitFor(
      'the proxy to notice',
      // Whichever sees it first: the monitor (its socket closed) or the splice helper (a write failed).
      () =>
        /"reason":"browser (closed the connection|connection failed)"/.test(h.consoleLog()) ||
        undefined,
    );
    s.control.close();

    // QEMU serves at most 32 VNC clients a display, so the 50 consoles go to two clones.
    const disk = join(h.root, 'var/lib/xen/images/kiosk01.img');
    writeFileSync(disk, Buffer.alloc(1024 * 1024));
    writeFileSync(
      join(h.root, 'etc/xen/kiosk01.cfg'),
      `name = "kiosk01"\ntype = "hvm"\nmemory = 32\nvnc = 1\ndisk = [ 'file:${disk},hda,w' ]\n`,
    );
    const made = await h.vmclone(['create', 'kiosk01', '--offline', '-q']);
    expect(made.code, made.stderr).toBe(0);
    const vms = Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? 'win01' : 'kiosk01'));
    const tickets = [];
    for (const vm of vms) tickets.push(await issue(vm));
    const sessions = await Promise.all(tickets.map((t) => openSession(t.url)));
    const names = await Promise.all(
      sessions.map(async (x, i) => {
        const v = await openVnc(vms[i]!, x.session);
        // Fifty handshakes at once wait on two emulated machines: give a loaded host time.
        return (await rfbHandshake(v.ws, v.received, 60_000)).desktopName;
      }),
    );
    expect(names).toEqual(vms.map((vm) => `QEMU (${vm}-clone)`));
    for (const x of sessions) x.control.close();
    await Promise.all(sessions.map((x) => x.closed));
    expect((await h.vmclone(['remove', 'kiosk01', '-q'])).code).toBe(0);
  }, 240_000);

  it('bounds memory for a client that stops reading, and resumes when it reads again', async () => {
    const pid = h.consoleMonitor!.child.pid!;
    const rssKiB = () =>
      Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    const s = await openSession((await issue()).url);
    const { ws: vnc, received } = await openVnc('win01', s.session);
    const rfb = await rfbHandshake(vnc, received);
    const before = rssKiB();
    vnc.pause();
    // 200 full frames asked for (~230 MB of raw pixels), none read.
    for (let i = 0; i < 200; i++) requestFrame(vnc, rfb);
    await new Promise((r) => setTimeout(r, 3000));
    const grown = rssKiB() - before;
    expect(grown).toBeLessThan(64 * 1024);
    vnc.resume();
    // Frames flow again once the client reads (QEMU merges the pending requests).
    expect(await readFrame(rfb, 20_000)).toBe(rfb.width * rfb.height * rfb.bytesPerPixel);
    vnc.terminate();
    s.control.close();
  }, 60_000);

  it('serves HTTPS and WSS with the TLS files of base.json, and refuses half a TLS setting', async () => {
    const dir = join(h.root, 'etc/xen/clone');
    const cert = join(dir, 'console.crt');
    const key = join(dir, 'console.key');
    writeLoopbackCert(cert, key);
    h.setBase({ console_tls_cert: '/etc/xen/clone/console.crt' });
    const half = await run(
      process.execPath,
      [h.zynclone, 'console-monitor', '--root', h.root],
      h.host.env,
    );
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/console_tls_cert and console_tls_key must be set together/);

    h.setBase({ console_tls_key: '/etc/xen/clone/console.key' });
    await ConsoleHost.stop(h.consoleMonitor);
    const url = await h.startConsoleMonitor();
    try {
      expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      // splice cannot see through TLS: with TLS the monitor copies, and says why.
      expect(h.consoleLog()).toContain(
        dataPath === 'splice'
          ? 'TLS (splice cannot see through it)'
          : 'console_splice_helper is empty',
      );
      const ca = readFileSync(cert);
      const status = await new Promise<number>((res, rej) =>
        httpsGet(`${url}/healthz`, { ca }, (r) => res(r.statusCode ?? 0)).on('error', rej),
      );
      expect(status).toBe(200);
      const t = await h.ticketUrl();
      expect(t.url.startsWith(`${url}/console/win01#ticket=`)).toBe(true);
      const control = new WebSocket(
        `${url.replace(/^https/, 'wss')}/session/win01?ticket=${tokenOf(t.url)}`,
        { ca },
      );
      const first = await new Promise<string>((res, rej) => {
        control.once('message', (d) => res(String(d)));
        control.once('error', rej);
      });
      expect(JSON.parse(first)).toMatchObject({
        type: 'session',
        status: { console: 'available' },
      });
      control.close();
    } finally {
      h.setBase({ console_tls_cert: '', console_tls_key: '' });
      await ConsoleHost.stop(h.consoleMonitor);
      wsBase = (await h.startConsoleMonitor()).replace(/^http/, 'ws');
    }
  });

  it('closes the console when the VNC server dies, and every console when the clone is removed', async () => {
    const t = await issue();
    const s = await openSession(t.url);
    const { ws: vnc, received } = await openVnc('win01', s.session);
    await rfbHandshake(vnc, received);
    const closed = new Promise<number>((r) => vnc.once('close', (code) => r(code)));
    const pid = Number(readFileSync(join(h.root, `run/domains/${t.domid}/qemu.pid`), 'utf8'));
    process.kill(pid, 'SIGKILL');
    expect(await closed).toBe(4002);

    expect((await h.vmclone(['remove', 'win01', '-q'])).code).toBe(0);
    const end = await s.closed;
    expect(end.code).toBe(4004);
    expect(s.messages.at(-1)).toMatchObject({ type: 'status', console: 'removed' });
    const after = await h.vmclone(['console', 'win01']);
    expect(after.code).toBe(5);
  }, 60_000);
});
