// Package proxy owns tokenhandler's API proxy: the configured routes (longest prefix, method
// allowlist, per-route timeout), the refusal of unclean paths, the CSRF and Origin checks of
// proxied requests, turning the session cookies into "Authorization: Bearer" on the
// upstream request, header hygiene in both directions (the client's Authorization replaced,
// tokenhandler's cookies kept from upstreams and upstreams kept from setting them,
// X-Forwarded-* only from trusted proxies, no protocol switch but WebSocket), streaming and
// WebSocket pass-through, and transparent refresh: proactive before forwarding an expiring
// token, reactive once after an upstream's 401 when the request can be replayed. A
// DPoP-bound token goes as "Authorization: DPoP" with a fresh proof per upstream request,
// and an upstream's use_dpop_nonce challenge is answered by one retry with its nonce. For
// a route with a token policy, the token made for that API (derived.go: one call in the
// spine, the Deriver it is given obtains and caches it).
//
// It does not own the session cookies (package session reads and writes them), the token
// endpoint (the Tokens it is given, in practice oauthagent.Refresher, refreshes and
// coordinates refreshes across callers and replicas), CORS preflights (web.CORS wraps the
// handler), or the HTTP server's own timeouts.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// Refresher is what the proxy needs from the OAuth agent: oauthagent.Refresher satisfies
// it.
type Refresher interface {
	// Refresh returns s with fresh tokens, spending s.RefreshToken at most once across
	// concurrent callers (and serving the rotation grace entry to late callers with the old
	// token). Errors wrap session.ErrRefreshDenied (the session is over) or
	// session.ErrIdPUnavailable (keep the session, 502).
	Refresh(ctx context.Context, s *session.Session) (*session.Session, error)
}

// Options configure a Handler. Zero values are documented per field.
type Options struct {
	// Routes are the proxied prefixes; the longest matching prefix wins.
	Routes []Route
	// RefreshSkew is session.refresh_skew: refresh before forwarding when the access token
	// expires within min(RefreshSkew, half its lifetime).
	RefreshSkew time.Duration
	// CSRF checks the CSRF header and Origin of every proxied request. Required.
	CSRF *web.CSRF
	// TrustedProxies are the peers (by RemoteAddr) whose X-Forwarded-* and Forwarded
	// headers are kept. Empty: every client-sent forwarding header is dropped.
	TrustedProxies []netip.Prefix
	// OwnCookie reports whether a cookie name is tokenhandler's (session.CookieNames.Owns).
	// Required: those cookies never reach an upstream, and an upstream never sets them.
	OwnCookie func(name string) bool
	// DPoP makes the proofs of DPoP-bound tokens, the session's (oidc.dpop) and the
	// routes' derived ones (token.dpop): such a token is forwarded as "Authorization:
	// DPoP" with a fresh proof per upstream request (RFC 9449). nil: a bound session
	// cannot be used (401), nor a bound derived token (502 token_unavailable), for a bound
	// token is never forwarded as Bearer.
	DPoP *dpop.Proofer
	// Deriver obtains the tokens of routes with a token policy. Required when a route has
	// one.
	Deriver Deriver
	// OnDerive, when set, is called once per request to a route with a token policy with
	// the route, the outcome (Derive* constants; DeriveCached is a cache hit) and the
	// time it took.
	OnDerive func(route, outcome string, d time.Duration)
	// Transport sends upstream requests. nil: DefaultTransport().
	Transport http.RoundTripper
	// Tracer, when set, records a span for the session's load and one for each refresh
	// a request needs (trigger and outcome); nil: none.
	Tracer trace.Tracer
	// ReplayMemory bounds the memory of all replay buffers together (request bodies kept
	// for the retry after a reactive refresh); past it a request is forwarded unbuffered
	// and not replayed. 0 means 64 MiB.
	ReplayMemory int64
	// Logger receives errors; nil means slog.Default(). No token or cookie is ever logged.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// OnUpstream, when set, is called once per forwarded request with the route's path,
	// the status sent to the client (the upstream's, or 502/504 when it failed; 499 when
	// the client went away before the upstream answered) and the time from forwarding
	// until the upstream's response headers (or the failure).
	OnUpstream func(route string, status int, d time.Duration)
	// OnRefresh, when set, is called after every refresh attempt with its trigger
	// ("proactive" or "reactive"), its outcome (session.RefreshOutcome's vocabulary) and
	// its duration.
	OnRefresh func(trigger, outcome string, d time.Duration)
	// OnError, when set, is called with the status and code of every error answer the
	// proxy writes itself (upstream failures included).
	OnError func(status int, code string)
}

// Handler proxies the configured routes. Build it with New.
type Handler struct {
	store   session.Store
	tokens  Refresher
	routes  []*route // longest prefix first
	skew    time.Duration
	csrf    *web.CSRF
	trusted []netip.Prefix
	public  *url.URL // the public origin: X-Forwarded-Host and -Proto; nil: not set
	own     func(string) bool
	log     *slog.Logger
	now     func() time.Time
	rp      *httputil.ReverseProxy
	limiter *web.Limiter
	bearers bearerCache
	dpop    *dpop.Proofer // nil: no DPoP
	bound   bearerCache   // "DPoP " + token
	nonces  dpop.Nonces   // the upstreams' latest DPoP-Nonce per origin
	// replayMem bounds all replay buffers together.
	replayMem *memBudget
	tracer    trace.Tracer // nil: no spans

	onUpstream func(string, int, time.Duration)
	onRefresh  func(string, string, time.Duration)
	onError    func(int, string)
	deriver    Deriver
	onDerive   func(string, string, time.Duration)
}

const (
	defaultTimeout = 30 * time.Second
	// maxReplayBody is the largest request body kept for a reactive retry.
	maxReplayBody = 1 << 20
	// defaultReplayMemory bounds all replay buffers together by default.
	defaultReplayMemory = 64 << 20
	// reactiveWindow is how often one session may have a reactive refresh.
	reactiveWindow = time.Minute
	// maxReactiveEntries bounds the reactive-refresh memory.
	maxReactiveEntries = 100_000
	defaultAllow       = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
	// statusClientGone is what OnUpstream reports when the client left first (nginx's 499).
	statusClientGone = 499
)

// New returns a Handler for opts.Routes that loads sessions from store and refreshes them
// with tokens. It reports every problem of opts at once.
func New(store session.Store, tokens Refresher, opts Options) (*Handler, error) {
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("proxy: a session store is required"))
	}
	if tokens == nil {
		errs = append(errs, errors.New("proxy: a token refresher is required"))
	}
	if opts.CSRF == nil {
		errs = append(errs, errors.New("proxy: CSRF options are required"))
	}
	if opts.OwnCookie == nil {
		errs = append(errs, errors.New("proxy: OwnCookie is required"))
	}
	if opts.RefreshSkew < 0 {
		errs = append(errs, fmt.Errorf("proxy: refresh skew %s is negative", opts.RefreshSkew))
	}
	h := &Handler{
		store:      store,
		tokens:     tokens,
		skew:       opts.RefreshSkew,
		csrf:       opts.CSRF,
		trusted:    slices.Clone(opts.TrustedProxies),
		own:        opts.OwnCookie,
		log:        opts.Logger,
		now:        opts.Now,
		limiter:    web.NewLimiter(reactiveWindow, maxReactiveEntries),
		replayMem:  &memBudget{max: opts.ReplayMemory},
		tracer:     opts.Tracer,
		dpop:       opts.DPoP,
		bound:      bearerCache{scheme: boundScheme},
		onUpstream: opts.OnUpstream,
		onRefresh:  opts.OnRefresh,
		onError:    opts.OnError,
		deriver:    opts.Deriver,
		onDerive:   opts.OnDerive,
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if opts.CSRF != nil && opts.CSRF.PublicOrigin != "" {
		h.public, _ = url.Parse(opts.CSRF.PublicOrigin)
	}
	if h.replayMem.max == 0 {
		h.replayMem.max = defaultReplayMemory
	}
	if h.now == nil {
		h.now = time.Now
	}
	seen := map[string]bool{}
	for i, r := range opts.Routes {
		rt, err := newRoute(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("proxy: routes[%d]: %w", i, err))
			continue
		}
		if rt.policy != nil && opts.Deriver == nil {
			errs = append(errs, fmt.Errorf("proxy: routes[%d]: a token policy needs Options.Deriver", i))
			continue
		}
		if seen[rt.prefix] {
			errs = append(errs, fmt.Errorf("proxy: routes[%d]: path %q is configured twice", i, rt.prefix))
			continue
		}
		seen[rt.prefix] = true
		rt.handler = routeHandler{h, rt}
		h.routes = append(h.routes, rt)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortStableFunc(h.routes, func(a, b *route) int { return len(b.prefix) - len(a.prefix) })

	h.rp = h.reverseProxy(opts.Transport)
	return h, nil
}

// reverseProxy is the ReverseProxy under every route: our Rewrite, our transport (the
// route's header timeout, the reactive retry) over base (nil: DefaultTransport), and
// one place for upstream failures.
func (h *Handler) reverseProxy(base http.RoundTripper) *httputil.ReverseProxy {
	if base == nil {
		base = DefaultTransport()
	}
	return &httputil.ReverseProxy{
		Rewrite:   h.rewrite,
		Transport: &transport{h: h, base: base},
		// Zero: ReverseProxy itself flushes at once every response that streams, a
		// text/event-stream or one of unknown length (chunked), which is all that
		// streaming needs. -1 would flush every response, headers and body apart (two
		// writes and a timer goroutine per request: a third of the proxy's CPU time).
		FlushInterval:  0,
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.upstreamError,
		ErrorLog:       slog.NewLogLogger(h.log.Handler(), slog.LevelError),
		BufferPool:     bufferPool{},
	}
}

// DefaultTransport returns the upstream transport the proxy uses when given none: a
// clone of http.DefaultTransport with MaxIdleConnsPerHost 256, MaxIdleConns 1024,
// IdleConnTimeout 90s and compression left to client and upstream.
func DefaultTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	// Pass the client's Accept-Encoding on untouched instead of asking for gzip and
	// decompressing in the middle.
	t.DisableCompression = true
	return t
}

// ServeHTTP proxies r: path, route, then the route's handler (see Routes).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{in: r}
	switch {
	case !web.CleanPath(r.URL):
		h.fail(w, x, errBadPath)
	case h.match(r.URL.Path) == nil:
		h.fail(w, x, errNoRoute)
	default:
		h.match(r.URL.Path).handler.ServeHTTP(w, r)
	}
}

// serve is the spine of a proxied request whose path is clean and matched to x.route:
// method, CSRF, session, body, proactive refresh, the route's token, forward.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, x *exchange) error {
	if !x.route.allows(r.Method) {
		return fmt.Errorf("%w: %s", errMethod, r.Method)
	}
	upgrade, websocket := upgradeKind(r)
	if websocket {
		// A browser cannot add a header to a WebSocket handshake: a present and allowed
		// Origin stands in for the CSRF header.
		if err := h.csrf.CheckOrigin(r, true); err != nil {
			return err
		}
	} else if err := h.csrf.Check(r); err != nil {
		return err
	}

	// The session first: a request without one never gets a body buffer. One clock
	// reading serves the session's checks until a body read makes it stale.
	ctx := r.Context()
	now := h.now()
	if err := h.load(ctx, x, now); err != nil {
		return err
	}
	x.ctx = exchangeCtx{Context: ctx, x: x}
	out := r.WithContext(&x.ctx)
	if upgrade && !websocket {
		out.Header = withoutUpgrade(r.Header)
	}
	if !websocket {
		release, err := h.readBody(x, out)
		defer release()
		if err != nil {
			return err
		}
		// A slow upload must not act on tokens loaded before it: by now another request
		// may have rotated them (the Redis store has the latest; in cookie mode the
		// refresh below finds them in the rotation grace entry). Only a body
		// (ContentLength > 0: readBody reads nothing otherwise) takes time here.
		if x.in.ContentLength > 0 {
			end := h.now()
			if end.Sub(now) > time.Second {
				if err := h.load(ctx, x, end); err != nil {
					return err
				}
			}
			now = end
		}
	}
	if err := h.refreshIfExpiring(ctx, w, x, now); err != nil {
		return err
	}
	if err := h.routeToken(ctx, x, w); err != nil {
		return err
	}
	x.start = time.Now()
	h.rp.ServeHTTP(w, out)
	return nil
}

// load loads x's session from the store; a session without an access token or past its
// lifetime (at now) is no session.
func (h *Handler) load(ctx context.Context, x *exchange, now time.Time) error {
	if h.tracer != nil {
		var span trace.Span
		ctx, span = h.tracer.Start(ctx, "session.load")
		defer span.End()
	}
	s, err := h.store.Load(ctx, x.in)
	switch {
	case errors.Is(err, session.ErrStoreUnavailable):
		return fmt.Errorf("proxy: load session: %w", err)
	case err != nil:
		// Anything else a store says about what the client sent is "no session".
		return fmt.Errorf("proxy: load session: %w: %w", session.ErrNoSession, err)
	case s == nil || s.AccessToken == "":
		return fmt.Errorf("proxy: load session: %w: no access token", session.ErrNoSession)
	case s.Expired(now):
		return fmt.Errorf("proxy: load session: %w: past its lifetime", session.ErrNoSession)
	case s.DPoPBound() && h.dpop == nil:
		return fmt.Errorf("proxy: load session: %w: a DPoP-bound token, and no DPoP key", session.ErrNoSession)
	}
	x.sess = s
	return nil
}

// refreshIfExpiring is the proactive refresh: before forwarding an access token that
// expires within the effective skew of now.
func (h *Handler) refreshIfExpiring(ctx context.Context, w http.ResponseWriter, x *exchange, now time.Time) error {
	s := x.sess
	if !s.NeedsRefresh(now, h.skew) {
		return nil
	}
	switch {
	case s.RefreshToken != "":
		cookies, err := h.refresh(ctx, x, "proactive")
		// On w's header now, so that they survive an error answer too (the deletions of
		// a refused session); ReverseProxy adds the upstream's headers to them.
		web.SetCookies(w, cookies)
		return err
	case !now.Before(s.AccessExpiry):
		return fmt.Errorf("proxy: access token expired and no refresh token: %w", session.ErrNoSession)
	}
	// Expiring soon but not yet expired and no refresh token: forward it while it lasts.
	return nil
}

// readBody makes out's body replayable when it can: no body, or a Content-Length up to
// maxReplayBody that arrives whole while the replay memory lasts (readReplayBody). A
// body read only in part goes on unbuffered behind what was read. release drops the
// exchange's hold on the buffer once the request is done.
func (h *Handler) readBody(x *exchange, out *http.Request) (release func(), err error) {
	release = func() {}
	n := x.in.ContentLength
	switch {
	case n == 0:
		x.replayable = true
		return release, nil
	case n < 0, n > maxReplayBody:
		return release, nil // chunked, unknown length or large: streamed, not replayable
	}
	rb, complete, err := readReplayBody(x.in.Body, int(n), h.replayMem)
	if rb == nil {
		return release, nil // no replay memory left: streamed
	}
	release = rb.release // the exchange's reference
	if err != nil {
		return release, fmt.Errorf("%w: %w", errBadBody, err)
	}
	body := rb.reader()
	// ReverseProxy never closes the body it is given (it sends it wrapped in a reader
	// whose Close does nothing): close it once ReverseProxy is done, which also stops a
	// transport still reading it (see replayBody).
	release = func() { body.Close(); rb.release() }
	if !complete {
		out.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(body, x.in.Body), body}
		return release, nil
	}
	x.body, x.replayable = rb, true
	out.Body = body
	out.GetBody = func() (io.ReadCloser, error) { return rb.reader(), nil }
	return release, nil
}

// refresh renews x's session (session.Renew: refresh, then store) and returns the
// cookies to set: the new session's, or the deletions of a session the provider ended.
// Its errors wrap one of session's sentinels.
func (h *Handler) refresh(ctx context.Context, x *exchange, trigger string) ([]*http.Cookie, error) {
	start := time.Now()
	var span trace.Span
	if h.tracer != nil {
		ctx, span = h.tracer.Start(ctx, "session.refresh", trace.WithAttributes(attribute.String("refresh.trigger", trigger)))
		defer span.End()
	}
	ns, cookies, err := session.Renew(ctx, h.store, x.in, x.sess, h.tokens.Refresh)
	if span != nil {
		span.SetAttributes(attribute.String("refresh.outcome", session.RefreshOutcome(err)))
	}
	if h.onRefresh != nil {
		h.onRefresh(trigger, session.RefreshOutcome(err), time.Since(start))
	}
	if err != nil {
		return cookies, fmt.Errorf("proxy: %s refresh: %w", trigger, err)
	}
	x.sess = ns
	x.refreshed = true
	return cookies, nil
}

// rewrite builds the upstream request: exact path, our forwarding headers, no
// tokenhandler cookie, and our token (Bearer, or DPoP with its proof) in place of whatever
// the client sent.
// ReverseProxy has already removed hop-by-hop headers (including any that the client's
// Connection header named), so nothing set here can be stripped afterwards.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeFrom(pr.In.Context())
	out := pr.Out
	out.URL.Scheme = x.route.upstream.Scheme
	out.URL.Host = x.route.upstream.Host
	out.URL.Path, out.URL.RawPath = x.route.outPath(pr.In.URL)
	out.Host = ""
	setForwarded(pr, h.trusted, h.public)
	dropSmuggledHeaders(out.Header)
	stripOwnCookies(out.Header, h.own)
	x.authErr = h.authorize(out, x)
}

// authorize replaces out's Authorization (and any client-sent DPoP header) with x's
// token, the route's derived one (x.authz) or else the session's: "Bearer <token>", or
// for a DPoP-bound token "DPoP <token>" and a fresh proof for out's method and URL
// exactly as the upstream sees it (no query), with the upstream origin's latest nonce.
// A bound token is never sent as Bearer.
func (h *Handler) authorize(out *http.Request, x *exchange) error {
	delete(out.Header, "Authorization")
	delete(out.Header, dpopKey)
	if x.authz != "" {
		token, bound := strings.CutPrefix(x.authz, boundScheme)
		if !bound {
			out.Header["Authorization"] = []string{x.authz}
			return nil
		}
		// No key: the derivation could not have asked for a bound token; kept as a guard.
		return h.prove(out, x.authz, token, session.ErrTokenUnavailable)
	}
	s := x.sess
	if !s.DPoPBound() {
		out.Header["Authorization"] = []string{h.bearers.header(s.AccessToken)}
		return nil
	}
	// No key: load refuses such a session; kept as a guard.
	return h.prove(out, h.bound.header(s.AccessToken), s.AccessToken, session.ErrNoSession)
}

// prove sets out's Authorization to header ("DPoP " + token) and its DPoP header to a
// fresh proof for token; without a DPoP key it fails with noKey.
func (h *Handler) prove(out *http.Request, header, token string, noKey error) error {
	if h.dpop == nil {
		return fmt.Errorf("proxy: %w: a DPoP-bound token, and no DPoP key", noKey)
	}
	proof, err := h.dpop.Proof(out.Method, dpop.HTU(out.URL), token, h.nonces.Get(dpop.Origin(out.URL)))
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	out.Header["Authorization"] = []string{header}
	out.Header[dpopKey] = []string{proof}
	return nil
}

// boundScheme starts the Authorization value of a DPoP-bound token.
const boundScheme = "DPoP "

// dpopKey is the DPoP header's name as net/http canonicalises it.
var dpopKey = http.CanonicalHeaderKey(dpop.Header)

// modifyResponse keeps upstreams from setting tokenhandler's cookies and adds the cookies
// of a reactive refresh.
func (h *Handler) modifyResponse(res *http.Response) error {
	x := exchangeFrom(res.Request.Context())
	cleanResponseHeaders(res.Header, h.own)
	for _, c := range x.pending {
		if v := c.String(); v != "" {
			res.Header.Add("Set-Cookie", v)
		}
	}
	x.pending = nil
	if x.refreshed {
		// New session cookies must never be stored by a shared cache.
		res.Header.Set("Cache-Control", "no-store")
	}
	if h.onUpstream != nil {
		h.onUpstream(x.route.prefix, res.StatusCode, time.Since(x.start))
	}
	return nil
}
