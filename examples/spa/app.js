// tokenhandler example SPA: no build step, no framework, and no token in JavaScript.
// Everything shown comes from tokenhandler's /auth endpoints and the example API behind
// /api/. Data is only ever put on the page with textContent, never innerHTML.
'use strict';

const CSRF = { 'X-CSRF': '1' };

const $ = (id) => document.getElementById(id);

let calls = 0;
let refreshes = 0;
let lastExpiry = null; // expires_at of the previous successful API call

function fmtTime(rfc3339) {
  if (!rfc3339) return '';
  const d = new Date(rfc3339);
  return `${d.toLocaleTimeString()} (${rfc3339})`;
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

async function loadSession() {
  const status = $('status');
  let s;
  try {
    const res = await fetch('/auth/session', { credentials: 'same-origin', cache: 'no-store' });
    if (!res.ok) throw new Error(`GET /auth/session: ${res.status}`);
    s = await res.json();
  } catch (err) {
    status.textContent = `unknown (${err.message})`;
    status.dataset.state = 'error';
    return null;
  }
  const signedIn = s.authenticated === true;
  status.textContent = signedIn ? 'signed in' : 'signed out';
  status.dataset.state = signedIn ? 'signed-in' : 'signed-out';
  $('signin').hidden = signedIn;
  $('signout').hidden = !signedIn;
  $('session-details').hidden = !signedIn;
  if (signedIn) {
    $('sub').textContent = s.sub || '';
    $('name').textContent = s.name || '(not given)';
    $('email').textContent = s.email || '(not given)';
    $('access-expiry').textContent = fmtTime(s.access_token_expires_at);
    $('session-expiry').textContent = fmtTime(s.session_expires_at);
  }
  return s;
}

// callAPI makes one call and records it; it returns the entry's data for tests.
async function callAPI() {
  const n = ++calls;
  $('call-count').textContent = String(calls);
  const entry = { n, status: 0, ok: false, expiresAt: null, refreshed: false };
  let body = null;
  try {
    const res = await fetch('/api/claims', { headers: CSRF, credentials: 'same-origin', cache: 'no-store' });
    entry.status = res.status;
    entry.ok = res.ok;
    body = await res.json().catch(() => null);
  } catch (err) {
    entry.error = err.message;
  }
  if (entry.ok && body) {
    entry.expiresAt = body.expires_at;
    entry.expiresIn = body.expires_in_seconds;
    entry.refreshed = lastExpiry !== null && body.expires_at !== lastExpiry;
    if (entry.refreshed) refreshes++;
    lastExpiry = body.expires_at;
    $('claims').textContent = JSON.stringify(body.claims, null, 2);
  } else if (body && body.error) {
    entry.error = body.error;
  }
  render(entry);
  // The session panel follows: a refresh moved the access token's expiry, a 401 may
  // mean the session ended. /auth/session itself never refreshes.
  await loadSession();
  return entry;
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
    text += `token expires ${fmtTime(e.expiresAt)}, in ${e.expiresIn} s`;
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
    const res = await fetch('/auth/logout', { method: 'POST', headers: CSRF, credentials: 'same-origin' });
    const body = await res.json();
    if (!res.ok || !body.logout_url) throw new Error(`POST /auth/logout: ${res.status}`);
    location.assign(body.logout_url);
  } catch (err) {
    btn.disabled = false;
    const el = $('auth-error');
    el.textContent = `Sign-out failed: ${err.message}`;
    el.hidden = false;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  showAuthError();
  $('document-cookie').textContent = JSON.stringify(document.cookie);
  $('call-api').addEventListener('click', async (ev) => {
    ev.target.disabled = true;
    try { await callAPI(); } finally { ev.target.disabled = false; }
  });
  $('signout').addEventListener('click', signOut);
  loadSession();
});

// For the browser tests and the curious: window.demo.callAPI() returns the entry.
window.demo = { callAPI, loadSession };
