// The web console in a real browser (Debian's chromium driven by
// playwright-core): open the URL `vmclone console` printed for a simulator
// clone and see that clone's own QEMU screen; Ctrl-Alt-Del reaches QEMU; a
// reboot of the clone (new domid, new VNC port) reconnects by itself. On both
// data paths of the proxy (VNC -> browser bytes copied by the monitor, or
// spliced by its helper). Screenshots are kept in
// test-artifacts/console-browser/<path>/.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grabScreen } from '../../bench/rfb-client.js';
import { qemuBinary } from '../../src/sim/console/vnc.js';
import { CHROMIUM, type HeadlessChromium, openChromium } from '../browser.js';
import { ConsoleHost, waitFor } from '../daemons/console-monitor/console-host.js';
import { DATA_PATHS } from '../daemons/console-monitor/splice-build.js';
import { skipWithout } from '../prerequisites.js';
import { E2E_NEEDS, canRunE2e } from './clone-helpers.js';

const ARTIFACTS = resolve(__dirname, '../../test-artifacts/console-browser');

interface Probe {
  connects: number;
  disconnects: number;
  desktopName: string;
  firstPaintAt: number;
  sessionOpen: boolean;
  status?: { domid: number | null; state: string; console: string };
}

const probe = (page: Page) =>
  page.evaluate(() => {
    const p = (window as unknown as { zcConsole: Probe & { rfb?: unknown } }).zcConsole;
    return { ...p, rfb: undefined } as Probe;
  });

/** SHA-256 of the canvas as RGB (noVNC's framebuffer), computed in the page. */
function canvasDigest(page: Page): Promise<string> {
  return page.evaluate(async () => {
    const rfb = (window as unknown as { zcConsole: { rfb?: { getImageData(): ImageData } } })
      .zcConsole.rfb;
    if (!rfb) return 'no connection';
    const rgba = rfb.getImageData().data;
    const rgb = new Uint8Array((rgba.length / 4) * 3);
    for (let i = 0, o = 0; i < rgba.length; i += 4, o += 3) {
      rgb[o] = rgba[i]!;
      rgb[o + 1] = rgba[i + 1]!;
      rgb[o + 2] = rgba[i + 2]!;
    }
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', rgb));
    return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
  });
}

/** True when the canvas shows exactly what QEMU's VNC server at `port` shows. */
async function showsScreenOf(page: Page, port: number): Promise<boolean> {
  const [canvas, screen] = await Promise.all([canvasDigest(page), grabScreen('127.0.0.1', port)]);
  return canvas === createHash('sha256').update(screen.rgb).digest('hex');
}

describe
  .skipIf(
    skipWithout(
      canRunE2e && qemuBinary() !== undefined && existsSync(CHROMIUM),
      `${E2E_NEEDS}, qemu-system-x86 and chromium`,
    ),
  )
  .each(DATA_PATHS)('web console in chromium, %s data path', (dataPath) => {
  let h: ConsoleHost;
  let chromiumTab: HeadlessChromium | undefined;
  let browser: BrowserContext;
  let page: Page;

  const vnc = async () => {
    const domid = Number(await h.host.xsRead('/tool/zynclone/vm/win01/clone-domid'));
    const port = Number(await h.host.xsRead(`/local/domain/${domid}/console/vnc-port`));
    return { domid, port };
  };
  const shot = (name: string) =>
    page.screenshot({ path: join(ARTIFACTS, dataPath, `${name}.png`) });

  beforeAll(async () => {
    mkdirSync(join(ARTIFACTS, dataPath), { recursive: true });
    h = await ConsoleHost.create(dataPath);
    await h.startCloneMonitor();
    await h.startConsoleMonitor();
    chromiumTab = await openChromium();
    browser = chromiumTab.context;
    page = chromiumTab.page;
  }, 180_000);

  afterAll(async () => {
    await chromiumTab?.close();
    await h?.dispose();
  }, 60_000);

  it(
    "opens the printed URL and shows the clone's own QEMU screen",
    { timeout: 60_000 },
    async () => {
      const t = await h.ticketUrl();
      await page.goto(t.url);
      await waitFor('the first frame painted', async () => {
        const p = await probe(page);
        return p.connects >= 1 && p.firstPaintAt > 0 ? p : undefined;
      });
      const p = await probe(page);
      expect(p.desktopName).toBe('QEMU (win01-clone)');
      // The ticket left the address bar with its one use.
      expect(page.url()).not.toContain('ticket');
      await expect.poll(() => page.textContent('#clone-name')).toBe('win01-clone');
      expect(await page.textContent('#vm')).toBe('win01');
      expect(await page.textContent('#state')).toBe(`running (domain ${t.domid})`);
      expect(await page.textContent('#lockdown')).toMatch(/^acknowledged \(generation \d+\)$/);

      const { port } = await vnc();
      await expect.poll(() => showsScreenOf(page, port), { timeout: 10_000 }).toBe(true);
      // The screen is QEMU's text page with the name on it, not an empty canvas.
      const screen = await grabScreen('127.0.0.1', port);
      expect(new Set(screen.rgb.toString('hex').match(/.{6}/g)).size).toBeGreaterThan(1);
      // The screen went the way this suite is about.
      const logged = (msg: string, field: string) =>
        h
          .consoleLog()
          .split('\n')
          .some((l) => l.includes(`"msg":"${msg}"`) && l.includes(field));
      if (dataPath === 'splice') expect(logged('vnc data path', '"path":"splice"')).toBe(true);
      else expect(logged('vnc connection opened', '"dataPath":"js"')).toBe(true);
      await shot('1-connected');

      // The same link a second time: the ticket is spent, and the page says so.
      const again = await browser.newPage();
      try {
        await again.goto(t.url);
        await expect
          .poll(() => again.textContent('#message'), { timeout: 15_000 })
          .toContain('This console link cannot be used');
        expect((await probe(again)).connects).toBe(0);
      } finally {
        await again.close();
      }
    },
  );

  it(
    'sends Ctrl-Alt-Del to QEMU (the guest BIOS reboots and counts one more boot)',
    { timeout: 60_000 },
    async () => {
      const { port } = await vnc();
      const before = await grabScreen('127.0.0.1', port);
      await page.click('#ctrl-alt-del');
      const after = await waitFor('QEMU to reboot the guest', async () => {
        const now = await grabScreen('127.0.0.1', port);
        return now.rgb.equals(before.rgb) ? undefined : now;
      });
      // Same domain, same VNC server: the page shows the new boot without reconnecting.
      await expect.poll(() => showsScreenOf(page, port), { timeout: 10_000 }).toBe(true);
      expect(after.desktopName).toBe('QEMU (win01-clone)');
      await shot('2-after-ctrl-alt-del');
    },
  );

  it('follows a reboot of the clone to its new domain and VNC port', async () => {
    const old = await vnc();
    const connects = (await probe(page)).connects;
    const r = await h.host.xl('reboot', '-F', 'win01-clone');
    expect(r.code, r.stderr).toBe(0);
    const now = await waitFor(
      'the clone in a new domain',
      async () => {
        const v = await vnc().catch(() => undefined);
        return v && v.domid !== old.domid && v.port > 0 ? v : undefined;
      },
      30_000,
    );
    const p = await waitFor(
      'the page to reconnect',
      async () => {
        const x = await probe(page);
        return x.connects > connects && x.status?.domid === now.domid ? x : undefined;
      },
      30_000,
    );
    expect(p.disconnects).toBeGreaterThanOrEqual(1);
    expect(p.sessionOpen).toBe(true);
    await expect.poll(() => page.textContent('#state')).toBe(`running (domain ${now.domid})`);
    await expect.poll(() => showsScreenOf(page, now.port), { timeout: 10_000 }).toBe(true);
    await shot('3-after-reboot');
  }, 90_000);

  it('says the console is over when the clone is removed', async () => {
    expect((await h.vmclone(['remove', 'win01', '-q'])).code).toBe(0);
    await expect
      .poll(() => page.textContent('#message'), { timeout: 15_000 })
      .toMatch(/console session ended: the clone of win01 was removed/);
    expect((await probe(page)).sessionOpen).toBe(false);
    await shot('4-removed');
  });
});
