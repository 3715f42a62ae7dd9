// Package oauthagent is the OAuth agent of tokenhandler: a confidential OpenID Connect
// client that runs the authorization-code flow with PKCE (S256), state and nonce, verifies
// the ID token (go-oidc plus the checks go-oidc leaves to its caller), and serves the
// /auth endpoints the SPA uses: login, callback, session, userinfo, claims, refresh and
// logout. Its Refresher is what the proxy calls for fresh tokens.
//
// It owns the conversation with the provider; where sessions live and how refreshes are
// coordinated belongs to package session.
package oauthagent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/josekey"
	"github.com/tokenhandler/tokenhandler/mint"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// Options configure an Agent. Zero values are documented per field.
type Options struct {
	Issuer             string // exact issuer; discovery must report the same string
	BackchannelBaseURL string // optional base for discovery and the back-channel endpoints
	ClientID           string
	ClientSecret       string
	TokenAuthMethod    string // "client_secret_basic" (default), "client_secret_post" or "private_key_jwt"
	// ClientKey signs the private_key_jwt client assertions (RFC 7523); required with
	// that method, which never sends ClientSecret.
	ClientKey *josekey.Key
	// PAR is "auto" ("" too: push the authorization request, RFC 9126, when discovery
	// advertises a PAR endpoint), "required" (discovery without one is refused with
	// ErrProviderUnfit) or "off".
	PAR string
	// DPoP, when set, puts a DPoP proof (RFC 9449) on every token, PAR and revocation
	// request (but the token call of a derivation whose policy asks for an unbound
	// token), and the session's tokens become DPoP-bound. nil: bearer tokens.
	DPoP *dpop.Proofer
	// RouteDPoP makes the proofs of the derivations whose policy asks for a DPoP-bound
	// token (token.dpop: true) when DPoP is nil (oidc.dpop off). nil: DPoP. A derivation
	// whose policy asks for an unbound token carries no proof, whatever DPoP is.
	RouteDPoP *dpop.Proofer
	// Profile "fapi2": PAR is required, discovery must advertise RFC 9207 iss, and the
	// default ID-token algorithms are PS256, ES256 and EdDSA. "": none.
	Profile string
	// Resources are RFC 8707 resource indicators asked for at sign-in: those of the
	// routes whose token is derived via refresh with a resource, so that the grant
	// covers them. Empty: none.
	Resources []string
	// Signer signs the JWTs of routes with token.format jwt, jwt_from mint. nil: such
	// routes get 502 token_unavailable.
	Signer *mint.Signer
	// IntrospectionEndpoint replaces discovery's introspection_endpoint for every
	// introspection, used as is (BackchannelBaseURL does not rewrite it): for providers
	// that keep introspection out of discovery, such as Ory Hydra (its admin API). The
	// client authenticates there as at the token endpoint. "": discovery's.
	IntrospectionEndpoint string
	// CheckProvider, when set, is asked after every successful discovery whether the
	// provider can serve the configuration (the routes' token policies). An error
	// refuses the provider as the built-in checks do, with ErrProviderUnfit: Run gives
	// up and the agent never becomes ready. nil: no such check.
	CheckProvider func(ProviderFeatures) error
	Scopes        []string // nil: openid profile email offline_access
	SigningAlgs   []string // nil: discovery's list ∩ {RS256, ES256, PS256}
	RedirectURL   string   // public_url + auth prefix + "/callback"
	// PostLogoutRedirectURL is where the provider sends the browser after logout.
	PostLogoutRedirectURL string
	ErrorPath             string // where a failed callback lands with auth_error; "" means "/"
	AuthPrefix            string // "" means "/auth"
	// APIPaths are the proxied route prefixes: a return_to under one is refused, since
	// return_to must be a page of the SPA.
	APIPaths    []string
	Lifetime    time.Duration // absolute session lifetime; 0 means 12h
	RefreshSkew time.Duration // session.refresh_skew; 0 means 30s
	CSRF        *web.CSRF
	// HTTPClient makes every call to the provider; it must carry a timeout. nil means a
	// client with a 10 s timeout. Redirects are never followed (New sets CheckRedirect
	// on a copy).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
	// Observer receives login and refresh outcomes for metrics; nil means none.
	Observer Observer
	// Backchannel ends sessions for OIDC Back-Channel Logout at POST {AuthPrefix}/
	// backchannel-logout. nil: the endpoint is not mounted (it needs Redis).
	Backchannel BackchannelSessions
}

// Observer is told what the agent did, for metrics.
type Observer interface {
	Login(outcome string)
	Refresh(outcome string, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Login(string)                  {}
func (nopObserver) Refresh(string, time.Duration) {}

// Agent serves the /auth endpoints. Create it with New, start discovery with Run.
type Agent struct {
	opts      Options
	store     session.Store
	logins    *session.LoginJar
	refresher *Refresher
	provider  atomic.Pointer[provider]
	log       *slog.Logger
	now       func() time.Time
	obs       Observer
	forced    *web.Limiter // forced explicit refreshes: one per session per minute
	nonces    dpop.Nonces  // the provider's latest DPoP-Nonce per origin
}

var errNotReady = errors.New("oauthagent: provider discovery has not succeeded yet")

// New returns an Agent that keeps sessions in store, login attempts in logins, and
// coordinates refreshes through coord.
func New(store session.Store, logins *session.LoginJar, coord *session.Coordinator, opts Options) (*Agent, error) {
	if opts.Issuer == "" || opts.ClientID == "" || opts.RedirectURL == "" {
		return nil, errors.New("oauthagent: Issuer, ClientID and RedirectURL are required")
	}
	if opts.TokenAuthMethod == "private_key_jwt" && opts.ClientKey == nil {
		return nil, errors.New("oauthagent: private_key_jwt needs a ClientKey")
	}
	if opts.Scopes == nil {
		opts.Scopes = []string{"openid", "profile", "email", "offline_access"}
	}
	if opts.ErrorPath == "" {
		opts.ErrorPath = "/"
	}
	if opts.AuthPrefix == "" {
		opts.AuthPrefix = "/auth"
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = 12 * time.Hour
	}
	if opts.RefreshSkew == 0 {
		opts.RefreshSkew = 30 * time.Second
	}
	if opts.CSRF == nil {
		opts.CSRF = &web.CSRF{}
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	// A provider's redirect is never followed: a 307 would re-post a token request, with
	// a client_secret_post body or a refresh token, to wherever it points.
	client := *opts.HTTPClient
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	opts.HTTPClient = &client
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	a := &Agent{opts: opts, store: store, logins: logins, log: opts.Logger, now: opts.Now, obs: opts.Observer,
		forced: web.NewLimiter(time.Minute, 100_000)}
	a.refresher = &Refresher{agent: a, coord: coord, signer: opts.Signer}
	client.Transport = &providerTransport{a: a, base: base}
	return a, nil
}

// Refresher returns the agent's Refresher, which the proxy uses for fresh tokens.
func (a *Agent) Refresher() *Refresher { return a.refresher }

// Ready reports whether discovery has succeeded.
func (a *Agent) Ready() bool { return a.provider.Load() != nil }

// Discover makes one discovery attempt and, on success, makes the agent ready.
func (a *Agent) Discover(ctx context.Context) error {
	p, err := discover(ctx, &a.opts)
	if err != nil {
		return err
	}
	a.provider.Store(p)
	a.log.InfoContext(ctx, "provider discovered", "issuer", p.meta.Issuer, "id_token_algs", p.algs,
		"revocation", p.meta.RevocationEndpoint != "", "end_session", p.meta.EndSessionEndpoint != "",
		"iss_parameter", p.meta.AuthorizationResponseIss, "backchannel_logout", p.meta.BackchannelLogoutSupport,
		"introspection", p.meta.IntrospectionEndpoint != "")
	return nil
}

// Run retries discovery with capped exponential backoff until it succeeds or ctx ends.
// The cap (400 ms, plus up to a quarter of jitter) keeps the agent ready within a second
// of the provider answering; a failed attempt against a provider that is down costs one
// refused connection.
func (a *Agent) Run(ctx context.Context) error {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := a.Discover(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrProviderUnfit) {
			a.log.ErrorContext(ctx, "provider discovery: the provider cannot serve this configuration", "err", err)
			return err
		}
		if attempt == 1 || attempt%100 == 0 {
			a.log.WarnContext(ctx, "provider discovery failed; retrying", "attempt", attempt, "err", err)
		}
		jitter := time.Duration(rand.Int64N(int64(delay) / 4))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay + jitter):
		}
		delay = min(2*delay, 400*time.Millisecond)
	}
}

func (a *Agent) ready() (*provider, error) {
	p := a.provider.Load()
	if p == nil {
		return nil, errNotReady
	}
	return p, nil
}

// ServeHTTP serves every path under the auth prefix.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	web.SecureHeaders(w.Header())
	name, ok := strings.CutPrefix(r.URL.Path, a.opts.AuthPrefix+"/")
	if !ok {
		web.Error(w, http.StatusNotFound, web.CodeNotFound)
		return
	}
	type route struct {
		method string
		h      func(http.ResponseWriter, *http.Request) error
	}
	var rt route
	switch name {
	case "login":
		rt = route{http.MethodGet, a.login}
	case "callback":
		rt = route{http.MethodGet, a.callback}
	case "session":
		rt = route{http.MethodGet, a.session}
	case "userinfo":
		rt = route{http.MethodGet, a.userinfo}
	case "claims":
		rt = route{http.MethodGet, a.claims}
	case "refresh":
		rt = route{http.MethodPost, a.refresh}
	case "logout":
		rt = route{http.MethodPost, a.logout}
	case "backchannel-logout":
		if a.opts.Backchannel == nil {
			web.Error(w, http.StatusNotFound, web.CodeNotFound)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			web.Error(w, http.StatusMethodNotAllowed, web.CodeMethodNotAllowed)
			return
		}
		// Server to server, authenticated by the signed logout token: no CSRF header.
		if err := a.backchannelLogout(w, r); err != nil {
			a.fail(w, r, err)
		}
		return
	default:
		web.Error(w, http.StatusNotFound, web.CodeNotFound)
		return
	}
	if r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", rt.method)
		web.Error(w, http.StatusMethodNotAllowed, web.CodeMethodNotAllowed)
		return
	}
	if rt.method == http.MethodPost {
		if err := a.opts.CSRF.Check(r); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	if err := rt.h(w, r); err != nil {
		a.fail(w, r, err)
	}
}

// fail maps an error to tokenhandler's JSON envelope: the one place in this package where
// errors become statuses. The client gets a stable code, the log gets the error.
func (a *Agent) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := http.StatusInternalServerError, "internal_error"
	level := slog.LevelError
	switch {
	case errors.Is(err, web.ErrCSRF):
		status, code, level = http.StatusForbidden, web.CodeCSRFFailed, slog.LevelInfo
	case errors.Is(err, web.ErrOrigin):
		status, code, level = http.StatusForbidden, web.CodeOriginNotAllowed, slog.LevelInfo
	case errors.Is(err, errBadRequest):
		status, code, level = http.StatusBadRequest, web.CodeBadRequest, slog.LevelInfo
	case errors.Is(err, session.ErrNoSession):
		status, code, level = http.StatusUnauthorized, web.CodeUnauthenticated, slog.LevelDebug
	case errors.Is(err, session.ErrRefreshDenied):
		status, code, level = http.StatusUnauthorized, web.CodeSessionExpired, slog.LevelInfo
	case errors.Is(err, session.ErrStoreUnavailable):
		status, code = http.StatusServiceUnavailable, web.CodeSessionStoreUnavailable
	case errors.Is(err, errNotReady):
		status, code, level = http.StatusServiceUnavailable, web.CodeIdPUnavailable, slog.LevelWarn
	case errors.Is(err, session.ErrIdPUnavailable), errors.Is(err, errInvalidUserinfo):
		status, code, level = http.StatusBadGateway, web.CodeIdPUnavailable, slog.LevelWarn
	}
	a.log.Log(r.Context(), level, "auth request failed", "path", r.URL.Path, "status", status, "err", err)
	web.Error(w, status, code)
}

var errBadRequest = errors.New("bad request")
