// The example SPA in real Chromium against the real Dex: sign-in through Dex's login
// page, cookies as DESIGN.md's table says, transparent refresh counted from /metrics,
// two tabs racing an expiry, and sign-out at tokenhandler and at the provider.
//
// Run with e2e/browser/run.sh (or ./test.sh). Needs /usr/bin/chromium, Go and
// TOKENHANDLER_TEST_DEX; without them the tests skip with the reason, except under
// CI=true, where they fail. A screenshot of every open tab is saved under
// e2e/browser/artifacts/ when a step fails; on success, artifacts/spa-signed-in.png
// shows the signed-in SPA, and with UPDATE_SCREENSHOT=1 it replaces the README's
// docs/screenshot-spa.png.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  artifacts, browserSuite, buildBinaries, launchBrowser, makeStepper, metric, refreshCounts, root,
  signIn, sleepUntil, startStack,
} from './harness.mjs';

const TOKEN_TTL = '5s';
const STEP_TIMEOUT = 3 * 60 * 1000;
const SUCCESS_SHOT = path.join(artifacts, 'spa-signed-in.png');
const README_SHOT = path.join(root, 'docs', 'screenshot-spa.png');

// Every refresh-token cookie path DESIGN.md's table names for this configuration
// (routes /api/ and /orders/ plus the agent's three), and never "/".
const RT_PATHS = ['/api/', '/auth/logout', '/auth/refresh', '/auth/userinfo', '/orders/'];
const TH_COOKIE = /^(__Host-Http-th-|__Secure-th-)/;
const baseName = (name) => name.replace(/\.\d+$/, ''); // chunks NAME.0, NAME.1, ...

browserSuite('example SPA in Chromium', () => {
  let stack;
  let browser;
  let page;
  let info;
  let lastExpiry; // expires_at (ms) of the token the last successful API call carried
  const pageErrors = [];
  let binDir;

  // A failed step screenshots every tab and skips the later steps, which build on it.
  const { step, state } = makeStepper(() => browser, STEP_TIMEOUT);

  // apiCall makes one API call from the page's JavaScript, as the SPA does.
  const apiCall = (p) => p.evaluate(async () => {
    const res = await fetch('/api/claims', { headers: { 'X-CSRF': '1' }, cache: 'no-store' });
    let body = null;
    try { body = await res.json(); } catch { /* not JSON */ }
    return { status: res.status, body };
  });

  // burst makes n API calls at once from the page.
  const burst = (p, n) => p.evaluate(async (count) => Promise.all(Array.from({ length: count }, async () => {
    const res = await fetch('/api/claims', { headers: { 'X-CSRF': '1' }, cache: 'no-store' });
    let body = null;
    try { body = await res.json(); } catch { /* not JSON */ }
    return { status: res.status, expiresAt: body && body.expires_at, error: body && body.error };
  })), n);

  // clickCallAPI presses the SPA's button and returns the entry it rendered.
  const clickCallAPI = async (p) => {
    const n = Number(await p.textContent('#call-count')) + 1;
    await p.click('#call-api');
    const li = p.locator(`#results li[data-n="${n}"]`);
    await li.waitFor({ timeout: 30_000 });
    return {
      status: Number(await li.getAttribute('data-status')),
      refreshed: (await li.getAttribute('data-refreshed')) === 'true',
      expiresAt: await li.getAttribute('data-expires-at'),
    };
  };

  const thCookies = async () => (await browser.context.cookies()).filter((c) => TH_COOKIE.test(c.name));

  before(async () => {
    binDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenhandler-browser-'));
    fs.mkdirSync(artifacts, { recursive: true }); // run.sh empties it before the tests
    const bins = buildBinaries(binDir);
    stack = await startStack({ stackBin: bins.stack, thBin: bins.th, tokenTTL: TOKEN_TTL });
    info = stack.info;
    browser = await launchBrowser();
    page = browser.context.pages()[0] || await browser.context.newPage();
    browser.context.on('page', (p) => p.on('pageerror', (e) => pageErrors.push(e.message)));
    page.on('pageerror', (e) => pageErrors.push(e.message));
  });

  after(async () => {
    if (browser) await browser.close();
    if (stack) await stack.stop();
    if (binDir) fs.rmSync(binDir, { recursive: true, force: true });
    // The README's screenshot is refreshed on request only, so that a test run does
    // not leave the tree modified: UPDATE_SCREENSHOT=1 e2e/browser/run.sh
    if (!state.failed && process.env.UPDATE_SCREENSHOT === '1' && fs.existsSync(SUCCESS_SHOT)) {
      fs.mkdirSync(path.dirname(README_SHOT), { recursive: true });
      fs.copyFileSync(SUCCESS_SHOT, README_SHOT);
    }
  });

  step('the SPA shows ?auth_error as text, never as markup', async () => {
    const hostile = '<img src=x onerror="window.__pwned=1">';
    await page.goto(`${info.url}/?auth_error=${encodeURIComponent(hostile)}`);
    const el = page.locator('#auth-error');
    await el.waitFor();
    assert.equal(await el.textContent(), `Sign-in failed: ${hostile}`);
    assert.equal(await page.locator('#auth-error img').count(), 0, 'the auth_error value became an element');
    assert.equal(await page.evaluate(() => window.__pwned), undefined, 'the auth_error value ran script');
  });

  step('signs in through Dex\'s login page', async () => {
    await signIn(page, info); // Dex's own login form, on the provider's origin
    assert.equal(await page.textContent('#email'), info.username);
    assert.equal(await page.textContent('#name'), 'Alice Example');
  });

  step('the API call shows the claims', async () => {
    const call = await clickCallAPI(page);
    assert.equal(call.status, 200, 'GET /api/claims through tokenhandler');
    const claims = JSON.parse(await page.textContent('#claims'));
    assert.equal(claims.iss, info.issuer);
    assert.equal(claims.email, info.username);
    assert.ok(claims.sub, 'the access token has a sub');
    assert.ok([].concat(claims.aud).includes('tokenhandler'), `aud ${JSON.stringify(claims.aud)}`);
    lastExpiry = Date.parse(call.expiresAt);
    assert.ok(lastExpiry > Date.now() - 60_000, `expires_at ${call.expiresAt}`);
  });

  step('the orders route gets a token made for it (via refresh, scope openid)', async () => {
    const apiClaims = JSON.parse(await page.textContent('#claims'));
    const before = await refreshCounts(info.metrics_url);
    const derivedBefore = await metric(info.metrics_url, 'tokenhandler_derivations_total', { route: '/orders/', outcome: 'success' });
    const first = await page.evaluate(() => window.demo.callOrders());
    const second = await page.evaluate(() => window.demo.callOrders());
    assert.equal(first.status, 200, 'GET /orders/claims through tokenhandler');
    assert.equal(second.status, 200, 'the second GET /orders/claims');
    const claims = JSON.parse(await page.textContent('#orders-claims'));
    assert.equal(claims.iss, info.issuer);
    assert.equal(claims.sub, apiClaims.sub, 'the derived token names the signed-in user');
    assert.equal(claims.email, undefined, 'the orders token has no email (scope openid only)');
    assert.equal(claims.name, undefined, 'the orders token has no name (scope openid only)');
    assert.notEqual(first.body.expires_at, undefined);
    assert.equal(second.body.expires_at, first.body.expires_at, 'the second call reused the cached derived token');
    const afterCounts = await refreshCounts(info.metrics_url);
    assert.equal(afterCounts.tokenCalls - before.tokenCalls, 1, 'refresh_token grants for two /orders/ calls');
    assert.equal(await metric(info.metrics_url, 'tokenhandler_derivations_total', { route: '/orders/', outcome: 'success' }) - derivedBefore, 1,
      'tokenhandler_derivations_total{route="/orders/",outcome="success"} grew by');
    // The /api/ route still gets the session's token, with the email.
    const call = await clickCallAPI(page);
    assert.equal(call.status, 200);
    assert.equal(JSON.parse(await page.textContent('#claims')).email, info.username);
  });

  step('document.cookie shows none of tokenhandler\'s cookies', async () => {
    const visible = await page.evaluate(() => document.cookie);
    assert.doesNotMatch(visible, /th-/, `document.cookie = ${JSON.stringify(visible)}`);
    assert.ok((await thCookies()).length >= 3, 'the browser holds tokenhandler\'s cookies (HttpOnly)');
  });

  step('the cookie store shows DESIGN.md\'s attributes', async () => {
    const cookies = await thCookies();
    const byBase = new Map();
    for (const c of cookies) {
      const b = baseName(c.name);
      if (!byBase.has(b)) byBase.set(b, []);
      byBase.get(b).push(c);
    }
    assert.deepEqual([...byBase.keys()].sort(), ['__Host-Http-th-at', '__Host-Http-th-id', '__Secure-th-rt'],
      'after login: access, ID and refresh cookies, and no login cookie left');
    const now = Date.now() / 1000;
    for (const c of cookies) {
      const where = `${c.name} (Path=${c.path})`;
      assert.equal(c.httpOnly, true, `${where} HttpOnly`);
      assert.equal(c.secure, true, `${where} Secure`);
      assert.equal(c.sameSite, 'Strict', `${where} SameSite`);
      assert.equal(c.domain, 'localhost', `${where} is host-only (no Domain attribute)`);
      // Max-Age = the session's remaining absolute lifetime (12 h by default).
      assert.ok(c.expires > now + 11 * 3600 && c.expires <= now + 12 * 3600 + 60, `${where} expires ${c.expires}`);
    }
    for (const b of ['__Host-Http-th-at', '__Host-Http-th-id']) {
      for (const c of byBase.get(b)) assert.equal(c.path, '/', `${c.name} Path`);
    }
    const rt = byBase.get('__Secure-th-rt');
    assert.ok(!rt.some((c) => c.path === '/'), 'the refresh cookie is never on /');
    assert.deepEqual([...new Set(rt.map((c) => c.path))].sort(), RT_PATHS, 'refresh cookie paths');
  });

  step('after the access token expires, the next call succeeds after exactly one refresh', async () => {
    await sleepUntil(lastExpiry + 1500);
    const before = await refreshCounts(info.metrics_url);
    const call = await clickCallAPI(page);
    const afterCounts = await refreshCounts(info.metrics_url);
    assert.equal(call.status, 200, 'the call after expiry');
    assert.equal(call.refreshed, true, 'the SPA saw a new token expiry ("token refreshed")');
    assert.ok(Date.parse(call.expiresAt) > lastExpiry, `new expiry ${call.expiresAt}`);
    assert.equal(afterCounts.refreshes - before.refreshes, 1, 'tokenhandler_refreshes_total{outcome="success"} grew by');
    assert.equal(afterCounts.tokenCalls - before.tokenCalls, 1,
      'tokenhandler_token_endpoint_requests_total{grant_type="refresh_token",status="200"} grew by');
    lastExpiry = Date.parse(call.expiresAt);
    await page.locator('#status[data-state="signed-in"]').waitFor();
    await page.screenshot({ path: SUCCESS_SHOT, fullPage: true });
  });

  step('two tabs firing parallel calls across an expiry stay signed in', async () => {
    const page2 = await browser.context.newPage();
    await page2.goto(`${info.url}/`);
    await page2.locator('#status[data-state="signed-in"]').waitFor();

    // 1. Both tabs hold an expired token and fire at once: every call succeeds and the
    //    token endpoint sees one refresh (single-flight, then the rotation grace).
    await sleepUntil(lastExpiry + 1500);
    let before = await refreshCounts(info.metrics_url);
    const [a, b] = await Promise.all([burst(page, 8), burst(page2, 8)]);
    let afterCounts = await refreshCounts(info.metrics_url);
    const all = [...a, ...b];
    assert.deepEqual(all.filter((r) => r.status !== 200), [], 'calls that failed');
    assert.equal(new Set(all.map((r) => r.expiresAt)).size, 1, 'every call carried the one new token');
    assert.equal(afterCounts.tokenCalls - before.tokenCalls, 1, 'refresh_token calls to the token endpoint for 16 parallel calls');
    lastExpiry = Date.parse(all[0].expiresAt);

    // 2. Keep both tabs busy across further expiries: nothing fails, and refreshes stay
    //    at about one per token lifetime, not one per request.
    before = afterCounts;
    const start = Date.now();
    const duration = 12_000;
    const statuses = [];
    while (Date.now() - start < duration) {
      const [x, y] = await Promise.all([burst(page, 3), burst(page2, 3)]);
      statuses.push(...x.map((r) => r.status), ...y.map((r) => r.status));
      await new Promise((r) => setTimeout(r, 200));
    }
    afterCounts = await refreshCounts(info.metrics_url);
    assert.ok(statuses.length >= 30, `only ${statuses.length} calls were made`);
    assert.deepEqual(statuses.filter((s) => s !== 200), [], 'calls that failed while tokens expired');
    const refreshed = afterCounts.tokenCalls - before.tokenCalls;
    // A 5 s token is refreshed every 2-5 s (the effective skew is half its lifetime).
    assert.ok(refreshed >= 2 && refreshed <= Math.ceil(duration / 1500) + 1,
      `${refreshed} refreshes for ${statuses.length} calls over ${duration / 1000} s`);

    for (const p of [page, page2]) {
      await p.reload();
      await p.locator('#status[data-state="signed-in"]').waitFor();
    }
    await page2.close();
  });

  step('sign-out ends the session at tokenhandler and at Dex', async () => {
    const requests = [];
    const onRequest = (r) => requests.push(r.url());
    page.on('request', onRequest);
    await page.click('#signout');
    // The SPA goes to Dex's end-session endpoint, which sends it back to the SPA.
    await page.waitForFunction(() => document.readyState === 'complete'
      && document.querySelector('#status[data-state="signed-out"]') !== null, null, { timeout: 30_000 });
    page.off('request', onRequest);
    assert.ok(requests.some((u) => u.startsWith(`${info.issuer}/logout`)),
      `no request to Dex's end-session endpoint among ${JSON.stringify(requests)}`);
    assert.ok(page.url().startsWith(`${info.url}/`), `after sign-out at ${page.url()}`);

    const res = await apiCall(page);
    assert.equal(res.status, 401, 'an API call after sign-out');
    assert.deepEqual((await thCookies()).map((c) => `${c.name} ${c.path}`), [], 'tokenhandler cookies left');

    // The provider's session is gone too: a new login shows Dex's form again instead of
    // coming straight back signed in.
    await page.goto(`${info.url}/auth/login?return_to=/`);
    await page.locator('input[name="login"]').waitFor({ timeout: 30_000 });
    assert.ok(page.url().startsWith(`${info.issuer}/`), `new login at ${page.url()}`);
  });

  step('no page raised a JavaScript error', async () => {
    assert.deepEqual(pageErrors, []);
  });
});
