// tokenhandler's JavaScript client (clients/js/tokenhandler.js) in real Chromium against
// the real tokenhandler and Dex, loaded the way the example SPA loads it (examples/spa/
// tokenhandler.js is a link to it): api() with the CSRF header, session()'s values, the
// retry-later error, a 401 that signs out this tab and the other one, and a sign-out in
// one tab that the other tab shows at once, without a reload (BroadcastChannel).
//
// Run with e2e/browser/run.sh (or ./test.sh); what it needs and how it skips or fails is
// as for spa.test.mjs. On success, artifacts/client-signed-out-by-other-tab.png shows the
// second tab after the first signed out.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  artifacts, browserSuite, buildBinaries, launchBrowser, makeStepper, root, signIn, startStack,
} from './harness.mjs';

const TOKEN_TTL = '60s';
const CLIENT_SOURCE = path.join(root, 'clients', 'js', 'tokenhandler.js');

browserSuite('the JavaScript client in Chromium', () => {
  let stack;
  let browser;
  let page;
  let info;
  let binDir;
  const pageErrors = [];
  const { step } = makeStepper(() => browser);

  // watch records the requests a page makes to tokenhandler's origin from now on.
  const watch = (p) => {
    const seen = [];
    const on = (r) => {
      if (r.url().startsWith(`${info.url}/`)) seen.push(`${r.method()} ${new URL(r.url()).pathname}`);
    };
    p.on('request', on);
    return { seen, stop: () => p.off('request', on) };
  };

  // signedOutNotice waits until page shows itself signed out with the client's notice,
  // and returns the notice's reason and origin.
  const signedOutNotice = async (p) => {
    await p.locator('#status[data-state="signed-out"]').waitFor({ timeout: 15_000 });
    const notice = p.locator('#signed-out-notice');
    await notice.waitFor({ timeout: 15_000 });
    return {
      reason: await notice.getAttribute('data-reason'),
      fromOtherTab: await notice.getAttribute('data-from-other-tab'),
    };
  };

  const markPage = (p) => p.evaluate(() => { window.__sameDocument = true; });
  const sameDocument = (p) => p.evaluate(() => window.__sameDocument === true);

  before(async () => {
    binDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenhandler-browser-'));
    const bins = buildBinaries(binDir);
    stack = await startStack({ stackBin: bins.stack, thBin: bins.th, tokenTTL: TOKEN_TTL, label: 'client-stack' });
    info = stack.info;
    browser = await launchBrowser();
    browser.context.on('page', (p) => p.on('pageerror', (e) => pageErrors.push(e.message)));
    page = browser.context.pages()[0] || await browser.context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
  });

  after(async () => {
    if (browser) await browser.close();
    if (stack) await stack.stop();
    if (binDir) fs.rmSync(binDir, { recursive: true, force: true });
  });

  step('the SPA loads the client from clients/js through its link', async () => {
    const res = await fetch(`${info.url}/tokenhandler.js`);
    assert.equal(res.status, 200, 'GET /tokenhandler.js');
    assert.match(res.headers.get('content-type'), /^text\/javascript/);
    assert.equal(await res.text(), fs.readFileSync(CLIENT_SOURCE, 'utf8'), 'the served client is clients/js/tokenhandler.js');
    await page.goto(`${info.url}/`);
    await page.locator('#status[data-state="signed-out"]').waitFor();
    assert.equal(await page.evaluate(() => typeof window.demo.client.api), 'function');
  });

  step('signs in through the client\'s login()', async () => {
    await signIn(page, info); // the Sign-in button calls login(): return_to is this page
    assert.equal(await page.textContent('#email'), info.username);
  });

  step('api() sends the CSRF header with the session cookies', async () => {
    const request = page.waitForRequest((r) => r.url() === `${info.url}/api/claims`);
    const got = await page.evaluate(async () => {
      const { createClient } = await import('/tokenhandler.js');
      const c = createClient();
      try {
        const res = await c.api('/api/claims', { cache: 'no-store' });
        return { status: res.status, body: await res.json() };
      } finally {
        c.close();
      }
    });
    const headers = await (await request).allHeaders();
    assert.equal(got.status, 200);
    assert.equal(got.body.claims.email, info.username, 'the API saw the signed-in user\'s token');
    assert.equal(headers['x-csrf'], '1', 'the X-CSRF header');
    assert.match(headers.cookie || '', /__Host-Http-th-at/, 'the session cookies went along');

    // Control: without the header tokenhandler refuses, and the client reports that as an
    // error with its status and code, not as a sign-out.
    const refused = await page.evaluate(async () => {
      const { createClient } = await import('/tokenhandler.js');
      const c = createClient({ csrfHeader: 'X-Something-Else' });
      let events = 0;
      c.addEventListener('signedout', () => { events++; });
      try {
        await c.api('/api/claims', { cache: 'no-store' });
        return { thrown: false };
      } catch (err) {
        return { thrown: true, name: err.name, status: err.status, code: err.code, retryLater: err.retryLater, events };
      } finally {
        c.close();
      }
    });
    assert.deepEqual(refused, { thrown: true, name: 'TokenHandlerError', status: 403, code: 'csrf_failed', retryLater: false, events: 0 });
    await page.locator('#status[data-state="signed-in"]').waitFor();
  });

  step('session() returns the user and the expiry hints as Dates', async () => {
    const raw = await page.evaluate(async () => (await fetch('/auth/session', { cache: 'no-store' })).json());
    const s = await page.evaluate(async () => {
      const v = await window.demo.client.session();
      return {
        ...v,
        access_token_expires_at: v.access_token_expires_at instanceof Date ? v.access_token_expires_at.toISOString() : 'not a Date',
        session_expires_at: v.session_expires_at instanceof Date ? v.session_expires_at.toISOString() : 'not a Date',
      };
    });
    const now = Date.now();
    assert.equal(s.authenticated, true);
    assert.equal(s.sub, raw.sub);
    assert.ok(s.sub, 'sub');
    assert.equal(s.email, info.username);
    assert.equal(s.name, 'Alice Example');
    assert.equal(Date.parse(s.access_token_expires_at), Date.parse(raw.access_token_expires_at));
    assert.equal(Date.parse(s.session_expires_at), Date.parse(raw.session_expires_at));
    const at = Date.parse(s.access_token_expires_at);
    assert.ok(at > now - 60_000 && at <= now + 65_000, `access_token_expires_at ${s.access_token_expires_at} for a ${TOKEN_TTL} token`);
    const se = Date.parse(s.session_expires_at);
    assert.ok(se > now + 11 * 3600_000 && se <= now + 12 * 3600_000 + 60_000, `session_expires_at ${s.session_expires_at}`);
    assert.match(await page.textContent('#access-expiry'), new RegExp(s.access_token_expires_at.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  });

  step('502 and 503 reach the page as RetryLaterError, and sign nobody out', async () => {
    const answers = { '/api/claims': [502, 'upstream_unavailable'], '/auth/session': [503, 'session_store_unavailable'] };
    for (const [p, [status, code]] of Object.entries(answers)) {
      await page.route(`${info.url}${p}`, (route) => route.fulfill({
        status, contentType: 'application/json', body: JSON.stringify({ error: code, error_description: 'try again' }),
      }));
    }
    try {
      const got = await page.evaluate(async () => {
        const c = window.demo.client;
        const grab = async (f) => {
          try {
            await f();
            return null;
          } catch (err) {
            return { name: err.name, status: err.status, code: err.code, retryLater: err.retryLater, message: err.message };
          }
        };
        return { api: await grab(() => c.api('/api/claims')), session: await grab(() => c.session()) };
      });
      for (const [k, [status, code]] of [['api', answers['/api/claims']], ['session', answers['/auth/session']]]) {
        const e = got[k];
        assert.ok(e, `${k}() did not throw`);
        assert.equal(e.name, 'RetryLaterError', k);
        assert.equal(e.status, status, k);
        assert.equal(e.code, code, k);
        assert.equal(e.retryLater, true, k);
        assert.match(e.message, /retry later/, k);
      }
    } finally {
      await page.unrouteAll();
    }
    assert.equal(await page.locator('#signed-out-notice').isHidden(), true, 'the notice showed');
    assert.equal(await page.getAttribute('#status', 'data-state'), 'signed-in');
  });

  step('a 401 signs out this tab and, through BroadcastChannel, the other tab', async () => {
    const page2 = await browser.context.newPage();
    await page2.goto(`${info.url}/`);
    await page2.locator('#status[data-state="signed-in"]').waitFor();
    await markPage(page2);
    const requests2 = watch(page2);

    // The session ends behind the SPA's back (cookies gone): the next API call gets
    // tokenhandler's 401 unauthenticated.
    await browser.context.clearCookies();
    await page.click('#call-api');
    const li = page.locator('#results li[data-status="401"]');
    await li.waitFor({ timeout: 15_000 });
    assert.match(await li.textContent(), /unauthenticated/);
    assert.deepEqual(await signedOutNotice(page), { reason: 'unauthenticated', fromOtherTab: 'false' });

    assert.deepEqual(await signedOutNotice(page2), { reason: 'unauthenticated', fromOtherTab: 'true' });
    assert.equal(await sameDocument(page2), true, 'the other tab was reloaded');
    for (const p of [page, page2]) {
      assert.equal(await p.locator('#session-details').isHidden(), true, 'the user\'s details still show');
      assert.equal(await p.textContent('#email'), '', 'the user\'s email is still on the page');
    }
    requests2.stop();
    assert.deepEqual(requests2.seen, [], 'the other tab asked tokenhandler (it should have been told)');
    await page2.close();
  });

  step('a sign-out in one tab shows in the other at once, without a reload', async () => {
    await signIn(page, info);
    const page2 = await browser.context.newPage();
    await page2.goto(`${info.url}/`);
    await page2.locator('#status[data-state="signed-in"]').waitFor();
    assert.equal(await page2.locator('#signed-out-notice').isHidden(), true);
    await markPage(page2);
    const requests2 = watch(page2);
    const requests1 = watch(page);

    await page.click('#signout');
    assert.deepEqual(await signedOutNotice(page2), { reason: 'logout', fromOtherTab: 'true' });
    assert.equal(await sameDocument(page2), true, 'the other tab was reloaded');
    assert.equal(await page2.locator('#signin').isVisible(), true, 'the other tab offers to sign in');
    assert.equal(await page2.locator('#signout').isHidden(), true, 'the other tab still offers to sign out');
    assert.equal(await page2.locator('#session-details').isHidden(), true, 'the other tab still shows the user');
    await page2.screenshot({ path: path.join(artifacts, 'client-signed-out-by-other-tab.png'), fullPage: true });

    // The signing-out tab went through the provider's logout and came back signed out.
    await page.waitForFunction(() => document.readyState === 'complete'
      && document.querySelector('#status[data-state="signed-out"]') !== null, null, { timeout: 30_000 });
    assert.ok(page.url().startsWith(`${info.url}/`), `after sign-out at ${page.url()}`);
    requests1.stop();
    assert.ok(requests1.seen.includes('POST /auth/logout'), `requests: ${requests1.seen}`);
    requests2.stop();
    assert.deepEqual(requests2.seen, [], 'the other tab asked tokenhandler (it should have been told)');

    // It is really signed out: the other tab's next API call is refused.
    const status = await page2.evaluate(async () => {
      try {
        await window.demo.client.api('/api/claims');
        return 200;
      } catch (err) {
        return `${err.status} ${err.code}`;
      }
    });
    assert.equal(status, '401 unauthenticated');
    await page2.close();
  });

  step('no page raised a JavaScript error', async () => {
    assert.deepEqual(pageErrors, []);
  });
});
