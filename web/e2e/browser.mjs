// Debian's Chromium driven by playwright-core, with what every page of the
// journey is checked for: console errors, axe-core, phone-width overflow,
// and a screenshot kept as an artefact.
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export async function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 900 };

/**
 * Watches one page: every console error and page error is kept. Chromium
 * also reports each HTTP error answer to a fetch as a console error
 * ("Failed to load resource: ... status of 409"); those of the API (/v1/)
 * with a 4xx status are the refusals the journey provokes on purpose and
 * checks on screen, so they are counted apart and must each match an API
 * answer seen on the network.
 */
export function watch(page, name) {
  const w = { name, errors: [], apiRefusals: [], networkRefusals: [] };
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    const url = msg.location()?.url ?? '';
    const m = /Failed to load resource: the server responded with a status of (\d{3})/.exec(text);
    if (m && Number(m[1]) >= 400 && Number(m[1]) < 500 && new URL(url, 'http://x').pathname.startsWith('/v1/')) {
      w.apiRefusals.push(`${m[1]} ${url}`);
      return;
    }
    w.errors.push(`console.error: ${text}${url ? ` (${url})` : ''}`);
  });
  page.on('pageerror', (e) => w.errors.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const f = r.failure()?.errorText ?? '';
    // A navigation that replaces the page aborts its pending fetches.
    if (!/ERR_ABORTED/.test(f)) w.errors.push(`request failed: ${r.method()} ${r.url()} ${f}`);
  });
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/v1/') && r.status() >= 400) w.networkRefusals.push(`${r.status()} ${r.url()}`);
    if (!u.pathname.startsWith('/v1/') && r.status() >= 400) w.errors.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  return w;
}

/** axe-core in the page (evaluated over CDP, so the page's CSP stays as served). */
export async function axe(page) {
  const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!loaded) await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, {
      resultTypes: ['violations'],
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
    });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
    }));
  });
  return result;
}

/** The page is no wider than the window (nothing to scroll sideways at phone width). */
export async function horizontalOverflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

export function screenshotDir(root) {
  const dir = join(root, 'screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}
