package idptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/internal/need"
	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// Provider kinds.
const (
	KindHydra = "hydra" // Ory Hydra v2.3.0: strict rotation, a replay revokes the family
	KindDex   = "dex"   // Dex: invalid_request for dead refresh tokens, one refresh token per user and client
	// KindOIDCProvider is panva oidc-provider 9 (Node.js): resource indicators, token
	// exchange (our grant), JWT introspection, DPoP, PAR, private_key_jwt.
	KindOIDCProvider = "oidc-provider"
)

// Kinds returns the provider kinds that product tests run over in a table: Hydra and
// Dex. AllKinds adds oidc-provider.
func Kinds() []string { return []string{KindHydra, KindDex} }

// AllKinds returns every provider kind: Kinds and KindOIDCProvider.
func AllKinds() []string { return []string{KindHydra, KindDex, KindOIDCProvider} }

// The demo user, the same at both providers.
const (
	demoUserID   = "alice"
	demoLogin    = "alice@example.com"
	demoPassword = testbench.DemoPassword
	demoName     = "Alice Example"
	demoEmail    = "alice@example.com"

	clientID = "tokenhandler"
	scopes   = "openid profile email offline_access"

	// How long a provider may take to become ready. Both need well under a second
	// here; a loaded CI machine gets plenty of room.
	readyTimeout = 60 * time.Second
	stopGrace    = 5 * time.Second
)

// Options configure the provider and its one client. The zero value of each optional
// field is documented next to it.
type Options struct {
	// RedirectURL is tokenhandler's callback URL, registered as the client's only
	// redirect URI. Required.
	RedirectURL string
	// PostLogoutRedirectURL is registered as the client's post-logout redirect URI.
	// Empty: none registered.
	PostLogoutRedirectURL string
	// BackchannelLogoutURL is the client's back-channel logout URI (Hydra:
	// backchannel_logout_uri with session required; Dex: backchannelLogoutURI). Empty:
	// the provider sends no logout tokens.
	BackchannelLogoutURL string
	// AccessTokenTTL is the access-token lifetime; tests use a few seconds. Zero: the
	// provider's default (Hydra 1h, Dex 24h). Dex uses the ID-token lifetime
	// (expiry.idTokens) for access tokens, so there it sets both.
	AccessTokenTTL time.Duration
	// OpaqueAccessTokens makes Hydra issue opaque access tokens (ory_at_...) instead of
	// JWTs. Dex issues JWTs whatever this says.
	OpaqueAccessTokens bool
	// ReuseInterval is Dex's expiry.refreshTokens.reuseInterval: a refresh within it
	// returns the same refresh token. Nil: "0s", strict rotation. Hydra always rotates
	// strictly (grace period 0) and ignores it.
	ReuseInterval *time.Duration
	// TokenEndpointAuthMethod is registered for the client at Hydra and oidc-provider:
	// "client_secret_basic" or "client_secret_post", or at oidc-provider also
	// "private_key_jwt" (with ClientJWKS). Empty: client_secret_basic. Dex accepts both
	// secret methods whatever this says.
	TokenEndpointAuthMethod string

	// The options below are for KindOIDCProvider only: Start fails the test when one is
	// set for another kind.

	// ClientJWKS is the client's public key set, registered as its jwks, for
	// private_key_jwt (see TestKey.PublicJWKS). Required with private_key_jwt.
	ClientJWKS *jose.JSONWebKeySet
	// Resources are the RFC 8707 resource servers the provider knows. Empty: none, and
	// every access token is opaque with the userinfo audience.
	Resources []Resource
	// DPoP is how the provider treats DPoP (RFC 9449). Zero: DPoPOptional.
	DPoP DPoPMode
	// DPoPNonce makes the provider require a server nonce in every DPoP proof (at the
	// token, PAR, userinfo endpoints): a proof without one gets 400 (401 at userinfo)
	// use_dpop_nonce and a DPoP-Nonce header.
	DPoPNonce bool
	// PARRequired registers the client with require_pushed_authorization_requests: an
	// authorization request without a request_uri from the PAR endpoint is refused.
	// PAR itself is always offered.
	PARRequired bool
}

// Resource is one RFC 8707 resource server of oidc-provider. A token for it is asked
// with resource=Indicator at the authorization request (with the scopes it needs) and
// then at a code or refresh-token grant, or as the target of the token exchange.
type Resource struct {
	// Indicator is the resource parameter's value, an absolute URI such as
	// "https://api.example.test/". Required.
	Indicator string
	// Audience is the access token's aud. Empty: Indicator.
	Audience string
	// Scopes are the scopes this resource accepts; a token for it carries those of them
	// that were granted (asked for in the authorization request) or, by token exchange,
	// those requested (default: all of them). Required.
	Scopes []string
	// Format is the access-token format: FormatJWT or FormatOpaque. Empty: opaque.
	Format string
	// TTL is the lifetime of its access tokens. Zero: Options.AccessTokenTTL.
	TTL time.Duration
	// Exchange allows the resource as the target of the token-exchange grant
	// (GrantTokenExchange), by resource=Indicator or audience=Audience.
	Exchange bool
}

// Access-token formats of a Resource.
const (
	FormatJWT    = "jwt"    // RFC 9068-style JWT signed with the provider's key (RS256)
	FormatOpaque = "opaque" // 43 characters, meaningful only to introspection
)

// DPoPMode is how oidc-provider treats DPoP proofs.
type DPoPMode int

const (
	// DPoPOptional: discovery advertises DPoP; a token request with a valid proof gets
	// tokens bound to its key (token_type DPoP, cnf.jkt), one without gets Bearer tokens.
	DPoPOptional DPoPMode = iota
	// DPoPRequired registers the client with dpop_bound_access_tokens: every token
	// request needs a proof (invalid_grant without one).
	DPoPRequired
	// DPoPOff turns the feature off: no dpop_signing_alg_values_supported in
	// discovery, proofs are ignored, every token is Bearer.
	DPoPOff
)

// Grant types, as counted by GrantCalls.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// Token types of RFC 8693.
const TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"

// Provider is one running OpenID provider behind its front proxy. Its exported fields
// are fixed for its lifetime, across Restart.
type Provider struct {
	Kind string // KindHydra, KindDex or KindOIDCProvider
	// Issuer is exactly the issuer that discovery reports: the front proxy's URL (Hydra,
	// oidc-provider) or that URL + "/dex" (Dex), no trailing slash.
	Issuer       string
	ClientID     string
	ClientSecret string
	// Username and Password are the demo user's credentials at the login form.
	Username string
	Password string
	// Subject, Email and Name are what the ID token carries for the demo user.
	Subject string
	Email   string
	Name    string

	opts      Options
	bin       string
	dir       string
	tokenPath string // path of the token endpoint at the front
	paths     endpointPaths

	front *httptest.Server // the front proxy; its URL is the issuer
	login *httptest.Server // Hydra's login, consent and logout app (testbench.HydraLogin)
	// adminFront is Hydra's counting proxy in front of its admin listener, for
	// AdminIntrospectionURL: its URL stays across Restart.
	adminFront *httptest.Server
	proxy      *httputil.ReverseProxy
	transport  *http.Transport // front proxy -> provider

	down         atomic.Bool
	tokenDelay   atomic.Int64 // time.Duration
	tokenCalls   atomic.Int64
	refreshCalls atomic.Int64
	formPosts    atomic.Int64
	callsMu      sync.Mutex
	calls        map[string]int64 // request path at the front -> requests
	grants       map[string]int64 // grant_type of token-endpoint requests -> requests
	dpopCalls    int64            // token-endpoint requests with a DPoP header
	secretCalls  int64            // requests carrying the client secret
	authzQueries []url.Values     // queries of requests to the authorization endpoint

	introspector string // oidc-provider: the secret of the harness's own introspection client

	mu       sync.Mutex
	backend  *url.URL // the provider's public listener; nil while (re)starting
	adminURL string   // Hydra's admin listener
	proc     *testbench.Process
	starts   int
	logs     []string
}

// Start runs a provider of kind (KindHydra, KindDex or KindOIDCProvider) for the test
// and stops it at t.Cleanup. It returns once discovery answers and, for Hydra, the
// client exists. It ends the test through need.Missing when the provider's binary (or
// oidc-provider's node_modules, or node) is not there.
func Start(t testing.TB, kind string, opts Options) *Provider {
	t.Helper()
	if !slices.Contains(AllKinds(), kind) {
		t.Fatalf("idptest.Start(%q): unknown kind, want one of %v", kind, AllKinds())
	}
	if err := opts.check(kind); err != nil {
		t.Fatalf("idptest.Start(%q): %v", kind, err)
	}
	bin := binary(t, kind)

	p := &Provider{
		Kind:         kind,
		ClientID:     clientID,
		ClientSecret: testbench.RandomHex(16),
		Username:     demoLogin,
		Password:     demoPassword,
		Email:        demoEmail,
		Name:         demoName,
		opts:         opts,
		bin:          bin,
		dir:          t.TempDir(), // before Cleanup below: removed after the logs are dumped
		calls:        map[string]int64{},
		grants:       map[string]int64{},
		transport:    &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(backendKey{}).(*url.URL))
			// The provider sees the issuer's host, as it would behind a real proxy.
			pr.Out.Host = pr.In.Host
		},
		Transport: p.transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			// The provider is not listening (restarting or crashed): a gateway error.
			w.WriteHeader(http.StatusBadGateway)
		},
		ErrorLog: discardLog,
	}
	p.front = httptest.NewServer(http.HandlerFunc(p.serveFront))
	switch kind {
	case KindHydra:
		p.Issuer = p.front.URL
		p.tokenPath = "/oauth2/token"
		p.Subject = demoUserID
		login := &testbench.HydraLogin{
			Admin:    p.admin,
			Username: p.Username, Password: p.Password,
			Subject: p.Subject, Name: p.Name, Email: p.Email,
		}
		p.login = httptest.NewServer(login.Handler())
		p.adminFront = httptest.NewServer(p.adminProxy())
	case KindDex:
		p.Issuer = p.front.URL + "/dex"
		p.tokenPath = "/dex/token"
		p.Subject = dexSubject(demoUserID, "local")
	case KindOIDCProvider:
		p.Issuer = p.front.URL
		p.tokenPath = "/token"
		p.Subject = demoUserID
		// The login form takes the account id.
		p.Username = demoUserID
		p.introspector = testbench.RandomHex(16)
		if opts.TokenEndpointAuthMethod == "private_key_jwt" {
			p.ClientSecret = "" // the client has none
		}
	}
	p.paths = pathsOf[kind]
	t.Cleanup(func() { p.cleanup(t) })
	p.launch(t)
	return p
}

type backendKey struct{}

// serveFront is the front proxy: it counts, delays or refuses, then forwards.
func (p *Provider) serveFront(w http.ResponseWriter, r *http.Request) {
	isToken := r.URL.Path == p.tokenPath
	form := peekForm(r)
	p.callsMu.Lock()
	p.calls[r.URL.Path]++
	if isToken {
		p.grants[form.Get("grant_type")]++
		if r.Header.Get("DPoP") != "" {
			p.dpopCalls++
		}
	}
	if p.paths.authorize != "" && r.URL.Path == p.paths.authorize {
		p.authzQueries = append(p.authzQueries, r.URL.Query())
	}
	if carriesSecret(r, form, p.ClientSecret) {
		p.secretCalls++
	}
	p.callsMu.Unlock()
	if isToken {
		p.tokenCalls.Add(1)
		if form.Get("grant_type") == GrantRefreshToken {
			p.refreshCalls.Add(1)
		}
	}
	if p.down.Load() {
		refuse(w)
		return
	}
	if d := time.Duration(p.tokenDelay.Load()); isToken && d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return // the caller gave up first: the provider never saw the request
		}
	}
	p.mu.Lock()
	backend := p.backend
	p.mu.Unlock()
	if backend == nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	p.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, backend)))
}

// refuse drops the connection without an answer, as a host that is down would (as
// closely as an open port can): the client sees a connection error, not an HTTP status.
func refuse(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	w.WriteHeader(http.StatusBadGateway)
}

// TokenCalls returns how many requests arrived at the token endpoint through the front
// proxy since Start, whatever their grant type, including those refused while down and
// those that failed at the provider.
func (p *Provider) TokenCalls() int64 { return p.tokenCalls.Load() }

// RefreshCalls returns how many of TokenCalls had grant_type=refresh_token.
func (p *Provider) RefreshCalls() int64 { return p.refreshCalls.Load() }

// Calls returns how many requests for path (the request path at the front proxy, e.g.
// the path of discovery's revocation_endpoint) arrived since Start.
func (p *Provider) Calls(path string) int64 {
	p.callsMu.Lock()
	defer p.callsMu.Unlock()
	return p.calls[path]
}

// SetDown makes the front proxy drop every connection without an answer while down is
// true, and forward again once it is false. The provider keeps running and keeps its
// grants.
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

// SetTokenDelay makes the front proxy hold every token-endpoint request for d before
// forwarding it (0: no delay). A caller that gives up during the delay never reaches
// the provider.
func (p *Provider) SetTokenDelay(d time.Duration) { p.tokenDelay.Store(int64(d)) }

// Restart stops the provider process and starts a new one behind the same front URL.
// Storage is in memory, so every grant, session and signing key is forgotten; the client
// is the same (Dex: static; Hydra: created again). Requests during the restart get 502.
func (p *Provider) Restart(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	proc := p.proc
	p.proc, p.backend, p.adminURL = nil, nil, ""
	p.mu.Unlock()
	if proc != nil {
		proc.Stop(stopGrace)
	}
	p.transport.CloseIdleConnections()
	p.launch(t)
}

// Discovery returns the provider's discovery document, fetched through the front proxy.
func (p *Provider) Discovery(t testing.TB) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := getJSON(t.Context(), p.Issuer+"/.well-known/openid-configuration", &doc); err != nil {
		t.Fatalf("idptest: discovery of %s: %v", p.Kind, err)
	}
	return doc
}

// launch starts the provider process, retrying with new ports when it exits before it
// is ready (most likely a port taken between picking and binding it).
func (p *Provider) launch(t testing.TB) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		p.starts++
		logPath := filepath.Join(p.dir, fmt.Sprintf("%s-%d.log", p.Kind, p.starts))
		p.logs = append(p.logs, logPath)
		var started launched
		began := time.Now()
		switch p.Kind {
		case KindHydra:
			started, err = p.startHydra(t.Context(), logPath)
		case KindDex:
			started, err = p.startDex(t.Context(), logPath)
		case KindOIDCProvider:
			started, err = p.startOIDCProvider(t.Context(), logPath)
		}
		if err == nil {
			p.mu.Lock()
			p.proc, p.backend, p.adminURL = started.proc, started.backend, started.admin
			p.mu.Unlock()
			if p.Kind == KindHydra {
				if err := p.setUpHydra(t.Context(), started.keys); err != nil {
					t.Fatalf("idptest: %v", err)
				}
			}
			t.Logf("idptest: %s ready at %s in %v", p.Kind, p.Issuer, time.Since(began).Round(time.Millisecond))
			return
		}
		if !errors.Is(err, testbench.ErrExited) {
			break
		}
	}
	t.Fatalf("idptest: start %s: %v", p.Kind, err)
}

// launched is what a started provider process offers.
type launched struct {
	proc    *testbench.Process
	backend *url.URL // public listener
	admin   string   // Hydra's admin listener
	keys    keySets  // Hydra's signing keys, imported once it is ready
}

// waitReady polls each URL until it answers 200, the process exits, or the timeout.
// On failure it stops the process; the error wraps testbench.ErrExited when the process
// exited first.
func waitReady(ctx context.Context, proc *testbench.Process, urls ...string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for _, u := range urls {
		if _, err := testbench.WaitHTTP(ctx, proc, u, http.StatusOK, 20*time.Millisecond); err != nil {
			proc.Stop(stopGrace)
			return err
		}
	}
	return nil
}

// cleanup stops everything and, if the test failed, shows the provider's output.
func (p *Provider) cleanup(t testing.TB) {
	p.mu.Lock()
	proc := p.proc
	p.proc, p.backend = nil, nil
	p.mu.Unlock()
	if proc != nil {
		proc.Stop(stopGrace)
	}
	p.front.Close()
	if p.login != nil {
		p.login.Close()
	}
	if p.adminFront != nil {
		p.adminFront.Close()
	}
	p.transport.CloseIdleConnections()
	if !t.Failed() {
		return
	}
	for _, path := range p.logs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		t.Logf("idptest: output of %s (%s):\n%s", p.Kind, filepath.Base(path), logTail(b))
	}
}

// logTail keeps the end of a provider's output, readable: Hydra logs every request
// twice in lines of kilobytes, so "started" lines go and long lines are cut.
func logTail(b []byte) string {
	const maxLines, maxLine = 60, 400
	var lines []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.Contains(line, "msg=started handling request") {
			continue
		}
		if len(line) > maxLine {
			line = line[:maxLine] + " [...]"
		}
		lines = append(lines, line)
	}
	if len(lines) > maxLines {
		lines = append([]string{"[...]"}, lines[len(lines)-maxLines:]...)
	}
	return strings.Join(lines, "\n")
}

var discardLog = log.New(io.Discard, "", 0)

var plainClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}

func getJSON(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// binary returns the provider binary of kind from its environment variable, or ends
// the test through need.Missing. For oidc-provider it is the directory that holds
// node_modules/oidc-provider.
func binary(t testing.TB, kind string) string {
	t.Helper()
	if kind == KindOIDCProvider {
		return oidcProviderModules(t)
	}
	env := map[string]string{KindHydra: need.EnvHydra, KindDex: need.EnvDex}[kind]
	path := need.Env(t, env, "run ./test.sh, or export "+env+"=$(scripts/idp-bin.sh "+kind+")")
	if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		need.Missing(t, kind+" binary", env+"="+path+" is not an executable file")
	}
	return path
}

// admin returns Hydra's admin URL, "" while it is not running.
func (p *Provider) admin() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.adminURL
}
