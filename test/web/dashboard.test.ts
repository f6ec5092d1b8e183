// The dashboard in Debian's chromium (playwright-core, no downloaded browser)
// against a simulated host on XFS: log in, clone a VM online, watch it run,
// stop and remove it, while a second browser sees every change live.
// Screenshots go to test-artifacts/web/ (not in git).
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuBinary } from '../../src/sim/console/vnc.js';
import type { WebServer } from '../../src/web/server.js';
import { CHROMIUM, type HeadlessChromium, openChromium } from '../browser.js';
import { ConsoleHost } from '../daemons/console-monitor/console-host.js';
import { CloneHost, canRunE2e } from '../e2e/clone-helpers.js';
import { skipWithout } from '../prerequisites.js';
import { adminToken, startWeb } from './web-helpers.js';

const ARTIFACTS = resolve(__dirname, '../../test-artifacts/web');

class Browser {
  private constructor(private readonly chromium: HeadlessChromium) {}

  get page(): Page {
    return this.chromium.page;
  }

  get context(): BrowserContext {
    return this.chromium.context;
  }

  static async open(): Promise<Browser> {
    const chromium = await openChromium({ width: 1400, height: 800 });
    chromium.page.on('dialog', (d) => void d.accept());
    return new Browser(chromium);
  }

  async login(url: string, token: string): Promise<void> {
    await this.page.goto(url);
    expect(new URL(this.page.url()).pathname).toBe('/login');
    await this.page.fill('#token', token);
    await Promise.all([this.page.waitForURL(url), this.page.click('button[type=submit]')]);
    await this.page.waitForSelector('#live:text("live")');
  }

  row(vm: string) {
    return this.page.locator(`tr[data-vm="${vm}"]`);
  }

  async stateOf(vm: string, state: string, timeout = 60_000): Promise<void> {
    await this.row(vm).locator(`.clone-state:text-is("${state}")`).waitFor({ timeout });
  }

  async shot(name: string): Promise<void> {
    await this.page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  close(): Promise<void> {
    return this.chromium.close();
  }
}

describe.skipIf(
  skipWithout(canRunE2e && existsSync(CHROMIUM), 'root, loop devices, xenstore-utils, chromium'),
)('the dashboard in chromium', () => {
  let host: CloneHost;
  let server: WebServer;
  let operator: Browser;
  let watcher: Browser;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    host = await CloneHost.create();
    server = await startWeb(host, { netns: `${host.netPrefix}-netdd` });
    [operator, watcher] = await Promise.all([Browser.open(), Browser.open()]);
  }, 180_000);

  afterAll(async () => {
    await operator?.close();
    await watcher?.close();
    await server?.close();
    await host?.dispose();
  }, 60_000);

  it('refuses a wrong token on the login page', async () => {
    await operator.page.goto(server.url);
    await operator.page.fill('#token', 'not-the-token');
    await operator.page.click('button[type=submit]');
    await expect(operator.page.locator('#error').textContent()).resolves.toBe('Wrong token.');
    await operator.shot('01-login-refused');
  });

  it('clones, stops and removes through the page; a second browser sees each change live', async () => {
    const token = adminToken(host);
    await operator.login(server.url, token);
    await watcher.login(server.url, token);
    for (const b of [operator, watcher]) await b.row('web01').waitFor();
    await expect(operator.row('web01').locator('.clone-state').textContent()).resolves.toBe('-');
    await operator.shot('02-dashboard');

    await operator.row('web01').locator('select[name=kind]').selectOption('online');
    await operator.row('web01').locator('button[data-action=clone]').click();
    // The watcher follows the operation as it runs, then sees the clone running.
    await watcher.row('web01').locator('.progress:has-text("create")').waitFor({ timeout: 60_000 });
    await watcher.shot('03-watcher-sees-create-running');
    await watcher.stateOf('web01', 'running');
    await operator.stateOf('web01', 'running');
    // The progress of the finished operation is gone from both pages.
    for (const b of [operator, watcher]) {
      await b.row('web01').locator('.progress:text-is("")').waitFor({ timeout: 5000 });
    }
    const lockdown = watcher.row('web01').locator('.lockdown');
    await expect(lockdown.textContent()).resolves.toMatch(/^gen \d+, ack \d+ \(acknowledged\)$/);
    await expect(watcher.row('web01').locator('.clone-kind').textContent()).resolves.toBe('online');
    expect((await host.domains()).get('web01-clone')?.state).not.toContain('p');
    await operator.shot('04-operator-clone-running');
    await watcher.shot('05-watcher-clone-running');

    await operator.row('web01').locator('button[data-action=stop]').click();
    await watcher.stateOf('web01', 'active');
    await watcher.shot('06-watcher-clone-stopped');
    expect((await host.domains()).has('web01-clone')).toBe(false);

    await operator.row('web01').locator('button[data-action=remove]').click();
    await watcher.row('web01').locator('.clone-state:text-is("-")').waitFor({ timeout: 60_000 });
    await watcher.shot('07-watcher-clone-removed');
    expect(await host.leftovers('web01')).toEqual([]);
  }, 180_000);

  it('shows a vmclone stop on the CLI within 200 ms, without a reload', async () => {
    expect((await host.vmclone(['create', 'web01', '--online', '-q'])).code).toBe(0);
    await watcher.stateOf('web01', 'running');
    // The page notes when its state cell turns active.
    await watcher.page.evaluate(() => {
      const w = window as unknown as { activeAt?: number };
      new MutationObserver(() => {
        const cell = document.querySelector('tr[data-vm="web01"] .clone-state');
        if (cell?.textContent === 'active' && w.activeAt === undefined) w.activeAt = Date.now();
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    const stop = await host.vmclone(['stop', 'web01', '--force', '-q']);
    const exitedAt = Date.now();
    expect(stop.code).toBe(0);
    await watcher.stateOf('web01', 'active', 5000);
    const activeAt = await watcher.page.evaluate(
      () => (window as unknown as { activeAt: number }).activeAt,
    );
    process.stderr.write(
      `dashboard: CLI stop shown ${activeAt - exitedAt} ms after vmclone exited\n`,
    );
    expect(activeAt - exitedAt).toBeLessThanOrEqual(200);
    await watcher.shot('08-cli-stop-shown');
    expect((await host.vmclone(['remove', 'web01', '-q'])).code).toBe(0);
  }, 120_000);

  it('logs out: the page goes to the login page, and the session is worth nothing', async () => {
    await operator.page.goto(server.url);
    await Promise.all([
      operator.page.waitForURL(new URL('/login', server.url).href),
      operator.page.click('#logout button'),
    ]);
    await operator.page.goto(server.url);
    expect(new URL(operator.page.url()).pathname).toBe('/login');
    await operator.shot('09-logged-out');
  });
});

describe.skipIf(
  skipWithout(
    canRunE2e && existsSync(CHROMIUM) && qemuBinary() !== undefined,
    'root, loop devices, xenstore-utils, chromium, qemu-system-x86',
  ),
)('the console button in chromium', () => {
  // A running clone of win01 whose QEMU serves VNC, and clone_console_monitor.
  let h: ConsoleHost;
  let server: WebServer;
  let operator: Browser;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    h = await ConsoleHost.create();
    await h.startConsoleMonitor();
    server = await startWeb(h.host);
    operator = await Browser.open();
    await operator.login(server.url, adminToken(h.host));
  }, 180_000);

  afterAll(async () => {
    await operator?.close();
    await server?.close();
    await h?.dispose();
  }, 60_000);

  const consoleButton = () => operator.row('win01').locator('button[data-action=console]');

  it("opens the clone's console in a new tab through a fresh ticket", async () => {
    await operator.stateOf('win01', 'running');
    const [tab] = await Promise.all([
      operator.context.waitForEvent('page'),
      consoleButton().click(),
    ]);
    // The console page redeems the ticket and names the clone it shows.
    await expect
      .poll(() => tab.textContent('#clone-name'), { timeout: 15_000 })
      .toBe('win01-clone');
    const at = new URL(tab.url());
    expect(at.origin).toBe(new URL(h.url).origin);
    expect(at.pathname).toBe('/console/win01');
    expect(await tab.textContent('#state')).toMatch(/^running \(domain \d+\)$/);
    // The console tab has no handle on the dashboard.
    expect(await tab.evaluate(() => window.opener)).toBeNull();
    await tab.screenshot({ path: join(ARTIFACTS, '10-console-tab.png') });
    await tab.close();
  }, 60_000);

  it('shows the refusal and opens nothing when the console monitor is down', async () => {
    await ConsoleHost.stop(h.consoleMonitor);
    await consoleButton().click();
    await expect
      .poll(() => operator.page.textContent('#error'), { timeout: 10_000 })
      .toMatch(/^console win01: .*\[CONSOLE_MONITOR_DOWN\]$/);
    await expect.poll(() => operator.context.pages().length).toBe(1);
    await operator.shot('11-console-monitor-down');
  }, 60_000);
});
