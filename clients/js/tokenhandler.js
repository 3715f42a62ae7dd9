// tokenhandler.js: the browser side of tokenhandler, for single-page apps served on
// tokenhandler's origin. An ES module with no dependencies and no build step; its types
// are in tokenhandler.d.ts.
//
//   import { createClient } from './tokenhandler.js';
//   const th = createClient();                     // { authPrefix: '/auth', csrfHeader: 'X-CSRF' }
//   th.addEventListener('signedout', (e) => showSignedOut(e.reason));
//   const s = await th.session();                  // { authenticated, sub, name, email, ...expiry }
//   const res = await th.api('/api/orders');       // a Response; errors throw
//
// The SPA never sees a token: tokenhandler keeps them in HttpOnly cookies and adds the
// Bearer header on the way to the API. This module only adds what every call needs (the
// CSRF header, same-origin credentials), turns tokenhandler's JSON errors
// {"error","error_description"} into typed errors, and tells every tab when the session
// ends.

const DEFAULT_AUTH_PREFIX = '/auth';
const DEFAULT_CSRF_HEADER = 'X-CSRF';
const DEFAULT_CSRF_VALUE = '1';
const MAX_RETURN_TO = 2048; // bytes, as tokenhandler counts them

// The 401 codes with which tokenhandler itself says "no session". An API behind a route
// can answer 401 for its own reasons (a wrong audience, a missing scope); that does not
// mean the session ended, so it is an error but not a sign-out.
const SIGNED_OUT_CODES = new Set(['unauthenticated', 'session_expired']);

// The statuses that say "the session is fine, the service is not": retry later.
const RETRY_LATER_STATUSES = new Set([502, 503]);

// The reasons a signedout event gives.
const REASONS = new Set(['unauthenticated', 'session_expired', 'logout']);

/**
 * An error answer from tokenhandler, or from an API behind it: the status, and the
 * `error` code of a JSON body when it has one.
 */
export class TokenHandlerError extends Error {
  constructor(message, { status = 0, code = '', description = '', body, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'TokenHandlerError';
    this.status = status;
    this.code = code;
    this.description = description;
    this.body = body;
  }

  /** Whether the same request may succeed later: the session is still there. */
  get retryLater() {
    return false;
  }
}

/**
 * 502 or 503 (for example idp_unavailable, session_store_unavailable,
 * upstream_unavailable), or no answer at all (status 0, code network_error): the
 * session is still there, retry later.
 */
export class RetryLaterError extends TokenHandlerError {
  constructor(message, details) {
    super(message, details);
    this.name = 'RetryLaterError';
  }

  get retryLater() {
    return true;
  }
}

/** The event a client dispatches, once, when it learns that the session ended. */
export class SignedOutEvent extends Event {
  constructor(reason, fromOtherTab) {
    super('signedout');
    /** 'unauthenticated', 'session_expired' or 'logout'. */
    this.reason = reason;
    /** True when another tab learnt it and told this one. */
    this.fromOtherTab = fromOtherTab;
  }
}

/**
 * validReturnTo checks a return_to path the way tokenhandler's /auth/login does: a
 * same-origin relative path (one leading "/", not "//" or "/\"), no control characters
 * or backslashes nor their %-encodings, at most 2 KiB, a clean path (no "." or ".."
 * segment, no "//", no ";", no %2e, %2f, %5c or %00) that, decoded, is not under the
 * auth prefix. It returns the path without its fragment, or null when tokenhandler would
 * refuse it. (tokenhandler also refuses a path under a proxied route, which only it
 * knows.)
 *
 * @param {string} s
 * @param {string} [authPrefix]
 * @returns {string | null}
 */
export function validReturnTo(s, authPrefix = DEFAULT_AUTH_PREFIX) {
  if (typeof s !== 'string') return null;
  if (s === '') return '/';
  try {
    encodeURIComponent(s);
  } catch {
    return null; // a lone surrogate cannot be sent at all
  }
  if (new TextEncoder().encode(s).length > MAX_RETURN_TO || s[0] !== '/' || (s.length > 1 && (s[1] === '/' || s[1] === '\\'))) {
    return null;
  }
  const hash = s.indexOf('#');
  if (hash >= 0) s = s.slice(0, hash);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || c === 0x5c) return null;
    if (c === 0x25) { // %
      const hex = s.slice(i + 1, i + 3).toLowerCase();
      if (!/^[0-9a-f]{2}$/.test(hex)) return null;
      // %00-%1F, %7F (control characters) and %5C (backslash) anywhere; %2F right after
      // the leading slash would make "//" once decoded.
      if (hex[0] === '0' || hex[0] === '1' || hex === '7f' || hex === '5c' || (i === 1 && hex === '2f')) {
        return null;
      }
    }
  }
  // The path as tokenhandler's router will see it: clean, and decoded ("/%61uth/" is
  // "/auth/"), which must not be under the auth prefix (not a page of the SPA).
  const q = s.indexOf('?');
  const raw = q >= 0 ? s.slice(0, q) : s;
  if (hasForbiddenEscape(raw)) return null;
  const decoded = raw.replace(/%([0-9a-fA-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
  if (!cleanDecoded(decoded)) return null;
  if (decoded === authPrefix || decoded.startsWith(`${authPrefix}/`)) return null;
  return s;
}

// cleanDecoded is tokenhandler's check of a decoded path (web.CleanDecoded): it starts
// with "/", has no "." or ".." segment, no "//", no control character, backslash or ";",
// and no %2e, %2f, %5c or %00 (which an upstream might decode a second time).
function cleanDecoded(p) {
  if (p === '' || p[0] !== '/') return false;
  let segStart = 1;
  for (let i = 1; i <= p.length; i++) {
    if (i < p.length) {
      const c = p.charCodeAt(i);
      if (c < 0x20 || c === 0x7f || c === 0x5c || c === 0x3b) return false;
      if (c !== 0x2f) continue;
    }
    const seg = p.slice(segStart, i); // i is a "/" or the end
    if (seg === '.' || seg === '..') return false;
    if (seg === '' && i < p.length) return false; // "//"; a trailing "/" is fine
    segStart = i + 1;
  }
  return !hasForbiddenEscape(p);
}

// hasForbiddenEscape reports whether s holds %2e, %2f, %5c or %00 in any letter case.
function hasForbiddenEscape(s) {
  return /%(2[ef]|5c|00)/i.test(s);
}

function normalizePrefix(prefix) {
  if (typeof prefix !== 'string' || !prefix.startsWith('/') || prefix.startsWith('//')) {
    throw new TypeError(`tokenhandler: authPrefix must be a path such as "/auth", got ${JSON.stringify(prefix)}`);
  }
  return prefix.replace(/\/+$/, '') || DEFAULT_AUTH_PREFIX;
}

// readError reads an error answer: tokenhandler's envelope, another JSON body, or text.
async function readError(res) {
  let body;
  try {
    const text = await res.text();
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  } catch {
    body = undefined;
  }
  const envelope = body !== null && typeof body === 'object' ? body : {};
  return {
    body,
    code: typeof envelope.error === 'string' ? envelope.error : '',
    description: typeof envelope.error_description === 'string' ? envelope.error_description : '',
  };
}

function toDate(v) {
  if (typeof v !== 'string') return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/**
 * A client for one tokenhandler (one auth prefix). It is an EventTarget: listen for
 * 'signedout' (a SignedOutEvent).
 */
export class TokenHandlerClient extends EventTarget {
  #prefix;
  #csrfHeader;
  #csrfValue;
  #fetch;
  #location;
  #channel = null;
  #signedOut = false;

  constructor(options = {}) {
    super();
    this.#prefix = normalizePrefix(options.authPrefix ?? DEFAULT_AUTH_PREFIX);
    this.#csrfHeader = options.csrfHeader ?? DEFAULT_CSRF_HEADER;
    this.#csrfValue = options.csrfValue ?? DEFAULT_CSRF_VALUE;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#location = options.location ?? null;
    // BroadcastChannel: null (or false) means "this tab only".
    const BC = options.BroadcastChannel !== undefined ? options.BroadcastChannel : globalThis.BroadcastChannel;
    if (typeof BC === 'function') {
      this.#channel = new BC(`tokenhandler:${this.#prefix}`);
      this.#channel.addEventListener('message', (ev) => {
        const m = ev.data;
        if (m && m.type === 'signedout') {
          this.#dispatchSignedOut(REASONS.has(m.reason) ? m.reason : 'unauthenticated', true);
        }
      });
    }
  }

  /** The auth prefix, without a trailing slash ("/auth"). */
  get authPrefix() {
    return this.#prefix;
  }

  /** The name of the BroadcastChannel the tabs share: "tokenhandler:" + the auth prefix. */
  get channelName() {
    return `tokenhandler:${this.#prefix}`;
  }

  get #loc() {
    const loc = this.#location ?? globalThis.location;
    if (!loc) throw new TypeError('tokenhandler: no location: pass options.location outside a browser');
    return loc;
  }

  /**
   * api fetches a same-origin path with the CSRF header and same-origin credentials. It
   * resolves with the Response when the status is below 400 and throws a
   * TokenHandlerError otherwise: a RetryLaterError for 502/503 and network failures; on
   * tokenhandler's 401 (unauthenticated, session_expired) it first signs every tab out.
   *
   * @param {string | URL} path
   * @param {RequestInit} [init]
   * @returns {Promise<Response>}
   */
  async api(path, init = {}) {
    const where = this.#sameOrigin(path, 'api');
    const headers = new Headers(init.headers);
    headers.set(this.#csrfHeader, this.#csrfValue);
    const method = String(init.method ?? 'GET').toUpperCase();
    const res = await this.#send(path, { ...init, headers, credentials: 'same-origin' }, method, where);
    if (res.status < 400) return res;
    throw await this.#failure(res, method, where);
  }

  /**
   * session asks GET {authPrefix}/session who is signed in. It never refreshes a token.
   * The expiry hints are Dates; a claim the provider never gave is absent.
   *
   * @returns {Promise<Session>}
   */
  async session() {
    const where = `${this.#prefix}/session`;
    const res = await this.#send(where, { credentials: 'same-origin', cache: 'no-store' }, 'GET', where);
    if (res.status !== 200) throw await this.#failure(res, 'GET', where);
    let s;
    try {
      s = await res.json();
    } catch (err) {
      throw new TokenHandlerError(`tokenhandler: GET ${where}: the answer is not JSON`, { status: res.status, code: 'bad_response', cause: err });
    }
    if (!s || s.authenticated !== true) return { authenticated: false };
    this.#signedOut = false;
    const out = { authenticated: true, sub: typeof s.sub === 'string' ? s.sub : '' };
    if (typeof s.name === 'string') out.name = s.name;
    if (typeof s.email === 'string') out.email = s.email;
    const at = toDate(s.access_token_expires_at);
    if (at) out.access_token_expires_at = at;
    const se = toDate(s.session_expires_at);
    if (se) out.session_expires_at = se;
    return out;
  }

  /**
   * login sends the browser to {authPrefix}/login. returnTo is the page to come back to
   * (default: the current path and query); like tokenhandler, this refuses anything but a
   * same-origin path of the SPA, with a TypeError, before navigating.
   *
   * @param {string} [returnTo]
   */
  login(returnTo) {
    const loc = this.#loc;
    const wanted = returnTo ?? `${loc.pathname ?? '/'}${loc.search ?? ''}`;
    const ok = validReturnTo(wanted, this.#prefix);
    if (ok === null) {
      throw new TypeError(`tokenhandler: login: return_to must be a same-origin path of the SPA, got ${JSON.stringify(wanted)}`);
    }
    loc.assign(`${this.#prefix}/login?return_to=${encodeURIComponent(ok)}`);
  }

  /**
   * logout ends the session: POST {authPrefix}/logout with the CSRF header, tells every
   * tab (a signedout event with reason 'logout'), then sends the browser to the
   * returned logout_url so the provider ends its session too. It resolves with that URL.
   *
   * @returns {Promise<string>}
   */
  async logout() {
    const where = `${this.#prefix}/logout`;
    const init = {
      method: 'POST',
      headers: { [this.#csrfHeader]: this.#csrfValue },
      credentials: 'same-origin',
      cache: 'no-store',
    };
    const res = await this.#send(where, init, 'POST', where);
    if (res.status !== 200) throw await this.#failure(res, 'POST', where);
    let body = null;
    try {
      body = await res.json();
    } catch { /* checked below */ }
    // 200: tokenhandler has ended the session and cleared its cookies, whatever follows.
    this.#channel?.postMessage({ type: 'signedout', reason: 'logout' });
    this.#dispatchSignedOut('logout', false);
    const loc = this.#loc;
    let next = null;
    try {
      next = new URL(body && typeof body.logout_url === 'string' ? body.logout_url : '', loc.href);
    } catch { /* checked below */ }
    if (!body || typeof body.logout_url !== 'string' || body.logout_url === '' ||
        !next || (next.protocol !== 'https:' && next.protocol !== 'http:')) {
      throw new TokenHandlerError(`tokenhandler: POST ${where}: no http(s) logout_url in the answer`, { status: res.status, code: 'bad_response', body });
    }
    loc.assign(next.href);
    return next.href;
  }

  /**
   * onSignedOut calls listener(event) on every signedout event and returns the function
   * that removes it.
   *
   * @param {(event: SignedOutEvent) => void} listener
   * @returns {() => void}
   */
  onSignedOut(listener) {
    this.addEventListener('signedout', listener);
    return () => this.removeEventListener('signedout', listener);
  }

  /** close stops listening to the other tabs. */
  close() {
    this.#channel?.close();
    this.#channel = null;
  }

  // #sameOrigin refuses a URL on another origin: the CSRF header and the cookies are for
  // tokenhandler only. It returns the path to name in error messages.
  #sameOrigin(path, op) {
    const loc = this.#loc;
    let u;
    try {
      u = new URL(String(path), loc.href);
    } catch {
      throw new TypeError(`tokenhandler: ${op}: not a URL: ${JSON.stringify(String(path))}`);
    }
    if (u.origin !== new URL(loc.href).origin) {
      throw new TypeError(`tokenhandler: ${op}: ${u.origin} is not this page's origin: call APIs through tokenhandler`);
    }
    return u.pathname;
  }

  async #send(input, init, method, where) {
    try {
      return await this.#fetch(input, init);
    } catch (err) {
      if (err && err.name === 'AbortError') throw err; // the caller's own abort
      throw new RetryLaterError(`tokenhandler: ${method} ${where}: no answer (network error): retry later`, {
        status: 0, code: 'network_error', cause: err,
      });
    }
  }

  // #failure turns an error answer into the error to throw; tokenhandler's 401 signs out.
  async #failure(res, method, where) {
    const { body, code, description } = await readError(res);
    const details = { status: res.status, code, description, body };
    const what = `tokenhandler: ${method} ${where}: ${res.status}${code ? ` ${code}` : ''}`;
    if (RETRY_LATER_STATUSES.has(res.status)) {
      return new RetryLaterError(`${what}: temporarily unavailable, retry later`, details);
    }
    if (res.status === 401 && SIGNED_OUT_CODES.has(code)) {
      if (!this.#signedOut) this.#channel?.postMessage({ type: 'signedout', reason: code });
      this.#dispatchSignedOut(code, false);
      return new TokenHandlerError(`${what}: signed out`, details);
    }
    return new TokenHandlerError(what, details);
  }

  // #dispatchSignedOut fires one signedout event per sign-out: a burst of 401s, or the
  // other tabs' messages about it, do not repeat it until session() sees a session again.
  #dispatchSignedOut(reason, fromOtherTab) {
    if (this.#signedOut) return;
    this.#signedOut = true;
    this.dispatchEvent(new SignedOutEvent(reason, fromOtherTab));
  }
}

/**
 * createClient makes a client for one tokenhandler.
 *
 * @param {ClientOptions} [options]
 * @returns {TokenHandlerClient}
 */
export function createClient(options) {
  return new TokenHandlerClient(options);
}

// The default client (auth prefix /auth, X-CSRF: 1), made on first use, for apps that
// need no options.
let defaultClient = null;
function shared() {
  defaultClient ??= new TokenHandlerClient();
  return defaultClient;
}

/** api() of the default client. */
export const api = (path, init) => shared().api(path, init);
/** session() of the default client. */
export const session = () => shared().session();
/** login() of the default client. */
export const login = (returnTo) => shared().login(returnTo);
/** logout() of the default client. */
export const logout = () => shared().logout();
/** onSignedOut() of the default client. */
export const onSignedOut = (listener) => shared().onSignedOut(listener);
