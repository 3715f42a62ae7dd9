package idptest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// startHydra writes Hydra's configuration and starts `hydra serve all`.
func (p *Provider) startHydra(ctx context.Context, logPath string) (launched, error) {
	ports, err := testbench.FreePorts(2)
	if err != nil {
		return launched{}, err
	}
	public := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	strategy := "jwt"
	if p.opts.OpaqueAccessTokens {
		strategy = "opaque"
	}
	ttl := map[string]any{}
	if p.opts.AccessTokenTTL > 0 {
		ttl["access_token"] = testbench.Duration(p.opts.AccessTokenTTL)
	}
	cfg := map[string]any{
		"dsn": "memory",
		"serve": map[string]any{
			"public": map[string]any{"host": "127.0.0.1", "port": ports[0]},
			"admin":  map[string]any{"host": "127.0.0.1", "port": ports[1]},
		},
		"urls": map[string]any{
			// The front proxy is the issuer and the public URL: discovery hands out
			// endpoints behind it, so every call to the provider passes through it.
			"self":                 map[string]any{"issuer": p.Issuer, "public": p.Issuer},
			"login":                p.login.URL + "/login",
			"consent":              p.login.URL + "/consent",
			"logout":               p.login.URL + "/logout",
			"post_logout_redirect": p.login.URL + "/logged-out",
		},
		"secrets":    map[string]any{"system": []string{testbench.RandomHex(24)}},
		"strategies": map[string]any{"access_token": strategy},
		"ttl":        ttl,
		"oauth2": map[string]any{
			"pkce": map[string]any{"enforced": true},
			// Strict rotation: replaying a spent refresh token revokes the family.
			"grant": map[string]any{"refresh_token": map[string]any{"rotation_grace_period": "0s"}},
		},
		"log": map[string]any{"level": "info", "leak_sensitive_values": false},
	}
	cfgPath := filepath.Join(p.dir, fmt.Sprintf("hydra-%d.yaml", p.starts))
	if err := testbench.WriteConfig(cfgPath, cfg); err != nil {
		return launched{}, err
	}
	// --dev allows the http issuer on loopback; --sqa-opt-out keeps it from sending
	// telemetry to an outside host.
	// Hydra makes its signing keys on first use: two RSA-4096 keys, 2 to 13 s here.
	// Fresh RSA-2048 keys, made while it starts and imported before first use, cost
	// about 0.1 s.
	keys := make(chan keySets, 1)
	go func() { keys <- newHydraKeys() }()
	proc, err := testbench.Start(testbench.Spec{
		Name: "hydra", Bin: p.bin, Args: []string{"serve", "all", "--dev", "--sqa-opt-out", "--config", cfgPath},
		Env: testbench.BaseEnv(), LogPath: logPath,
	})
	if err != nil {
		return launched{}, err
	}
	if err := waitReady(ctx, proc, admin+"/health/ready", public+"/health/ready"); err != nil {
		return launched{}, err
	}
	u, _ := url.Parse(public)
	return launched{proc: proc, backend: u, admin: admin, keys: <-keys}, nil
}

// keySets maps a Hydra key set name to the JSON Web Key Set to import into it.
type keySets map[string]any

// newHydraKeys makes one RS256 signing key for ID tokens and one for JWT access tokens.
func newHydraKeys() keySets {
	sets := keySets{}
	for _, set := range []string{"hydra.openid.id-token", "hydra.jwt.access-token"} {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(fmt.Sprintf("idptest: rsa key: %v", err)) // crypto/rand does not fail
		}
		key.Precompute()
		b64 := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.Bytes()) }
		sets[set] = map[string]any{"keys": []map[string]any{{
			"kty": "RSA", "use": "sig", "alg": "RS256", "kid": testbench.RandomHex(8),
			"n": b64(key.N), "e": b64(big.NewInt(int64(key.E))), "d": b64(key.D),
			"p": b64(key.Primes[0]), "q": b64(key.Primes[1]),
			"dp": b64(key.Precomputed.Dp), "dq": b64(key.Precomputed.Dq), "qi": b64(key.Precomputed.Qinv),
		}}}
	}
	return sets
}

// setUpHydra imports the signing keys and registers the client; with dsn: memory both
// are gone after a restart.
func (p *Provider) setUpHydra(ctx context.Context, keys keySets) error {
	for set, jwks := range keys {
		if err := testbench.HydraAdmin(ctx, p.admin(), http.MethodPut, "/admin/keys/"+set, nil, jwks, nil); err != nil {
			return fmt.Errorf("import hydra keys: %w", err)
		}
	}
	return p.createHydraClient(ctx)
}

// createHydraClient registers the client.
func (p *Provider) createHydraClient(ctx context.Context) error {
	strategy := "jwt"
	if p.opts.OpaqueAccessTokens {
		strategy = "opaque"
	}
	auth := p.opts.TokenEndpointAuthMethod
	if auth == "" {
		auth = "client_secret_basic"
	}
	client := map[string]any{
		"client_id":                  p.ClientID,
		"client_secret":              p.ClientSecret,
		"client_name":                "tokenhandler",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      scopes,
		"redirect_uris":              []string{p.opts.RedirectURL},
		"token_endpoint_auth_method": auth,
		"skip_consent":               true,
		"access_token_strategy":      strategy,
	}
	if p.opts.PostLogoutRedirectURL != "" {
		client["post_logout_redirect_uris"] = []string{p.opts.PostLogoutRedirectURL}
	}
	if p.opts.BackchannelLogoutURL != "" {
		client["backchannel_logout_uri"] = p.opts.BackchannelLogoutURL
		client["backchannel_logout_session_required"] = true
	}
	var created struct {
		ClientID string `json:"client_id"`
	}
	if err := testbench.HydraAdmin(ctx, p.admin(), http.MethodPost, "/admin/clients", nil, client, &created); err != nil {
		return fmt.Errorf("create hydra client: %w", err)
	}
	if created.ClientID != p.ClientID {
		return fmt.Errorf("create hydra client: got client_id %q, want %q", created.ClientID, p.ClientID)
	}
	return nil
}

// hydraIntrospectPath is the RFC 7662 endpoint of Hydra's admin API; Hydra's discovery
// does not name it.
const hydraIntrospectPath = "/admin/oauth2/introspect"

// adminProxy forwards to Hydra's admin listener (wherever the current process has it),
// counting requests by path under "admin " + path, and refuses while the provider is
// down, as the front does.
func (p *Provider) adminProxy() http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(backendKey{}).(*url.URL))
		},
		Transport:    p.transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
		ErrorLog:     discardLog,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.callsMu.Lock()
		p.calls["admin "+r.URL.Path]++
		p.callsMu.Unlock()
		if p.down.Load() {
			refuse(w)
			return
		}
		admin, err := url.Parse(p.admin())
		if err != nil || admin.Host == "" {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, admin)))
	})
}

// AdminIntrospectionURL is Hydra's RFC 7662 introspection endpoint on its admin API,
// behind a counting proxy (IntrospectionCalls) whose URL survives Restart: what
// tokenhandler's oidc.introspection_endpoint names for Hydra. The admin API asks for no
// client authentication. "" for the other kinds, whose introspection is in discovery.
func (p *Provider) AdminIntrospectionURL() string {
	if p.adminFront == nil {
		return ""
	}
	return p.adminFront.URL + hydraIntrospectPath
}
