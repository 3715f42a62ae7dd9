// Unit tests of tokenhandler.js with node's own test runner (node --test), no npm
// dependencies: fetch, location and BroadcastChannel are stubs. The same module runs in
// Chromium against the real tokenhandler in e2e/browser/client.test.mjs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  RetryLaterError, SignedOutEvent, TokenHandlerClient, TokenHandlerError, createClient, validReturnTo,
} from './tokenhandler.js';

const ORIGIN = 'https://app.example.com';

// FakeChannel is a BroadcastChannel: a message reaches every other open channel of the
// same name, asynchronously, never the sender.
class FakeChannel extends EventTarget {
  static open = new Set();
  static posted = [];

  constructor(name) {
    super();
    this.name = name;
    FakeChannel.open.add(this);
  }

  postMessage(data) {
    FakeChannel.posted.push({ name: this.name, data });
    for (const ch of FakeChannel.open) {
      if (ch !== this && ch.name === this.name) {
        const copy = structuredClone(data);
        setImmediate(() => ch.dispatchEvent(new MessageEvent('message', { data: copy })));
      }
    }
  }

  close() {
    FakeChannel.open.delete(this);
  }

  static reset() {
    FakeChannel.open.clear();
    FakeChannel.posted = [];
  }
}

// fakeLocation is the page at path on ORIGIN; assign records where the page was sent.
function fakeLocation(path = '/orders/42?tab=2') {
  const u = new URL(path, ORIGIN);
  return {
    href: u.href,
    pathname: u.pathname,
    search: u.search,
    assigned: [],
    assign(url) {
      this.assigned.push(url);
    },
  };
}

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
}

const envelope = (status, error, description = `${error} happened`) => json(status, { error, error_description: description });

// setup makes a client on a fake page whose fetch answers with respond(url, init).
function setup(respond, options = {}) {
  const calls = [];
  const location = options.location ?? fakeLocation();
  const client = createClient({
    fetch: async (url, init) => {
      calls.push({ url: String(url), init });
      return respond(String(url), init, calls.length);
    },
    location,
    BroadcastChannel: FakeChannel,
    ...options,
  });
  const events = [];
  client.addEventListener('signedout', (e) => events.push(e));
  return { client, calls, location, events };
}

// otherTab is a second client on the same origin, as another tab would have.
function otherTab(options = {}) {
  const client = createClient({ fetch: async () => { throw new Error('unused'); }, location: fakeLocation('/'), BroadcastChannel: FakeChannel, ...options });
  const events = [];
  client.addEventListener('signedout', (e) => events.push(e));
  return { client, events };
}

// settle lets queued channel messages arrive.
const settle = () => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

const beforeEach = () => FakeChannel.reset();

describe('api', () => {
  test('sends the CSRF header and same-origin credentials, keeps the caller\'s request', async () => {
    beforeEach();
    const { client, calls } = setup(() => json(200, { ok: true }));
    const res = await client.api('/api/orders', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF': '0' },
      body: '{"n":1}',
      credentials: 'include',
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true });
    assert.equal(calls.length, 1);
    const { url, init } = calls[0];
    assert.equal(url, '/api/orders');
    assert.equal(init.method, 'POST');
    assert.equal(init.body, '{"n":1}');
    assert.equal(init.credentials, 'same-origin', 'credentials');
    const h = new Headers(init.headers);
    assert.equal(h.get('X-CSRF'), '1', 'the CSRF header (a caller\'s value is replaced)');
    assert.equal(h.get('Content-Type'), 'application/json');
  });

  test('uses the configured CSRF header', async () => {
    beforeEach();
    const { client, calls } = setup(() => json(200, {}), { csrfHeader: 'X-Requested-By', csrfValue: 'spa' });
    await client.api(new URL('/api/x', ORIGIN));
    const h = new Headers(calls[0].init.headers);
    assert.equal(h.get('X-Requested-By'), 'spa');
    assert.equal(h.has('X-CSRF'), false);
  });

  test('returns 2xx and 3xx answers, and passes the caller\'s headers as Headers', async () => {
    beforeEach();
    for (const status of [200, 201, 204, 304]) {
      const { client } = setup(() => new Response(null, { status }));
      const res = await client.api('/api/x', { headers: new Headers({ Accept: 'text/plain' }) });
      assert.equal(res.status, status);
    }
  });

  test('refuses a URL on another origin without sending anything', async () => {
    beforeEach();
    for (const bad of ['https://evil.example/api/x', '//evil.example/api/x', 'http://app.example.com/api/x', new URL('https://api.example.com/')]) {
      const { client, calls } = setup(() => json(200, {}));
      await assert.rejects(client.api(bad), TypeError, `api(${bad})`);
      assert.equal(calls.length, 0, `api(${bad}) sent a request`);
    }
    // Control: relative and absolute same-origin URLs go out.
    const { client, calls } = setup(() => json(200, {}));
    await client.api('api/relative');
    await client.api(`${ORIGIN}/api/absolute`);
    assert.equal(calls.length, 2);
  });

  test('tokenhandler\'s 401 signs out this tab once and tells the other tabs', async () => {
    beforeEach();
    const { client, events } = setup(() => envelope(401, 'session_expired', 'the session has expired'));
    const other = otherTab();
    const elsewhere = otherTab({ authPrefix: '/bff' }); // another tokenhandler: not told

    const err = await client.api('/api/orders').then(() => null, (e) => e);
    assert.ok(err instanceof TokenHandlerError, `error ${err}`);
    assert.equal(err instanceof RetryLaterError, false);
    assert.equal(err.status, 401);
    assert.equal(err.code, 'session_expired');
    assert.equal(err.description, 'the session has expired');
    assert.equal(err.retryLater, false);
    assert.match(err.message, /GET \/api\/orders: 401 session_expired/);

    assert.equal(events.length, 1, 'signedout events in this tab');
    assert.ok(events[0] instanceof SignedOutEvent);
    assert.equal(events[0].reason, 'session_expired');
    assert.equal(events[0].fromOtherTab, false);

    await settle();
    assert.equal(other.events.length, 1, 'signedout events in the other tab');
    assert.equal(other.events[0].reason, 'session_expired');
    assert.equal(other.events[0].fromOtherTab, true);
    assert.equal(elsewhere.events.length, 0, 'a client of another auth prefix was told');
    assert.deepEqual(FakeChannel.posted, [{ name: 'tokenhandler:/auth', data: { type: 'signedout', reason: 'session_expired' } }]);
  });

  test('a burst of 401s gives one event and one message', async () => {
    beforeEach();
    const { client, events } = setup(() => envelope(401, 'unauthenticated'));
    const other = otherTab();
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => client.api('/api/x')));
    assert.deepEqual(results.map((r) => r.status), Array(8).fill('rejected'));
    await settle();
    assert.equal(events.length, 1, 'events in this tab');
    assert.equal(events[0].reason, 'unauthenticated');
    assert.equal(other.events.length, 1, 'events in the other tab');
    assert.equal(FakeChannel.posted.length, 1, 'broadcast messages');
  });

  test('an API\'s own 401 is an error, not a sign-out', async () => {
    beforeEach();
    for (const res of [
      () => json(401, { error: 'invalid_token' }, { 'WWW-Authenticate': 'Bearer error="invalid_token"' }),
      () => new Response('no', { status: 401 }),
      () => json(401, { message: 'unauthenticated' }),
    ]) {
      const { client, events } = setup(res);
      const other = otherTab();
      const err = await client.api('/api/x').then(() => null, (e) => e);
      assert.ok(err instanceof TokenHandlerError);
      assert.equal(err.status, 401);
      await settle();
      assert.equal(events.length, 0, `signedout for ${JSON.stringify(err.body)}`);
      assert.equal(other.events.length, 0);
    }
    assert.equal(FakeChannel.posted.length, 0);
  });

  test('502 and 503 throw RetryLaterError with tokenhandler\'s code, and sign nobody out', async () => {
    beforeEach();
    for (const [status, code] of [[502, 'idp_unavailable'], [503, 'session_store_unavailable'], [502, 'upstream_unavailable'], [503, 'idp_unavailable']]) {
      const { client, events } = setup(() => envelope(status, code));
      const err = await client.api('/api/x', { method: 'DELETE' }).then(() => null, (e) => e);
      assert.ok(err instanceof RetryLaterError, `${status} ${code}: ${err}`);
      assert.ok(err instanceof TokenHandlerError);
      assert.equal(err.name, 'RetryLaterError');
      assert.equal(err.retryLater, true);
      assert.equal(err.status, status);
      assert.equal(err.code, code);
      assert.match(err.message, new RegExp(`DELETE /api/x: ${status} ${code}: .*retry later`));
      assert.equal(events.length, 0);
    }
    // An API's own 503 without an envelope is a retry-later too, with no code.
    const { client } = setup(() => new Response('<html>busy</html>', { status: 503 }));
    const err = await client.api('/api/x').then(() => null, (e) => e);
    assert.ok(err instanceof RetryLaterError);
    assert.equal(err.code, '');
    assert.equal(err.body, '<html>busy</html>');
  });

  test('other errors carry the status, the code and the body', async () => {
    beforeEach();
    for (const [status, code] of [[403, 'csrf_failed'], [403, 'origin_not_allowed'], [504, 'upstream_timeout'], [404, 'not_found'], [400, 'bad_request'], [500, 'internal']]) {
      const { client, events } = setup(() => envelope(status, code, 'fixed text'));
      const err = await client.api('/api/x').then(() => null, (e) => e);
      assert.ok(err instanceof TokenHandlerError, `${status}: ${err}`);
      assert.equal(err instanceof RetryLaterError, false, `${status} is not a retry-later`);
      assert.equal(err.status, status);
      assert.equal(err.code, code);
      assert.equal(err.description, 'fixed text');
      assert.deepEqual(err.body, { error: code, error_description: 'fixed text' });
      assert.equal(events.length, 0);
    }
    const { client } = setup(() => json(422, { errors: ['name is required'] }));
    const err = await client.api('/api/x').then(() => null, (e) => e);
    assert.equal(err.status, 422);
    assert.equal(err.code, '');
    assert.deepEqual(err.body, { errors: ['name is required'] });
  });

  test('a network failure is a retry-later; the caller\'s abort is passed on', async () => {
    beforeEach();
    const { client } = setup(() => { throw new TypeError('Failed to fetch'); });
    const err = await client.api('/api/x').then(() => null, (e) => e);
    assert.ok(err instanceof RetryLaterError);
    assert.equal(err.status, 0);
    assert.equal(err.code, 'network_error');
    assert.equal(err.cause.message, 'Failed to fetch');

    const abort = new DOMException('aborted', 'AbortError');
    const aborted = setup(() => { throw abort; });
    await assert.rejects(aborted.client.api('/api/x'), (e) => e === abort);
  });
});

describe('session', () => {
  test('returns who is signed in and the expiry hints as Dates', async () => {
    beforeEach();
    const { client, calls } = setup(() => json(200, {
      authenticated: true,
      sub: 'user-1',
      name: 'Alice Example',
      email: 'alice@example.com',
      access_token_expires_at: '2026-12-04T22:05:00Z',
      session_expires_at: '2026-12-05T10:00:00+01:00',
    }));
    const s = await client.session();
    assert.deepEqual(s, {
      authenticated: true,
      sub: 'user-1',
      name: 'Alice Example',
      email: 'alice@example.com',
      access_token_expires_at: new Date('2026-12-04T22:05:00Z'),
      session_expires_at: new Date('2026-12-05T09:00:00Z'),
    });
    assert.ok(s.access_token_expires_at instanceof Date);
    assert.equal(calls[0].url, '/auth/session');
    assert.equal(calls[0].init.credentials, 'same-origin');
    assert.equal(calls[0].init.cache, 'no-store');
    assert.equal(calls[0].init.method, undefined, 'GET');
  });

  test('omits what the provider never gave', async () => {
    beforeEach();
    const { client } = setup(() => json(200, { authenticated: true, sub: 's', session_expires_at: 'not a date' }));
    assert.deepEqual(await client.session(), { authenticated: true, sub: 's' });
  });

  test('signed out is {authenticated: false} and no event', async () => {
    beforeEach();
    const { client, events } = setup(() => json(200, { authenticated: false }));
    assert.deepEqual(await client.session(), { authenticated: false });
    assert.equal(events.length, 0);
  });

  test('503 session_store_unavailable throws RetryLaterError', async () => {
    beforeEach();
    const { client } = setup(() => envelope(503, 'session_store_unavailable'));
    const err = await client.session().then(() => null, (e) => e);
    assert.ok(err instanceof RetryLaterError);
    assert.equal(err.status, 503);
    assert.equal(err.code, 'session_store_unavailable');
    assert.match(err.message, /GET \/auth\/session: 503 session_store_unavailable: .*retry later/);
  });

  test('uses the auth prefix', async () => {
    beforeEach();
    const { client, calls } = setup(() => json(200, { authenticated: false }), { authPrefix: '/bff/' });
    await client.session();
    assert.equal(calls[0].url, '/bff/session');
    assert.equal(client.authPrefix, '/bff');
    assert.equal(client.channelName, 'tokenhandler:/bff');
  });

  test('a session seen again re-arms the signedout event', async () => {
    beforeEach();
    let answer = () => envelope(401, 'unauthenticated');
    const { client, events } = setup(() => answer());
    await assert.rejects(client.api('/api/x'));
    answer = () => json(200, { authenticated: true, sub: 's' });
    await client.session();
    answer = () => envelope(401, 'session_expired');
    await assert.rejects(client.api('/api/x'));
    assert.deepEqual(events.map((e) => e.reason), ['unauthenticated', 'session_expired']);
    assert.equal(FakeChannel.posted.length, 2);
  });
});

describe('login', () => {
  test('navigates to the login endpoint with return_to', () => {
    beforeEach();
    const { client, location, calls } = setup(() => json(200, {}));
    client.login('/orders/42?tab=2&x=a b');
    client.login();
    client.login('');
    client.login('/done#section');
    assert.deepEqual(location.assigned, [
      '/auth/login?return_to=%2Forders%2F42%3Ftab%3D2%26x%3Da%20b',
      '/auth/login?return_to=%2Forders%2F42%3Ftab%3D2', // the current page
      '/auth/login?return_to=%2F',
      '/auth/login?return_to=%2Fdone', // the fragment dropped, as tokenhandler does
    ]);
    assert.equal(calls.length, 0, 'login fetches nothing');

    const bff = setup(() => json(200, {}), { authPrefix: '/bff' });
    bff.client.login('/');
    assert.deepEqual(bff.location.assigned, ['/bff/login?return_to=%2F']);
  });

  test('refuses what tokenhandler refuses, before navigating', () => {
    beforeEach();
    const hostile = [
      'https://evil.example/',
      '//evil.example/',
      '/\\evil.example',
      '/%2Fevil.example',
      '/%2fevil.example',
      'javascript:alert(1)',
      'relative/path',
      ' /leading-space',
      '/a\nb',
      '/a\tb',
      '/a\x7fb',
      '/a%0ab',
      '/a%0Db',
      '/a%00b',
      '/a%1fb',
      '/a%7Fb',
      '/a%5cb',
      '/a\\b',
      '/a%zz',
      '/a%2',
      '/bad\ud800surrogate',
      `/${'a'.repeat(2048)}`,
      `/${'ü'.repeat(1024)}`, // 2049 bytes in UTF-8
      '/auth',
      '/auth/callback?code=x',
      '/auth?x=1',
      // Judged as tokenhandler's router sees the path: clean, and decoded.
      '/%61uth/callback',
      '/x/../auth/callback',
      '/x/./y',
      '/x/..',
      '/a//b',
      '/a;b',
      '/x/%2Fy',
      '/x/%2e%2e/y',
      '/x/%2E',
      '/x%252e', // %2e once decoded
      '/x%255C',
    ];
    for (const bad of hostile) {
      const { client, location } = setup(() => json(200, {}));
      assert.throws(() => client.login(bad), TypeError, `login(${JSON.stringify(bad)})`);
      assert.deepEqual(location.assigned, [], `login(${JSON.stringify(bad)}) navigated`);
      assert.equal(validReturnTo(bad), null, `validReturnTo(${JSON.stringify(bad)})`);
    }
  });

  test('accepts the pages tokenhandler accepts', () => {
    beforeEach();
    const ok = [
      ['/', '/'],
      ['/orders/42?tab=2', '/orders/42?tab=2'],
      ['/authors', '/authors'], // not under /auth
      ['/a%20b?q=%2F', '/a%20b?q=%2F'],
      ['/a/b/', '/a/b/'], // a trailing slash is not an empty segment
      ['/.well-known/x', '/.well-known/x'],
      ['/a?next=/x/../y;z//w%2F', '/a?next=/x/../y;z//w%2F'], // the query is not the path
      ['/%7Euser', '/%7Euser'],
      ['/ü', '/ü'],
      [`/${'a'.repeat(2047)}`, `/${'a'.repeat(2047)}`],
      ['/p#frag', '/p'],
    ];
    for (const [input, want] of ok) {
      assert.equal(validReturnTo(input), want, `validReturnTo(${JSON.stringify(input)})`);
      const { client, location } = setup(() => json(200, {}));
      client.login(input);
      assert.deepEqual(location.assigned, [`/auth/login?return_to=${encodeURIComponent(want)}`]);
    }
    assert.equal(validReturnTo('/auth/x', '/bff'), '/auth/x', 'another prefix');
    assert.equal(validReturnTo('/bff/x', '/bff'), null);
  });
});

describe('logout', () => {
  test('posts with the CSRF header, tells every tab, then follows logout_url', async () => {
    beforeEach();
    const logoutURL = 'https://idp.example.com/logout?id_token_hint=x&post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2F';
    const { client, calls, location, events } = setup(() => json(200, { logout_url: logoutURL }));
    const other = otherTab();
    const order = [];
    client.addEventListener('signedout', () => order.push(`event, assigned ${location.assigned.length}`));

    assert.equal(await client.logout(), logoutURL);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].url, '/auth/logout');
    assert.equal(calls[0].init.method, 'POST');
    assert.equal(calls[0].init.credentials, 'same-origin');
    assert.equal(new Headers(calls[0].init.headers).get('X-CSRF'), '1');
    assert.deepEqual(location.assigned, [logoutURL]);
    assert.deepEqual(events.map((e) => [e.reason, e.fromOtherTab]), [['logout', false]]);
    assert.deepEqual(order, ['event, assigned 0'], 'the event comes before the navigation');

    await settle();
    assert.deepEqual(other.events.map((e) => [e.reason, e.fromOtherTab]), [['logout', true]]);
  });

  test('tells the other tabs even when this tab already knew', async () => {
    beforeEach();
    let answer = () => envelope(401, 'unauthenticated');
    const { client, location } = setup(() => answer());
    await assert.rejects(client.api('/api/x'));
    await settle();
    const other = otherTab(); // opened after that 401
    answer = () => json(200, { logout_url: `${ORIGIN}/` });
    await client.logout();
    await settle();
    assert.deepEqual(other.events.map((e) => e.reason), ['logout']);
    assert.deepEqual(location.assigned, [`${ORIGIN}/`]);
  });

  test('a refused logout navigates nowhere and signs nobody out', async () => {
    beforeEach();
    for (const [res, type, code] of [
      [() => envelope(403, 'csrf_failed'), TokenHandlerError, 'csrf_failed'],
      [() => envelope(403, 'origin_not_allowed'), TokenHandlerError, 'origin_not_allowed'],
      [() => envelope(503, 'session_store_unavailable'), RetryLaterError, 'session_store_unavailable'],
      [() => { throw new TypeError('Failed to fetch'); }, RetryLaterError, 'network_error'],
    ]) {
      const { client, location, events } = setup(res);
      const other = otherTab();
      const err = await client.logout().then(() => null, (e) => e);
      assert.ok(err instanceof type, `${code}: ${err}`);
      assert.equal(err.code, code);
      await settle();
      assert.deepEqual(location.assigned, [], `${code}: navigated`);
      assert.equal(events.length, 0, `${code}: signedout here`);
      assert.equal(other.events.length, 0, `${code}: signedout in the other tab`);
    }
    assert.equal(FakeChannel.posted.length, 0);
  });

  test('follows only an http(s) logout_url, but the session has ended either way', async () => {
    beforeEach();
    for (const body of [{ logout_url: 'javascript:alert(1)' }, { logout_url: 'data:text/html,x' }, {}, { logout_url: '' }, 'not json']) {
      const { client, location, events } = setup(() => (typeof body === 'string' ? new Response(body, { status: 200 }) : json(200, body)));
      const other = otherTab();
      const err = await client.logout().then(() => null, (e) => e);
      assert.ok(err instanceof TokenHandlerError, `${JSON.stringify(body)}: ${err}`);
      assert.equal(err.code, 'bad_response');
      assert.deepEqual(location.assigned, [], `${JSON.stringify(body)}: navigated`);
      await settle();
      assert.equal(events.length, 1, 'signedout here: tokenhandler ended the session');
      assert.equal(other.events.length, 1, 'signedout in the other tab');
      FakeChannel.reset();
    }
    // A relative logout_url (post_logout_redirect_url on the SPA's origin) is resolved.
    const { client, location } = setup(() => json(200, { logout_url: '/signed-out' }));
    assert.equal(await client.logout(), `${ORIGIN}/signed-out`);
    assert.deepEqual(location.assigned, [`${ORIGIN}/signed-out`]);
  });
});

describe('tabs', () => {
  test('ignores messages that are not a sign-out; an unknown reason reads as unauthenticated', async () => {
    beforeEach();
    const { client, events } = setup(() => json(200, {}));
    const sender = new FakeChannel(client.channelName);
    for (const m of [null, 'signedout', { type: 'signedin' }, 42]) sender.postMessage(m);
    await settle();
    assert.equal(events.length, 0);
    sender.postMessage({ type: 'signedout', reason: '<img src=x>' });
    await settle();
    assert.deepEqual(events.map((e) => [e.reason, e.fromOtherTab]), [['unauthenticated', true]]);
  });

  test('close stops listening', async () => {
    beforeEach();
    const { client } = setup(() => envelope(401, 'unauthenticated'));
    const other = otherTab();
    other.client.close();
    await assert.rejects(client.api('/api/x'));
    await settle();
    assert.equal(other.events.length, 0);
  });

  test('works without BroadcastChannel', async () => {
    beforeEach();
    const client = new TokenHandlerClient({
      fetch: async () => envelope(401, 'unauthenticated'),
      location: fakeLocation(),
      BroadcastChannel: null,
    });
    const seen = [];
    const off = client.onSignedOut((e) => seen.push(e.reason));
    await assert.rejects(client.api('/api/x'), TokenHandlerError);
    off();
    assert.deepEqual(seen, ['unauthenticated']);
  });
});

describe('options', () => {
  test('refuses an auth prefix that is not a path', () => {
    for (const bad of ['auth', '//evil.example', 'https://x/auth', 42]) {
      assert.throws(() => createClient({ authPrefix: bad, BroadcastChannel: null }), TypeError, String(bad));
    }
  });

  test('the default client uses the page\'s fetch and location', async (t) => {
    const saved = { fetch: globalThis.fetch, location: globalThis.location, BroadcastChannel: globalThis.BroadcastChannel };
    t.after(() => Object.assign(globalThis, saved));
    const calls = [];
    const location = fakeLocation('/page');
    Object.assign(globalThis, {
      location,
      fetch: async (url, init) => {
        calls.push({ url, init });
        return json(200, { authenticated: false });
      },
      BroadcastChannel: FakeChannel,
    });
    const mod = await import('./tokenhandler.js');
    assert.deepEqual(await mod.session(), { authenticated: false });
    await mod.api('/api/x');
    assert.equal(new Headers(calls[1].init.headers).get('X-CSRF'), '1');
    mod.login();
    assert.deepEqual(location.assigned, ['/auth/login?return_to=%2Fpage']);
  });
});
