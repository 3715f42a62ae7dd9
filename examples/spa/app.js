// tokenhandler example SPA: no build step, no framework, and no token in JavaScript.
// Everything shown comes from tokenhandler's /auth endpoints and the example API behind
// /api/ and /orders/, through tokenhandler's JavaScript client (tokenhandler.js, a link to
// clients/js/tokenhandler.js). Data is only ever put on the page with textContent, never
// innerHTML.
import { RetryLaterError, createClient } from './tokenhandler.js';

const th = createClient(); // auth prefix /auth, X-CSRF: 1

const $ = (id) => document.getElementById(id);

let calls = 0;
let refreshes = 0;
let lastExpiry = null; // expires_at of the previous successful API call

function fmtTime(d) {
  if (!d) return '';
  return `${d.toLocaleTimeString()} (${d.toISOString()})`;
}

function showAuthError() {
  const params = new URLSearchParams(location.search);
  const code = params.get('auth_error');
  if (!code) return;
  const el = $('auth-error');
  el.textContent = `Sign-in failed: ${code}`;
  el.dataset.code = code;
  el.hidden = false;
  // Keep the message, drop it from the address bar so a reload does not repeat it.
  params.delete('auth_error');
  const q = params.toString();
  history.replaceState(null, '', location.pathname + (q ? `?${q}` : '') + location.hash);
}

// showSignedIn switches the session panel between signed in (s is the session) and
// signed out (s is null).
function showSignedIn(s) {
  const status = $('status');
  status.textContent = s ? 'signed in' : 'signed out';
  status.dataset.state = s ? 'signed-in' : 'signed-out';
  $('signin').hidden = !!s;
  $('signout').hidden = !s;
  $('signout').disabled = false;
  $('session-details').hidden = !s;
  if (s) $('signed-out-notice').hidden = true;
  // Signed out, the user's details leave the page too.
  $('sub').textContent = s ? s.sub : '';
  $('name').textContent = s ? s.name ?? '(not given)' : '';
  $('email').textContent = s ? s.email ?? '(not given)' : '';
  $('access-expiry').textContent = s ? fmtTime(s.access_token_expires_at) : '';
  $('session-expiry').textContent = s ? fmtTime(s.session_expires_at) : '';
}

async function loadSession() {
  let s;
  try {
    s = await th.session();
  } catch (err) {
    const status = $('status');
    status.textContent = err instanceof RetryLaterError
      ? `unknown (${err.code || 'unavailable'}: retry later)`
      : `unknown (${err.message})`;
    status.dataset.state = 'error';
    return null;
  }
  showSignedIn(s.authenticated ? s : null);
  return s;
}

// The client fires signedout once when the session ends: a 401 from tokenhandler here,
// or a sign-out in another tab (BroadcastChannel). The page follows without a reload.
th.addEventListener('signedout', (e) => {
  if (e.reason === 'logout' && !e.fromOtherTab) return; // this tab is on its way to the provider
  showSignedIn(null);
  const notice = $('signed-out-notice');
  notice.dataset.reason = e.reason;
  notice.dataset.fromOtherTab = String(e.fromOtherTab);
  notice.textContent = e.fromOtherTab
    ? `Signed out in another tab (${e.reason}).`
    : `Your session ended (${e.reason}): sign in again.`;
  notice.hidden = false;
});

// callAPI makes one call and records it; it returns the entry's data for tests.
async function callAPI() {
  const n = ++calls;
  $('call-count').textContent = String(calls);
  const entry = { n, status: 0, ok: false, expiresAt: null, refreshed: false };
  let body = null;
  try {
    const res = await th.api('/api/claims', { cache: 'no-store' });
    entry.status = res.status;
    entry.ok = true;
    body = await res.json();
  } catch (err) {
    entry.status = err.status ?? 0;
    entry.error = err.code || err.message;
    if (err instanceof RetryLaterError) entry.error += ' (retry later)';
  }
  if (entry.ok && body) {
    entry.expiresAt = body.expires_at;
    entry.expiresIn = body.expires_in_seconds;
    entry.refreshed = lastExpiry !== null && body.expires_at !== lastExpiry;
    if (entry.refreshed) refreshes++;
    lastExpiry = body.expires_at;
    $('claims').textContent = JSON.stringify(body.claims, null, 2);
  }
  render(entry);
  // The session panel follows: a refresh moved the access token's expiry.
  // /auth/session itself never refreshes.
  if (entry.ok) await loadSession();
  return entry;
}

// callOrders calls the /orders/ route, whose token tokenhandler derives for it, and shows
// the claims the API saw; it returns the status and body for tests.
async function callOrders() {
  const out = $('orders-result');
  let status = 0;
  let body = null;
  try {
    const res = await th.api('/orders/claims', { cache: 'no-store' });
    status = res.status;
    body = await res.json();
    $('orders-claims').textContent = JSON.stringify(body.claims, null, 2);
    out.textContent = `${status}: token expires ${fmtTime(new Date(body.expires_at))}`;
  } catch (err) {
    status = err.status ?? 0;
    out.textContent = `${status || 'network error'}: ${err.code || err.message}`;
  }
  out.dataset.status = String(status);
  out.hidden = false;
  return { status, body };
}

function render(e) {
  const li = document.createElement('li');
  li.dataset.n = String(e.n);
  li.dataset.status = String(e.status);
  li.dataset.ok = String(e.ok);
  li.dataset.refreshed = String(e.refreshed);
  if (e.expiresAt) li.dataset.expiresAt = e.expiresAt;
  let text = `#${e.n} ${e.status || 'network error'} `;
  if (e.ok) {
    text += `token expires ${fmtTime(new Date(e.expiresAt))}, in ${e.expiresIn} s`;
  } else {
    text += e.error ? `error: ${e.error}` : 'failed';
  }
  li.append(document.createTextNode(text));
  if (e.refreshed) {
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.textContent = 'token refreshed';
    li.append(badge);
  }
  $('results').prepend(li);
  $('refresh-count').textContent = String(refreshes);
  const last = $('last-result');
  last.textContent = text + (e.refreshed ? ' (token refreshed)' : '');
  last.dataset.status = String(e.status);
  last.hidden = false;
}

async function signOut() {
  const btn = $('signout');
  btn.disabled = true;
  try {
    await th.logout(); // tells the other tabs, then goes to the provider's logout page
  } catch (err) {
    btn.disabled = false;
    const el = $('auth-error');
    el.textContent = `Sign-out failed: ${err.code || err.message}`;
    el.hidden = false;
  }
}

function signIn(ev) {
  ev.preventDefault();
  th.login(); // back to this page afterwards
}

showAuthError();
$('document-cookie').textContent = JSON.stringify(document.cookie);
$('call-api').addEventListener('click', async (ev) => {
  ev.target.disabled = true;
  try { await callAPI(); } finally { ev.target.disabled = false; }
});
$('call-orders').addEventListener('click', async (ev) => {
  ev.target.disabled = true;
  try { await callOrders(); } finally { ev.target.disabled = false; }
});
$('signin').addEventListener('click', signIn);
$('signout').addEventListener('click', signOut);
loadSession();

// For the browser tests and the curious: window.demo.callAPI() returns the entry,
// window.demo.callOrders() the /orders/ call, window.demo.client is the tokenhandler client.
window.demo = { callAPI, callOrders, loadSession, client: th };
