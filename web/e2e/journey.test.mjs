// The console's end-to-end journey in Debian's Chromium against a live
// `cloudsec up` that this test starts (temporary data directory, every
// listener on port 0):
//
//   sign-up -> confirm with the logged code -> MFA enrolment -> log out ->
//   log in with a TOTP -> create, edit with a forced etag conflict, delete ->
//   audit shows the chain verified -> an admin disables a user who then
//   cannot log in; recovery codes; restricted documents; bad input (empty,
//   oversized, wrong codes, a locked account with its retry time).
//
// Every page: a screenshot under test-results/screenshots, axe-core with no
// serious or critical violation, and no console error. A member's pages are
// also checked at phone width for sideways overflow.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DESKTOP, PHONE, axe, horizontalOverflow, launch, screenshotDir, watch } from './browser.mjs';
import { Platform } from './platform.mjs';
import { SECURITY_HEADERS, serveConsole } from './serve.mjs';
import { Authenticator, currentStep, totpAt } from './totp.mjs';

const web = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const repo = resolve(web, '..');
const results = join(web, 'test-results');
mkdirSync(results, { recursive: true });
const shots = screenshotDir(results);

const run = randomBytes(3).toString('hex');
const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'purple elephant rides bicycles';
const ADMIN = { email: `admin-${run}@example.com`, tenant: `acme-${run}` };
const CAROL = { email: `carol-${run}@example.com`, password: 'velvet canyon ostrich piano' };
const BOB = { email: `bob-${run}@example.com`, password: 'stapler quantum orchard lamp', next: 'glacier mango violin tower' };
const HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script> Plan';

const report = { run, servedBy: '', timings: {}, pages: [], apiRefusals: 0 };
const watchers = [];
let platform;
let consoleServer;
let base = '';
let browser;
let admin; // { context, page, w, token }
let bob;
let authenticator;
let recoveryCodes = [];
let hostileId = '';
let shot = 0;
let broken = false;

/** A step of the journey; after a failure the rest are skipped, not piled on. */
function step(name, fn) {
  it(name, async (t) => {
    if (broken) {
      t.skip('an earlier step failed');
      return;
    }
    try {
      await fn();
    } catch (e) {
      broken = true;
      for (const s of [admin, bob]) {
        if (s?.page && !s.page.isClosed()) {
          await s.page
            .screenshot({ path: join(shots, `FAILED-${s.name}.png`), fullPage: true })
            .catch(() => undefined);
        }
      }
      if (platform) console.error(`platform warnings and errors:\n${platform.problems()}`);
      throw e;
    }
  });
}

async function newSession(name, viewport) {
  const context = await browser.newContext({ viewport, locale: 'en-GB', timezoneId: 'UTC' });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const w = watch(page, name);
  watchers.push(w);
  const s = { name, context, page, w, token: '' };
  // The test reads the access token off the network to change documents
  // behind the page's back; the page itself keeps it in memory only.
  page.on('response', async (r) => {
    if (!/\/v1\/auth:(login|respondToAuthChallenge|refresh|verifySoftwareToken)$/.test(new URL(r.url()).pathname)) return;
    if (!r.ok()) return;
    try {
      const j = await r.json();
      const token = j.accessToken ?? j.login?.accessToken;
      if (token) s.token = token;
    } catch {
      /* not JSON */
    }
  });
  return s;
}

/** Screenshot, axe-core, and (at phone width) no sideways scrolling. */
async function check(s, name, { phone = false } = {}) {
  const { page } = s;
  shot += 1;
  const file = `${String(shot).padStart(2, '0')}-${name}.png`;
  await page.screenshot({ path: join(shots, file), fullPage: true });
  const violations = await axe(page);
  const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const entry = { page: name, screenshot: `screenshots/${file}`, url: new URL(page.url()).pathname, violations };
  if (phone) entry.overflowPx = await horizontalOverflow(page);
  report.pages.push(entry);
  assert.deepEqual(serious, [], `axe-core found serious violations on ${name}: ${JSON.stringify(serious, null, 2)}`);
  if (phone) assert.ok(entry.overflowPx <= 0, `${name} scrolls sideways at phone width by ${entry.overflowPx}px`);
}

async function api(method, path, { token, body } = {}) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  const json = text ? JSON.parse(text) : {};
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return json;
}

const heading = (page, name) => page.getByRole('heading', { level: 1, name }).waitFor();
const alertText = async (page) => {
  const alert = page.getByRole('alert');
  await alert.waitFor();
  return alert.innerText();
};

async function login(s, email, password) {
  const { page } = s;
  await heading(page, 'Log in');
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

async function logout(s) {
  await s.page.getByRole('button', { name: 'Log out' }).click();
  await heading(s.page, 'Log in');
}

/** Time from `start` (performance.now() in the page) to the documents list's mark. */
async function listReadyAfter(page, start) {
  await page.getByTestId('documents-table').waitFor();
  return page.evaluate((t0) => {
    const marks = performance.getEntriesByName('documents-list-ready');
    return marks.length ? marks[marks.length - 1].startTime - t0 : null;
  }, start);
}

describe('the console in a real browser', { timeout: 600_000 }, () => {
  before(async () => {
    platform = new Platform({ repo, binary: process.env.CLOUDSEC_BIN });
    const gateway = await platform.start();
    const probe = await fetch(`${gateway}/`);
    const html = probe.ok ? await probe.text() : '';
    if (html.includes('<div id="root">')) {
      base = gateway;
      report.servedBy = 'gateway';
    } else {
      if (process.env.CONSOLE_REQUIRE_GATEWAY === '1') {
        throw new Error(`the gateway at ${gateway} does not serve the console (GET / answered ${probe.status})`);
      }
      consoleServer = await serveConsole({ gateway });
      base = consoleServer.base;
      report.servedBy = 'test server (the gateway does not serve web/dist yet)';
      console.log(
        `# NOTE: the gateway does not serve the console (GET / -> ${probe.status}); serving web/dist from ${base} with the same headers, API passed to ${gateway}`,
      );
    }
    console.log(`# console at ${base}, platform at ${gateway}, run ${run}`);
    browser = await launch();
    admin = await newSession('admin', DESKTOP);
    bob = await newSession('member', PHONE);
  });

  after(async () => {
    report.consoleApiRefusals = watchers.reduce((n, w) => n + w.apiRefusals.length, 0);
    writeFileSync(join(results, 'report.json'), JSON.stringify(report, null, 2));
    await browser?.close().catch(() => undefined);
    await consoleServer?.close();
    await platform?.stop();
  });

  step('serves the console with the security headers, cache headers and the SPA fallback', async () => {
    const index = await fetch(`${base}/`);
    assert.equal(index.status, 200);
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) assert.equal(index.headers.get(k), v, `header ${k}`);
    assert.match(index.headers.get('cache-control') ?? '', /no-cache/);
    const html = await index.text();
    // Nothing inline for the CSP to refuse.
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'an inline script');
    assert.doesNotMatch(html, /\sstyle=/, 'an inline style');
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    assert.ok(asset, 'the entry script');
    const js = await fetch(`${base}${asset}`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('cache-control') ?? '', /immutable/);
    assert.equal(js.headers.get('content-security-policy'), SECURITY_HEADERS['Content-Security-Policy']);
    const deep = await fetch(`${base}/documents/some-id`);
    assert.equal(deep.status, 200);
    assert.match(await deep.text(), /<div id="root">/);
    const apiMiss = await fetch(`${base}/v1/no-such-route`);
    assert.equal(apiMiss.status, 404);
    assert.match(apiMiss.headers.get('content-type') ?? '', /json/);
  });

  step('sign-up names empty fields', async () => {
    const { page } = admin;
    await page.goto(`${base}/`);
    await heading(page, 'Log in');
    report.timings.coldLoadToFirstPageMs = await page.evaluate(
      () => performance.getEntriesByName('console-rendered')[0]?.startTime ?? null,
    );
    await check(admin, 'login');
    await page.getByRole('link', { name: /Create an account/ }).click();
    await heading(page, 'Create an account');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByText('Email is required.').waitFor();
    await page.getByText('Password is required.').waitFor();
    await page.getByText('Organisation name is required.').waitFor();
    assert.equal(await page.getByLabel('Email', { exact: true }).getAttribute('aria-invalid'), 'true');
    await check(admin, 'signup-empty-fields');
  });

  step('sign-up creates the tenant; a wrong confirmation code is refused in words with the request id', async () => {
    const { page } = admin;
    await page.getByLabel('Email', { exact: true }).fill(ADMIN.email);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByLabel('Organisation name', { exact: true }).fill(ADMIN.tenant);
    await page.getByRole('button', { name: 'Create account' }).click();
    await heading(page, 'Confirm your email');
    assert.equal(await page.getByLabel('Email', { exact: true }).inputValue(), ADMIN.email);
    const code = await platform.codeFor(ADMIN.email);
    await page.getByLabel('Confirmation code', { exact: true }).fill(code === '000000' ? '111111' : '000000');
    await page.getByRole('button', { name: 'Confirm' }).click();
    const text = await alertText(page);
    assert.match(text, /Some of what you entered is not valid/);
    assert.match(text, /is wrong or has expired/);
    assert.match(await page.getByTestId('request-id').innerText(), /^console-[0-9a-f-]{36}$/);
    await check(admin, 'confirm-wrong-code');
    await page.getByLabel('Confirmation code', { exact: true }).fill(code);
    await page.getByRole('button', { name: 'Confirm' }).click();
    await heading(page, 'Log in');
    await page.getByText('Your email is confirmed. Log in.').waitFor();
  });

  step('logs in to the documents list; tokens stay out of storage', async () => {
    const { page } = admin;
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    const t0 = await page.evaluate(() => performance.now());
    await page.getByRole('button', { name: 'Log in' }).click();
    await heading(page, 'Documents');
    report.timings.loginSubmitToDocumentsListMs = await listReadyAfter(page, t0);
    await page.getByText('No documents yet.').waitFor();
    const stored = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]);
    assert.deepEqual(stored, [0, 0, ''], 'nothing in localStorage, sessionStorage or cookies');
    const cookies = await admin.context.cookies();
    assert.deepEqual(cookies, []);
    await check(admin, 'documents-empty');
  });

  step('enrols TOTP with the QR code and shows the recovery codes', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Account' }).click();
    await heading(page, 'Your account');
    await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
    const qr = page.getByRole('img', { name: /QR code/ });
    await qr.waitFor();
    // The CSP lets the data: image in: it decoded to a real picture.
    assert.ok(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), 'the QR code image loaded');
    const secret = (await page.getByTestId('totp-secret').innerText()).trim();
    assert.match(secret, /^[A-Z2-7]+=*$/);
    authenticator = new Authenticator(secret);
    await check(admin, 'mfa-qr-code');
    await page.getByLabel('Code from the app', { exact: true }).fill(await authenticator.nextCode());
    await page.getByRole('button', { name: 'Verify and turn on' }).click();
    const list = page.getByTestId('recovery-codes');
    await list.waitFor();
    recoveryCodes = (await list.locator('li').allInnerTexts()).map((c) => c.trim());
    assert.equal(recoveryCodes.length, 10);
    await check(admin, 'mfa-recovery-codes');
    await page.getByRole('button', { name: 'I have saved my recovery codes' }).click();
    await page.getByText(/Two-step login is on/).waitFor();
  });

  step('logs out, then logs in with a TOTP after a wrong one', async () => {
    const { page } = admin;
    await logout(admin);
    await page.getByText('You are logged out.').waitFor();
    await login(admin, ADMIN.email, PASSWORD);
    await heading(page, 'Two-step login');
    const now = currentStep();
    const live = new Set([now - 1, now, now + 1, now + 2].map((s) => totpAt(authenticator.secret, s)));
    const wrong = ['000000', '111111', '222222'].find((c) => !live.has(c));
    await page.getByLabel('Authentication code', { exact: true }).fill(wrong);
    await page.getByRole('button', { name: 'Verify' }).click();
    assert.match(await alertText(page), /is wrong, expired or already used/);
    await check(admin, 'mfa-challenge-wrong-code');
    await page.getByLabel('Authentication code', { exact: true }).fill(await authenticator.nextCode());
    await page.getByRole('button', { name: 'Verify' }).click();
    await heading(page, 'Documents');
    assert.ok(admin.token, 'the access token seen on the network');
  });

  step('names empty and oversized document fields', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'New document' }).click();
    await heading(page, 'New document');
    await page.getByRole('button', { name: 'Create document' }).click();
    await page.getByText('Title is required.').waitFor();
    await page.getByText('Choose a classification.').waitFor();
    await page.getByLabel('Title', { exact: true }).fill('x'.repeat(201));
    await page.getByLabel('Content', { exact: true }).fill('a'.repeat(262_145));
    await page.getByRole('button', { name: 'Create document' }).click();
    await page.getByText('Title must be at most 200 characters (it has 201).').waitFor();
    await page.getByText('Content must be at most 262,144 characters (it has 262,145).').waitFor();
    await page.getByLabel('Labels', { exact: true }).fill('Bad Key=1');
    await page.getByRole('button', { name: 'Create document' }).click();
    await page.getByText(/keys are 1 to 63 lowercase letters/).waitFor();
    await page.getByLabel('Content', { exact: true }).fill('');
    await check(admin, 'document-new-errors');
  });

  step('creates a document whose title and label hold HTML and script, shown as text', async () => {
    const { page } = admin;
    await page.getByLabel('Title', { exact: true }).fill(HOSTILE);
    await page.getByLabel('Classification', { exact: true }).selectOption('INTERNAL');
    await page.getByLabel('Labels', { exact: true }).fill('team=ops\nnote=<b onmouseover=alert(1)>x</b>');
    await page.getByLabel('Content', { exact: true }).fill('step one <script>window.__pwned=1</script>');
    await page.getByRole('button', { name: 'Create document' }).click();
    await page.getByText('Document created.').waitFor();
    await page.getByRole('heading', { level: 1, name: HOSTILE, exact: true }).waitFor();
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), HOSTILE);
    hostileId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop());
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.locator('img[src="x"], main script, b[onmouseover]').count(), 0);
    assert.match(await page.getByTestId('document-content').innerText(), /<script>window.__pwned=1<\/script>/);
    await check(admin, 'document-view');
  });

  step('lists documents with filters and pages', async () => {
    const { page } = admin;
    for (let i = 1; i <= 11; i++) {
      await api('POST', '/v1/documents', {
        token: admin.token,
        body: {
          title: `Report ${String(i).padStart(2, '0')}`,
          classification: i <= 6 ? 'PUBLIC' : 'CONFIDENTIAL',
          labels: i <= 6 ? { team: 'web' } : {},
          content: `report ${i}`,
        },
      });
    }
    // Client-side navigation to the list, five times: the median is reported.
    const navTimes = [];
    for (let i = 0; i < 5; i++) {
      await page.getByRole('link', { name: 'Account' }).click();
      await heading(page, 'Your account');
      const t0 = await page.evaluate(() => performance.now());
      await page.getByRole('link', { name: 'Documents', exact: true }).click();
      await heading(page, 'Documents');
      await page.getByRole('link', { name: 'Report 01' }).waitFor();
      navTimes.push(await listReadyAfter(page, t0));
    }
    navTimes.sort((a, b) => a - b);
    report.timings.documentsNavigationMs = { median: navTimes[2], all: navTimes };
    const caption = () => page.locator('caption').innerText();
    assert.match(await caption(), /Page 1: 12 documents/);
    await page.getByLabel('Per page', { exact: true }).selectOption('10');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('Page 1: 10 documents').waitFor();
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.getByText('Page 2: 2 documents').waitFor();
    await check(admin, 'documents-page-2');
    await page.getByRole('button', { name: 'Previous page' }).click();
    await page.getByText('Page 1: 10 documents').waitFor();
    await page.getByLabel('Classification', { exact: true }).selectOption('PUBLIC');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('Page 1, filtered: 6 documents').waitFor();
    await page.getByLabel('Classification', { exact: true }).selectOption('');
    await page.getByLabel('Label', { exact: true }).fill('team=ops');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('Page 1, filtered: 1 document').waitFor();
    await page.getByRole('link', { name: HOSTILE }).waitFor();
    await check(admin, 'documents-filtered');
  });

  step('edits with a forced etag conflict: shows both versions, retries on the latest', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: HOSTILE }).click();
    await page.getByRole('button', { name: 'Edit' }).click();
    await page.getByLabel('Title', { exact: true }).fill('Plan v2');
    // Behind the page's back: someone else changes the content.
    const current = await api('GET', `/v1/documents/${hostileId}`, { token: admin.token });
    await api('PATCH', `/v1/documents/${hostileId}?updateMask=content`, {
      token: admin.token,
      body: { title: current.title, classification: current.classification, content: 'changed behind your back', etag: current.etag },
    });
    await page.getByRole('button', { name: 'Save changes' }).click();
    const panel = page.getByTestId('conflict');
    await panel.waitFor();
    assert.equal(await panel.getByTestId('mine-title').innerText(), 'Plan v2');
    assert.equal(await panel.getByTestId('latest-title').innerText(), HOSTILE);
    assert.equal(await panel.getByTestId('latest-content').innerText(), 'changed behind your back');
    await check(admin, 'document-conflict');
    await panel.getByRole('button', { name: 'Save my changes on the latest version' }).click();
    await page.getByText('Saved your changes on top of the latest version.').waitFor();
    assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Plan v2');
    assert.equal(await page.getByTestId('document-content').innerText(), 'changed behind your back');
  });

  step('deletes the document', async () => {
    const { page } = admin;
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('alertdialog').waitFor();
    await check(admin, 'document-delete-confirm');
    await page.getByRole('button', { name: 'Delete for good' }).click();
    await heading(page, 'Documents');
    await page.getByText('Deleted "Plan v2".').waitFor();
    assert.equal(await page.getByRole('link', { name: 'Plan v2' }).count(), 0);
  });

  step('the audit log shows the records and the chain verified', async () => {
    const { page } = admin;
    // The audit service records events as they arrive from the bus.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await api('GET', '/v1/audit/records?pageSize=500', { token: admin.token });
      if ((r.records ?? []).some((x) => x.eventType === 'cloudsec.events.v1.DocumentDeleted')) break;
      assert.ok(Date.now() < deadline, 'the DocumentDeleted event reached the audit log');
      await new Promise((ok) => setTimeout(ok, 200));
    }
    await page.getByRole('link', { name: 'Audit log' }).click();
    await heading(page, 'Audit log');
    const status = page.getByTestId('chain-status');
    await status.waitFor();
    assert.match(await status.innerText(), /^Chain verified\. \d+ records checked/);
    const table = page.getByTestId('audit-table');
    for (const type of ['DocumentCreated', 'DocumentUpdated', 'DocumentDeleted']) {
      await table.getByText(type, { exact: true }).first().waitFor();
    }
    await check(admin, 'audit');
  });

  step('an admin adds a member; restricted documents stay hidden from them', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Administration' }).click();
    await heading(page, 'Administration');
    await page.getByRole('button', { name: 'Add user' }).click();
    await page.getByText('Email is required.').waitFor();
    await page.getByLabel('Email', { exact: true }).fill(BOB.email);
    await page.getByLabel('Initial password', { exact: true }).fill(BOB.password);
    await page.getByRole('button', { name: 'Add user' }).click();
    await page.getByText(new RegExp(`Created ${BOB.email.replace(/[.]/g, '\\.')}`)).waitFor();
    await page.getByTestId('users-table').getByText(BOB.email).waitFor();
    await check(admin, 'admin');
    await api('POST', '/v1/documents', {
      token: admin.token,
      body: { title: 'Secret plan', classification: 'RESTRICTED', content: 'for the few' },
    });

    // The member, at phone width, logs in with the keyboard alone.
    const m = bob.page;
    await m.goto(`${base}/`);
    await heading(m, 'Log in');
    await check(bob, 'member-login-phone', { phone: true });
    await m.keyboard.press('Tab');
    assert.equal(await m.evaluate(() => document.activeElement?.id && document.querySelector(`label[for="${document.activeElement.id}"]`)?.textContent), 'Email');
    await m.keyboard.type(BOB.email);
    await m.keyboard.press('Tab');
    await m.keyboard.type(BOB.password);
    await m.keyboard.press('Enter');
    await heading(m, 'Documents');
    await m.getByRole('link', { name: 'Report 01' }).waitFor();
    assert.equal(await m.getByRole('link', { name: 'Secret plan' }).count(), 0, 'a member does not see a restricted document');
    assert.equal(await m.getByRole('link', { name: 'Administration' }).count(), 0);
    await check(bob, 'member-documents-phone', { phone: true });
    await m.getByRole('link', { name: 'Report 01' }).click();
    await heading(m, 'Report 01');
    await check(bob, 'member-document-phone', { phone: true });
  });

  step('a member in the restricted group sees restricted documents; changes their password', async () => {
    const { page } = admin;
    await page.getByLabel('User', { exact: true }).selectOption({ label: BOB.email });
    await page.getByLabel('Group', { exact: true }).fill('restricted');
    await page.getByRole('button', { name: 'Add to group' }).click();
    await page.getByText(/joined restricted/).waitFor();
    await page.getByRole('button', { name: `Remove ${BOB.email} from restricted` }).waitFor();
    await check(admin, 'admin-groups');

    const m = bob.page;
    await m.getByRole('link', { name: 'Account' }).click();
    await heading(m, 'Your account');
    await check(bob, 'member-account-phone', { phone: true });
    await m.getByLabel('Current password', { exact: true }).fill(BOB.password);
    await m.getByLabel('New password', { exact: true }).fill(BOB.next);
    await m.getByLabel('New password again', { exact: true }).fill(BOB.next);
    await m.getByRole('button', { name: 'Change password' }).click();
    await heading(m, 'Log in');
    await m.getByText(/Your password is changed/).waitFor();
    // The new login reads the groups again: the restricted document shows.
    await login(bob, BOB.email, BOB.next);
    await heading(m, 'Documents');
    await m.getByRole('link', { name: 'Secret plan' }).waitFor();
  });

  step('an admin disables the member, who then cannot log in', async () => {
    const { page } = admin;
    await page.getByRole('button', { name: `Disable ${BOB.email}` }).click();
    await page.getByText(`${BOB.email}: disabled.`).waitFor();
    // The member's open session ends: their access token is revoked at
    // every verifier within the revocation interval (5 s), the refresh is
    // refused, and the page returns to the login with a notice.
    const m = bob.page;
    const loginHeading = m.getByRole('heading', { level: 1, name: 'Log in' });
    const deadline = Date.now() + 30_000;
    while (!(await loginHeading.isVisible())) {
      assert.ok(Date.now() < deadline, "the disabled member's session ended");
      // Either link may vanish under the click when the session ends.
      await m.getByRole('link', { name: 'Account' }).click({ timeout: 2_000 }).catch(() => undefined);
      await m.getByRole('link', { name: 'Documents', exact: true }).click({ timeout: 2_000 }).catch(() => undefined);
      await m.waitForTimeout(500);
    }
    await m.getByText('Your session has ended. Log in again.').waitFor();
    await login(bob, BOB.email, BOB.next);
    const text = await alertText(m);
    assert.match(text, /Login refused\./);
    assert.match(text, /invalid email or password/);
    assert.match(text, /Request id for support: console-/);
    await check(bob, 'member-disabled-login-phone', { phone: true });
  });

  step('a recovery code logs in once', async () => {
    const { page } = admin;
    await logout(admin);
    await login(admin, ADMIN.email, PASSWORD);
    await heading(page, 'Two-step login');
    await page.getByLabel('Authentication code', { exact: true }).fill(recoveryCodes[0]);
    await page.getByRole('button', { name: 'Verify' }).click();
    await heading(page, 'Documents');
    await logout(admin);
    await login(admin, ADMIN.email, PASSWORD);
    await heading(page, 'Two-step login');
    await page.getByLabel('Authentication code', { exact: true }).fill(recoveryCodes[0]);
    await page.getByRole('button', { name: 'Verify' }).click();
    assert.match(await alertText(page), /is wrong, expired or already used/);
    await page.getByLabel('Authentication code', { exact: true }).fill(recoveryCodes[2]);
    await page.getByRole('button', { name: 'Verify' }).click();
    await heading(page, 'Documents');
    await logout(admin);
  });

  step('a locked account shows the 429 and when to try again', async () => {
    const { page } = admin;
    const locked = `locked-${run}@example.com`;
    await page.getByLabel('Email', { exact: true }).fill(locked);
    for (let i = 0; i < 5; i++) {
      await page.getByLabel('Password', { exact: true }).fill(`wrong password number ${i}`);
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.getByRole('alert').getByText('invalid email or password').waitFor();
    }
    await page.getByLabel('Password', { exact: true }).fill('wrong password number 5');
    await page.getByRole('button', { name: 'Log in' }).click();
    const retry = page.getByTestId('retry-after');
    await retry.waitFor();
    assert.match(await retry.innerText(), /^Try again in \d+ seconds? \(after .+\)\.$/);
    const text = await alertText(page);
    assert.match(text, /Too many attempts\./);
    assert.match(text, /HTTP 429 · RESOURCE_EXHAUSTED/);
    await check(admin, 'login-locked');
  });

  step('forgot password: a reset code from the log sets a new password', async () => {
    const { page } = admin;
    const before = platform.codesFor(ADMIN.email).length;
    await page.getByRole('link', { name: 'Forgot your password?' }).click();
    await heading(page, 'Reset your password');
    await page.getByLabel('Email', { exact: true }).fill(ADMIN.email);
    await page.getByRole('button', { name: 'Send a reset code' }).click();
    await page.getByLabel('Reset code', { exact: true }).waitFor();
    const code = await platform.codeFor(ADMIN.email, { after: before });
    await page.getByLabel('Reset code', { exact: true }).fill(code);
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByLabel('New password again', { exact: true }).fill(NEW_PASSWORD);
    await check(admin, 'forgot-password');
    await page.getByRole('button', { name: 'Set the new password' }).click();
    await heading(page, 'Log in');
    await page.getByText(/Your password is changed/).waitFor();
    await login(admin, ADMIN.email, NEW_PASSWORD);
    await heading(page, 'Two-step login');
    // A second recovery code (a TOTP might mean waiting for the next step).
    await page.getByLabel('Authentication code', { exact: true }).fill(recoveryCodes[1]);
    await page.getByRole('button', { name: 'Verify' }).click();
    await heading(page, 'Documents');
    await page.getByRole('link', { name: 'Secret plan' }).waitFor();
    // The picture for the README (docs/img/console.png is a copy of it).
    await page.screenshot({ path: join(results, 'console.png') });
  });

  step('MFA required: a new user enrols at login; an admin resets MFA, disables, enables and deletes', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Administration' }).click();
    await heading(page, 'Administration');
    await page.getByLabel('Mode', { exact: true }).selectOption('REQUIRED');
    await page.getByRole('button', { name: 'Set mode' }).click();
    await page.getByText('Two-step login is now required for the organisation.').waitFor();
    await page.getByLabel('Email', { exact: true }).fill(CAROL.email);
    await page.getByLabel('Initial password', { exact: true }).fill(CAROL.password);
    await page.getByRole('button', { name: 'Add user' }).click();
    await page.getByTestId('users-table').getByText(CAROL.email).waitFor();

    const m = bob.page;
    await login(bob, CAROL.email, CAROL.password);
    await heading(m, 'Set up two-step login');
    await m.getByRole('button', { name: 'Set up an authenticator app' }).click();
    const secret = (await m.getByTestId('totp-secret').innerText()).trim();
    await check(bob, 'member-mfa-setup-phone', { phone: true });
    await m.getByLabel('Code from the app', { exact: true }).fill(await new Authenticator(secret).nextCode());
    await m.getByRole('button', { name: 'Verify and turn on' }).click();
    await m.getByTestId('recovery-codes').waitFor();
    await m.getByRole('button', { name: 'I have saved my recovery codes' }).click();
    await heading(m, 'Documents');

    for (const [action, done] of [
      ['Reset MFA', 'MFA reset'],
      ['Disable', 'disabled'],
      ['Enable', 'enabled'],
    ]) {
      await page.getByRole('button', { name: `${action} ${CAROL.email}` }).click();
      await page.getByText(`${CAROL.email}: ${done}.`).waitFor();
    }
    await page.getByRole('button', { name: `Delete ${CAROL.email}`, exact: true }).click();
    await check(admin, 'admin-confirm-delete-user');
    await page.getByRole('button', { name: `Delete ${CAROL.email} for good` }).click();
    await page.getByText(`${CAROL.email}: deleted.`).waitFor();
    assert.equal(await page.getByTestId('users-table').getByText(CAROL.email).count(), 0);
  });

  step('no console errors on any page', async () => {
    for (const w of watchers) {
      assert.deepEqual(w.errors, [], `console errors in the ${w.name}'s tab`);
      // Each API refusal Chromium logged is one the test provoked and saw.
      assert.ok(
        w.apiRefusals.length <= w.networkRefusals.length,
        `${w.name}: ${w.apiRefusals.length} logged refusals for ${w.networkRefusals.length} seen`,
      );
      report.apiRefusals += w.networkRefusals.length;
    }
  });
});
