// Opens a web console URL (as `vmclone console` prints it) in headless
// chromium, waits for the clone's screen to be painted, and saves a
// screenshot: node scripts/console-screenshot.mjs URL OUT.png
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, out] = process.argv.slice(2);
if (!url || !out) {
  process.stderr.write('usage: node scripts/console-screenshot.mjs URL OUT.png\n');
  process.exit(2);
}
const profile = mkdtempSync(join(tmpdir(), 'zynclone-console-chromium-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1024, height: 600 },
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  const page = browser.pages()[0] ?? (await browser.newPage());
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForFunction(
    () => window.zcConsole?.connects > 0 && window.zcConsole.firstPaintAt > 0,
    undefined,
    { timeout: 20_000 },
  );
  const painted = await page.evaluate(() => window.zcConsole.firstPaintAt);
  await page.waitForTimeout(300);
  await page.screenshot({ path: out });
  const facts = await page.evaluate(() => ({
    clone: document.getElementById('clone-name')?.textContent,
    state: document.getElementById('state')?.textContent,
    lockdown: document.getElementById('lockdown')?.textContent,
    desktop: window.zcConsole.desktopName,
  }));
  process.stdout.write(
    `${facts.clone}: ${facts.state}; lockdown ${facts.lockdown}; desktop "${facts.desktop}"; ` +
      `first frame painted ${painted - t0} ms after opening the page\nscreenshot: ${out}\n`,
  );
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
