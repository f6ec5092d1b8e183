// Debian's chromium, headless, driven by playwright-core (no browser
// download): the one launch for every test and bench that opens a page. A
// fresh profile each time, removed on close, and no background traffic (the
// tests must not reach beyond loopback).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, type Page, chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface HeadlessChromium {
  readonly context: BrowserContext;
  /** The first tab. */
  readonly page: Page;
  /** Closes the browser and removes its profile; safe to call twice. */
  close(): Promise<void>;
}

export async function openChromium(
  viewport: { width: number; height: number } = { width: 1024, height: 600 },
): Promise<HeadlessChromium> {
  const profile = mkdtempSync(join(tmpdir(), 'zc-chromium-'));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    return {
      context,
      page,
      close: async () => {
        await context.close().catch(() => {});
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
}
