/**
 * The web console on real Xen: a PV guest with `vfb = ['vnc=1']` gets its VNC
 * server from QEMU in dom0 (Debian's qemu-system-xen, started by libxl, which
 * writes console/vnc-port). Its clone (vmclone create --offline) gets one too;
 * clone_console_monitor, run as a daemon, serves the page, `vmclone console`
 * issues a ticket, and a real RFB handshake (ProtocolVersion, security None,
 * ServerInit) and a first framebuffer update pass through the monitor's
 * WebSocket proxy. The same handshake straight to QEMU, once the guest's
 * framebuffer frontend has connected, must tell the same.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { WebSocket } from 'ws';
import {
  ByteReader,
  type RfbSession,
  openWs,
  readFrame,
  requestFrame,
  rfbHandshakeOver,
} from '../../bench/rfb-client.js';
import {
  LaneError,
  assertTrue,
  destroyQuietly,
  domainByName,
  guestConfig,
  run,
  sleep,
  waitFor,
} from '../runner/dom0-tools.js';
import type { Scenario } from '../runner/types.js';
import { makeRoot, startNetMonitor, vmclone, xsConnect } from '../runner/zynclone-tools.js';

const VM = 'zc-vnc';
const CLONE = `${VM}-clone`;
const CONSOLE_MONITOR_BUNDLE = '/lane/console-monitor.mjs';
const CONSOLE_PAGE = '/lane/console-page';

interface ConsoleMonitorHandle {
  readonly url: string;
  stop(): Promise<void>;
}

async function startConsoleMonitor(
  root: string,
  log: (l: string) => void,
  signal: AbortSignal,
): Promise<ConsoleMonitorHandle> {
  const child: ChildProcess = spawn(
    'node',
    [
      CONSOLE_MONITOR_BUNDLE,
      '--root',
      root,
      '--assets',
      CONSOLE_PAGE,
      '--heartbeat-ms',
      '2000',
      '--reject-delay-ms',
      '0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let exited: number | undefined;
  let url: string | undefined;
  child.on('exit', (code, sig) => {
    exited = code ?? -1;
    log(`console-monitor exited (${code ?? sig})`);
  });
  const onData = (buf: Buffer) => {
    for (const l of buf.toString().split('\n')) {
      if (!l.trim()) continue;
      log(`console-monitor: ${l.slice(0, 300)}`);
      if (l.includes('"msg":"serving"')) url = (JSON.parse(l) as { url: string }).url;
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const stop = async (): Promise<void> => {
    if (exited !== undefined) return;
    child.kill('SIGTERM');
    for (let i = 0; i < 50 && exited === undefined; i++) await sleep(200);
    if (exited === undefined) child.kill('SIGKILL');
  };
  try {
    const served = await waitFor(
      'the console monitor to serve',
      () => {
        if (exited !== undefined) {
          throw new LaneError('LANE_CONSOLE_MONITOR_EXIT', `console monitor exited with ${exited}`);
        }
        return url;
      },
      { timeoutMs: 60_000, signal },
    );
    return { url: served, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The QEMU processes libxl started, with their command lines (dom0 has no pgrep). */
async function deviceModels(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(pid)) continue;
    const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (argv.includes('qemu-system')) found.push(`${pid}: ${argv.split('\0').join(' ').trim()}`);
  }
  return found;
}

/** ServerInit facts of a session, the way a user would compare two screens. */
const facts = (s: RfbSession) =>
  `${s.width}x${s.height} ${s.bytesPerPixel * 8}bpp "${s.desktopName}"`;

const scenario: Scenario = {
  name: 'console-vnc',
  title: 'PV vfb served by qemu-system-xen, RFB through clone_console_monitor',
  timeoutMs: 360_000,
  async run(ctx) {
    const log = ctx.log;
    const root = await makeRoot(ctx.workDir, { storage_backend: 'copy', console_port: 0 });
    const disk = join(root, 'disk.img');
    await run('truncate', ['-s', '8M', disk], { timeoutMs: 10_000 });
    await writeFile(
      join(root, 'etc/xen', `${VM}.cfg`),
      guestConfig({
        name: VM,
        disks: [`format=raw, vdev=xvda, access=rw, target=${disk}`],
        vfbs: ['vnc=1'],
      }),
    );
    const netmon = await startNetMonitor({ log, signal: ctx.signal });
    let monitor: ConsoleMonitorHandle | undefined;
    const sockets: { close(): void }[] = [];
    const xs = await xsConnect();
    try {
      const created = await vmclone(root, ['create', VM, '--offline', '--json'], { log });
      ctx.note('create_ms', created.ms);
      const dom = await domainByName(CLONE);
      assertTrue(dom, 'LANE_NO_CLONE', `xl list does not show ${CLONE} after vmclone create`);
      log(`device models: ${(await deviceModels()).join(' | ') || 'none'}`);
      const port = Number(
        await waitFor(
          `libxl to publish the VNC port of ${CLONE}`,
          () => xs.tryRead(`/local/domain/${dom.domid}/console/vnc-port`),
          { timeoutMs: 60_000, signal: ctx.signal },
        ).catch(async (e: Error) => {
          const dmLog = await readFile(`/var/log/xen/qemu-dm-${CLONE}.log`, 'utf8').catch(
            () => '(no qemu-dm log)',
          );
          throw new LaneError(
            'LANE_NO_VNC_PORT',
            `${e.message}; qemu-dm log: ${dmLog.slice(-600)}`,
          );
        }),
      );
      const listen = await xs.tryRead(`/local/domain/${dom.domid}/console/vnc-listen`);
      log(`${CLONE} (domain ${dom.domid}): VNC on ${listen}:${port}`);
      ctx.note('vnc', `${listen}:${port}`);

      // QEMU shows a 640x480 placeholder until the guest's framebuffer
      // frontend connects (xenbus state 4) and sets the real size.
      const fbState = `/local/domain/${dom.domid}/device/vfb/0/state`;
      await waitFor(
        `the framebuffer frontend of ${CLONE} to connect`,
        async () => ((await xs.tryRead(fbState)) === '4' ? true : undefined),
        { timeoutMs: 120_000, intervalMs: 500, signal: ctx.signal },
      );
      // Straight to QEMU: what the proxy must carry unchanged.
      const tcp = connect(port, listen ?? '127.0.0.1');
      sockets.push({ close: () => tcp.destroy() });
      await new Promise<void>((res, rej) => {
        tcp.once('connect', () => res());
        tcp.once('error', rej);
      });
      const direct = await rfbHandshakeOver(ByteReader.ofSocket(tcp), (d) => tcp.write(d));
      log(`direct: ${facts(direct)}`);
      tcp.destroy();

      monitor = await startConsoleMonitor(root, log, ctx.signal);
      const page = await fetch(`${monitor.url}/console/${VM}`);
      assertTrue(
        page.status === 200 && (await page.text()).includes('/assets/console.js'),
        'LANE_CONSOLE_PAGE',
        `GET /console/${VM}: ${page.status}`,
      );
      const t0 = Date.now();
      const issued = await vmclone(root, ['console', VM, '--json'], { log });
      const link = new URL((JSON.parse(issued.stdout) as { url: string }).url);
      const ticket = new URLSearchParams(link.hash.slice(1)).get('ticket');
      assertTrue(ticket, 'LANE_NO_TICKET', `vmclone console printed no ticket: ${link.href}`);
      const wsBase = monitor.url.replace(/^http/, 'ws');

      const control = await openWs(`${wsBase}/session/${VM}?ticket=${ticket}`);
      if ('refused' in control) {
        throw new LaneError(
          'LANE_TICKET_REFUSED',
          `ticket refused: ${control.refused.status} ${control.refused.code} ${control.refused.body.trim()}`,
        );
      }
      sockets.push(control.ws);
      const first = await waitFor('the session message', () => control.received[0], {
        timeoutMs: 15_000,
        signal: ctx.signal,
      });
      const opened = JSON.parse(String(first)) as {
        session: string;
        status: { console: string; domid: number; reason: string | null };
      };
      assertTrue(
        opened.status.console === 'available' && opened.status.domid === dom.domid,
        'LANE_CONSOLE_STATUS',
        `session status: ${JSON.stringify(opened.status)}`,
      );

      const vnc = await openWs(`${wsBase}/vnc/${VM}?session=${opened.session}`, ['binary']);
      if ('refused' in vnc) {
        throw new LaneError(
          'LANE_VNC_REFUSED',
          `VNC connection refused: ${vnc.refused.status} ${vnc.refused.code} ${vnc.refused.body.trim()}`,
        );
      }
      const ws: WebSocket = vnc.ws;
      sockets.push(ws);
      ws.removeAllListeners('message');
      const proxied = await rfbHandshakeOver(ByteReader.ofWebSocket(ws, vnc.received), (d) =>
        ws.send(d),
      );
      ctx.note('handshake_ms', Date.now() - t0);
      log(`through the monitor: ${facts(proxied)}`);
      ctx.note('screen', `${proxied.width}x${proxied.height}`);
      assertTrue(
        proxied.width > 0 && proxied.height > 0,
        'LANE_RFB_SIZE',
        `ServerInit names a ${proxied.width}x${proxied.height} framebuffer`,
      );
      assertTrue(
        facts(proxied) === facts(direct),
        'LANE_RFB_DIFFERS',
        `through the monitor: ${facts(proxied)}; straight to QEMU: ${facts(direct)}`,
      );
      requestFrame(proxied, proxied);
      const pixels = await readFrame(proxied, 30_000);
      ctx.note('first_frame_bytes', pixels);
      assertTrue(pixels > 0, 'LANE_RFB_NO_PIXELS', 'the first framebuffer update had no pixels');
    } finally {
      for (const s of sockets) s.close();
      await monitor?.stop();
      await vmclone(root, ['remove', VM], { log, expect: 0 }).catch((e: Error) =>
        log(`cleanup: ${e.message}`),
      );
      await destroyQuietly(CLONE, log);
      await destroyQuietly(VM, log);
      await netmon.stop();
      await xs.close().catch(() => {});
    }
  },
};

export default scenario;
