// Package proxy owns tokenhandler's API proxy: the configured routes (longest prefix, method
// allowlist, per-route timeout), the refusal of unclean paths, the CSRF and Origin checks of
// proxied requests, turning the session cookies into "Authorization: Bearer" on the
// upstream request, header hygiene in both directions (the client's Authorization replaced,
// tokenhandler's cookies kept from upstreams and upstreams kept from setting them,
// X-Forwarded-* only from trusted proxies, no protocol switch but WebSocket), streaming and
// WebSocket pass-through, and transparent refresh: proactive before forwarding an expiring
// token, reactive once after an upstream's 401 when the request can be replayed; and, for
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
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

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

// Route is one proxied path prefix.
type Route struct {
	// Path is the prefix the route takes; it starts and ends in "/" and is clean.
	Path string
	// Upstream is the API's base URL (http or https, no query, fragment or user info). A
	// path in it is put in front of the forwarded path.
	Upstream *url.URL
	// StripPrefix forwards the path less Path (keeping a leading "/").
	StripPrefix bool
	// Methods restricts the route to these methods; empty means every method but TRACE
	// and CONNECT, which are never forwarded.
	Methods []string
	// Timeout bounds the time until the upstream's response headers arrive (504
	// upstream_timeout); it never cuts a streaming body. 0 means 30s.
	Timeout time.Duration
	// Token is the route's token policy; nil: the session's access token as issued.
	Token *session.TokenPolicy
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
	// replayMem bounds all replay buffers together.
	replayMem *memBudget
	tracer    trace.Tracer // nil: no spans

	onUpstream func(string, int, time.Duration)
	onRefresh  func(string, string, time.Duration)
	onError    func(int, string)
	deriver    Deriver
	onDerive   func(string, string, time.Duration)
}

type route struct {
	prefix   string
	upstream *url.URL
	base     string // upstream path without its trailing "/"; "" for none
	baseRaw  string // its escaped form
	strip    bool
	methods  []string // nil: any but TRACE and CONNECT
	allow    string   // the Allow header of a 405
	timeout  time.Duration
	handler  http.Handler         // routeHandler{h, this route}
	policy   *session.TokenPolicy // nil: the session's access token
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

	base := opts.Transport
	if base == nil {
		base = DefaultTransport()
	}
	h.rp = &httputil.ReverseProxy{
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
	return h, nil
}

func newRoute(r Route) (*route, error) {
	if !strings.HasPrefix(r.Path, "/") || !strings.HasSuffix(r.Path, "/") || !web.CleanDecoded(r.Path) {
		return nil, fmt.Errorf("path %q must be a clean path that starts and ends in \"/\"", r.Path)
	}
	u := r.Upstream
	switch {
	case u == nil:
		return nil, errors.New("upstream is required")
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Opaque != "":
		return nil, fmt.Errorf("upstream %q must be an absolute http or https URL", u.Redacted())
	case u.User != nil, u.RawQuery != "", u.ForceQuery, u.Fragment != "":
		return nil, fmt.Errorf("upstream %q must have no user info, query or fragment", u.Redacted())
	}
	if r.Timeout < 0 {
		return nil, fmt.Errorf("timeout %s is negative", r.Timeout)
	}
	rt := &route{
		prefix:   r.Path,
		upstream: &url.URL{Scheme: u.Scheme, Host: u.Host},
		base:     strings.TrimSuffix(u.Path, "/"),
		baseRaw:  strings.TrimSuffix(u.EscapedPath(), "/"),
		strip:    r.StripPrefix,
		timeout:  r.Timeout,
		allow:    defaultAllow,
	}
	if rt.timeout == 0 {
		rt.timeout = defaultTimeout
	}
	if p := r.Token; p != nil {
		switch {
		case p.Via == "refresh" || p.Via == "exchange" || p.Format == "jwt":
			rt.policy = p
		case p.Via != "" && p.Via != "session":
			return nil, fmt.Errorf("token via %q is not session, refresh or exchange", p.Via)
		}
	}
	for _, m := range r.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		switch {
		case m == "" || strings.IndexFunc(m, func(c rune) bool { return c > 0x7f || !isTokenChar(byte(c)) }) >= 0:
			return nil, fmt.Errorf("method %q is not a method name", m)
		case m == http.MethodTrace || m == http.MethodConnect:
			return nil, fmt.Errorf("method %s is never proxied", m)
		}
		if !slices.Contains(rt.methods, m) {
			rt.methods = append(rt.methods, m)
		}
	}
	if len(rt.methods) > 0 {
		rt.allow = strings.Join(rt.methods, ", ")
	}
	return rt, nil
}

func (rt *route) allows(method string) bool {
	if method == http.MethodTrace || method == http.MethodConnect {
		return false
	}
	return rt.methods == nil || slices.Contains(rt.methods, method)
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

// Match reports whether a configured route takes path (longest prefix).
func (h *Handler) Match(path string) bool { return h.match(path) != nil }

// RouteOf returns the configured prefix of the route that takes path (longest prefix),
// the bounded label metrics and logs use; ok is false when no route takes it.
func (h *Handler) RouteOf(path string) (prefix string, ok bool) {
	if rt := h.match(path); rt != nil {
		return rt.prefix, true
	}
	return "", false
}

func (h *Handler) match(path string) *route {
	for _, rt := range h.routes {
		if strings.HasPrefix(path, rt.prefix) {
			return rt
		}
	}
	return nil
}

// exchange is the state of one proxied request, carried in its context from ServeHTTP
// to Rewrite, the transport, ModifyResponse and the ErrorHandler.
type exchange struct {
	in         *http.Request // the request as it came, with tokenhandler's cookies
	route      *route
	sess       *session.Session
	replayable bool
	body       *replayBody // the buffered body of a replayable request; nil: none
	refreshed  bool        // this request refreshed (its response carries new cookies)
	authz      string      // the route's derived Authorization value; "": the session's token
	rederived  bool        // the derived token was replaced after an upstream 401
	pending    []*http.Cookie
	start      time.Time
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// Errors of the proxy's own checks; fail maps them to statuses.
var (
	errBadPath         = errors.New("proxy: path is not clean")
	errBadBody         = errors.New("proxy: request body shorter than its Content-Length")
	errNoRoute         = errors.New("proxy: no route")
	errMethod          = errors.New("proxy: method not allowed")
	errUpstreamTimeout = errors.New("proxy: upstream response headers timed out")
)

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

// RouteHandler is one configured route's handler.
type RouteHandler struct {
	// Prefix is the route's path prefix, also the bounded label of metrics and logs.
	Prefix string
	// Handler serves a request whose clean path (web.CleanPath) the caller has matched
	// to Prefix, the longest matching prefix: it neither cleans nor matches again.
	Handler http.Handler
}

// Routes returns a handler per configured route, longest prefix first, for a router
// that matches each request once.
func (h *Handler) Routes() []RouteHandler {
	out := make([]RouteHandler, len(h.routes))
	for i, rt := range h.routes {
		out[i] = RouteHandler{Prefix: rt.prefix, Handler: rt.handler}
	}
	return out
}

// routeHandler serves one route's matched requests.
type routeHandler struct {
	h  *Handler
	rt *route
}

func (rh routeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{in: r, route: rh.rt}
	if err := rh.h.serve(w, r, x); err != nil {
		rh.h.fail(w, x, err)
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

	// The session first: a request without one never gets a body buffer.
	ctx := r.Context()
	if err := h.load(ctx, x); err != nil {
		return err
	}
	out := r.WithContext(context.WithValue(ctx, exchangeKey{}, x))
	if upgrade && !websocket {
		out.Header = withoutUpgrade(r.Header)
	}
	if !websocket {
		bodyStart := h.now()
		release, err := h.readBody(x, out)
		defer release()
		if err != nil {
			return err
		}
		// A slow upload must not act on tokens loaded before it: by now another request
		// may have rotated them (the Redis store has the latest; in cookie mode the
		// refresh below finds them in the rotation grace entry).
		if h.now().Sub(bodyStart) > time.Second {
			if err := h.load(ctx, x); err != nil {
				return err
			}
		}
	}
	if err := h.refreshIfExpiring(ctx, w, x); err != nil {
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
// lifetime is no session.
func (h *Handler) load(ctx context.Context, x *exchange) error {
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
	case s.Expired(h.now()):
		return fmt.Errorf("proxy: load session: %w: past its lifetime", session.ErrNoSession)
	}
	x.sess = s
	return nil
}

// refreshIfExpiring is the proactive refresh: before forwarding an access token that
// expires within the effective skew.
func (h *Handler) refreshIfExpiring(ctx context.Context, w http.ResponseWriter, x *exchange) error {
	s, now := x.sess, h.now()
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
// tokenhandler cookie, and our Bearer token in place of whatever the client sent.
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
	delete(out.Header, "Authorization")
	if x.authz != "" {
		out.Header["Authorization"] = []string{x.authz}
	} else {
		out.Header["Authorization"] = []string{h.bearers.header(x.sess.AccessToken)}
	}
}

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

// upstreamError is ReverseProxy's ErrorHandler: the upstream failed, timed out, or the
// reactive refresh between two tries failed.
func (h *Handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeFrom(r.Context())
	if x == nil { // cannot happen: every request reaches ReverseProxy through serve
		h.log.ErrorContext(r.Context(), "proxy: request without exchange", "err", err)
		web.Error(w, http.StatusBadGateway, web.CodeUpstreamUnavailable)
		return
	}
	if h.onUpstream != nil {
		status, code := classify(err)
		if x.in.Context().Err() != nil {
			status = statusClientGone // not the upstream's fault: keep it out of the 502s
		}
		if code == web.CodeUpstreamUnavailable || code == web.CodeUpstreamTimeout {
			h.onUpstream(x.route.prefix, status, time.Since(x.start))
		}
	}
	h.fail(w, x, err)
}

// classify maps an error to the status and code the client gets; the one place that does.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, errBadPath), errors.Is(err, errBadBody):
		return http.StatusBadRequest, web.CodeBadRequest
	case errors.Is(err, errNoRoute):
		return http.StatusNotFound, web.CodeNotFound
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed, web.CodeMethodNotAllowed
	case errors.Is(err, web.ErrCSRF):
		return http.StatusForbidden, web.CodeCSRFFailed
	case errors.Is(err, web.ErrOrigin):
		return http.StatusForbidden, web.CodeOriginNotAllowed
	case errors.Is(err, session.ErrRefreshDenied):
		return http.StatusUnauthorized, web.CodeSessionExpired
	case errors.Is(err, session.ErrTokenUnavailable):
		return http.StatusBadGateway, web.CodeTokenUnavailable
	case errors.Is(err, session.ErrIdPUnavailable):
		return http.StatusBadGateway, web.CodeIdPUnavailable
	case errors.Is(err, session.ErrStoreUnavailable):
		return http.StatusServiceUnavailable, web.CodeSessionStoreUnavailable
	case errors.Is(err, session.ErrNoSession):
		return http.StatusUnauthorized, web.CodeUnauthenticated
	case errors.Is(err, errUpstreamTimeout):
		return http.StatusGatewayTimeout, web.CodeUpstreamTimeout
	default:
		return http.StatusBadGateway, web.CodeUpstreamUnavailable
	}
}

// fail answers an error: the status and code from classify, the Allow header of a 405,
// the deletions of a session the provider ended, the cookies of a refresh that did
// succeed, and one log line. The error's text never reaches the client.
func (h *Handler) fail(w http.ResponseWriter, x *exchange, err error) {
	r := x.in
	ctx := r.Context()
	status, code := classify(err)
	switch {
	case status == http.StatusMethodNotAllowed:
		w.Header().Set("Allow", x.route.allow)
	}
	// A reactive refresh that succeeded before the retry failed: the rotated refresh
	// token must still reach the browser; one the provider refused: the deletions.
	web.SetCookies(w, x.pending)
	x.pending = nil

	level := slog.LevelDebug
	switch {
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
	case code == web.CodeTokenUnavailable:
		level = slog.LevelError // our configuration is wrong
	case status >= 500:
		level = slog.LevelWarn
	case code == web.CodeSessionExpired:
		level = slog.LevelInfo
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "code", code, "err", err}
	if x.route != nil {
		attrs = append(attrs, "route", x.route.prefix)
	}
	if x.sess != nil {
		attrs = append(attrs, "session", x.sess)
	}
	h.log.Log(ctx, level, "proxy: request refused", attrs...)
	if h.onError != nil {
		h.onError(status, code)
	}
	web.Error(w, status, code)
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
