// Types for tokenhandler.js, the browser client of tokenhandler.

/** Options of createClient; every field is optional. */
export interface ClientOptions {
  /** tokenhandler's auth_prefix. Default "/auth". */
  authPrefix?: string;
  /** The CSRF header tokenhandler wants (csrf.header). Default "X-CSRF". */
  csrfHeader?: string;
  /** The CSRF header's value. Default "1". */
  csrfValue?: string;
  /** The fetch to use. Default: the global fetch. */
  fetch?: (input: string | URL, init?: RequestInit) => Promise<Response>;
  /** The location to read and navigate. Default: the global location. */
  location?: Pick<Location, 'href' | 'pathname' | 'search' | 'assign'>;
  /**
   * The BroadcastChannel constructor that tells other tabs about a sign-out. Default:
   * the global one; null, or none at all, tells only this tab.
   */
  BroadcastChannel?: null | (new (name: string) => Pick<BroadcastChannel, 'postMessage' | 'close' | 'addEventListener'>);
}

/** What GET {authPrefix}/session says. */
export type Session =
  | { authenticated: false }
  | {
      authenticated: true;
      sub: string;
      /** Absent when the provider never gave it. */
      name?: string;
      /** Absent when the provider never gave it. */
      email?: string;
      /**
       * When the access token expires: a hint only. An expired access token still counts
       * as signed in; the next API call refreshes it.
       */
      access_token_expires_at?: Date;
      /** When the session ends for good (its absolute lifetime; a refresh never extends it). */
      session_expires_at?: Date;
    };

/** Why the session ended. */
export type SignedOutReason = 'unauthenticated' | 'session_expired' | 'logout';

/** Dispatched once per sign-out, in this tab and in every other tab of the origin. */
export class SignedOutEvent extends Event {
  constructor(reason: SignedOutReason, fromOtherTab: boolean);
  readonly type: 'signedout';
  readonly reason: SignedOutReason;
  /** True when another tab learnt of the sign-out and told this one. */
  readonly fromOtherTab: boolean;
}

export interface ErrorDetails {
  status?: number;
  code?: string;
  description?: string;
  body?: unknown;
  cause?: unknown;
}

/** An error answer from tokenhandler or from an API behind it. */
export class TokenHandlerError extends Error {
  constructor(message: string, details?: ErrorDetails);
  /** The HTTP status; 0 when no answer came. */
  readonly status: number;
  /**
   * The `error` field of a JSON body ("" without one): tokenhandler's stable codes are
   * unauthenticated, session_expired, csrf_failed, origin_not_allowed, idp_unavailable,
   * session_store_unavailable, upstream_unavailable, upstream_timeout, bad_request,
   * not_found, method_not_allowed; network_error and bad_response are the client's own.
   */
  readonly code: string;
  /** The `error_description` field of a JSON body ("" without one). */
  readonly description: string;
  /** The body: parsed JSON, or text. */
  readonly body: unknown;
  /** Whether the same request may succeed later (the session is still there). */
  readonly retryLater: boolean;
}

/** 502, 503, or no answer at all (status 0, code network_error): retry later. */
export class RetryLaterError extends TokenHandlerError {
  readonly retryLater: true;
}

export interface TokenHandlerClientEventMap {
  signedout: SignedOutEvent;
}

/** A client for one tokenhandler (one auth prefix). */
export class TokenHandlerClient extends EventTarget {
  constructor(options?: ClientOptions);
  /** The auth prefix, without a trailing slash. */
  readonly authPrefix: string;
  /** The BroadcastChannel's name: "tokenhandler:" + the auth prefix. */
  readonly channelName: string;

  /**
   * fetch with the CSRF header and same-origin credentials. Resolves with the Response
   * when the status is below 400; throws TokenHandlerError otherwise (RetryLaterError for
   * 502/503 and network errors). tokenhandler's 401 (unauthenticated, session_expired)
   * first dispatches signedout here and in every other tab. A URL on another origin is
   * refused with a TypeError.
   */
  api(path: string | URL, init?: RequestInit): Promise<Response>;
  /** GET {authPrefix}/session. 502/503 throw RetryLaterError. */
  session(): Promise<Session>;
  /**
   * Navigates to {authPrefix}/login?return_to=...; returnTo defaults to the current path
   * and query. Anything but a same-origin path of the SPA throws a TypeError.
   */
  login(returnTo?: string): void;
  /**
   * POST {authPrefix}/logout, signedout (reason 'logout') here and in every other tab,
   * then navigates to the returned logout_url, which it resolves with.
   */
  logout(): Promise<string>;
  /** Adds a signedout listener; returns the function that removes it. */
  onSignedOut(listener: (event: SignedOutEvent) => void): () => void;
  /** Stops listening to the other tabs. */
  close(): void;

  addEventListener<K extends keyof TokenHandlerClientEventMap>(
    type: K,
    listener: (this: TokenHandlerClient, ev: TokenHandlerClientEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof TokenHandlerClientEventMap>(
    type: K,
    listener: (this: TokenHandlerClient, ev: TokenHandlerClientEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** Makes a client for one tokenhandler. */
export function createClient(options?: ClientOptions): TokenHandlerClient;

/**
 * The return_to tokenhandler would accept (without its fragment), or null: a
 * same-origin path, no control characters or backslashes nor their %-encodings, at most
 * 2 KiB, a clean path (no "." or ".." segment, "//", ";", %2e, %2f, %5c or %00) that,
 * decoded, is not under the auth prefix. tokenhandler also refuses a path under a
 * proxied route, which only it knows.
 */
export function validReturnTo(returnTo: string, authPrefix?: string): string | null;

/** api() of the default client (auth prefix /auth, X-CSRF: 1). */
export function api(path: string | URL, init?: RequestInit): Promise<Response>;
/** session() of the default client. */
export function session(): Promise<Session>;
/** login() of the default client. */
export function login(returnTo?: string): void;
/** logout() of the default client. */
export function logout(): Promise<string>;
/** onSignedOut() of the default client. */
export function onSignedOut(listener: (event: SignedOutEvent) => void): () => void;
