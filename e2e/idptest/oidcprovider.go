package idptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/internal/need"
	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// introspectorID is the client the harness itself introspects with at oidc-provider (a
// resource server's client, client_secret_basic): its calls go straight to the
// provider, not through the front, and are not counted.
const introspectorID = "idptest-introspector"

// endpointPaths are the paths of a provider's endpoints at the front ("" when it has
// none there).
type endpointPaths struct {
	authorize, par, introspection, revocation string
}

var pathsOf = map[string]endpointPaths{
	// Hydra's introspection is on its admin listener, never behind the front.
	KindHydra:        {authorize: "/oauth2/auth", revocation: "/oauth2/revoke"},
	KindDex:          {authorize: "/dex/auth"},
	KindOIDCProvider: {authorize: "/auth", par: "/request", introspection: "/token/introspection", revocation: "/token/revocation"},
}

// check validates the options for kind.
func (o Options) check(kind string) error {
	if o.RedirectURL == "" {
		return errors.New("Options.RedirectURL is required")
	}
	switch o.TokenEndpointAuthMethod {
	case "", "client_secret_basic", "client_secret_post":
	case "private_key_jwt":
		if kind != KindOIDCProvider {
			return fmt.Errorf("TokenEndpointAuthMethod %q: only oidc-provider supports it", o.TokenEndpointAuthMethod)
		}
		if o.ClientJWKS == nil || len(o.ClientJWKS.Keys) == 0 {
			return errors.New("TokenEndpointAuthMethod private_key_jwt needs Options.ClientJWKS")
		}
	default:
		return fmt.Errorf("TokenEndpointAuthMethod %q not supported", o.TokenEndpointAuthMethod)
	}
	if kind != KindOIDCProvider {
		if o.ClientJWKS != nil || len(o.Resources) > 0 || o.DPoP != DPoPOptional || o.DPoPNonce || o.PARRequired {
			return errors.New("ClientJWKS, Resources, DPoP, DPoPNonce and PARRequired are for oidc-provider only")
		}
		return nil
	}
	if o.ClientJWKS != nil {
		for _, k := range o.ClientJWKS.Keys {
			if !k.IsPublic() {
				return fmt.Errorf("ClientJWKS: key %q is private; register the public keys only", k.KeyID)
			}
		}
	}
	if o.DPoPNonce && o.DPoP == DPoPOff {
		return errors.New("DPoPNonce with DPoPOff")
	}
	seen := map[string]bool{}
	for _, r := range o.Resources {
		u, err := url.Parse(r.Indicator)
		if err != nil || !u.IsAbs() || u.Fragment != "" {
			return fmt.Errorf("Resource %q: Indicator must be an absolute URI without fragment", r.Indicator)
		}
		if seen[r.Indicator] {
			return fmt.Errorf("Resource %q: listed twice", r.Indicator)
		}
		seen[r.Indicator] = true
		if len(r.Scopes) == 0 {
			return fmt.Errorf("Resource %q: Scopes are required", r.Indicator)
		}
		if r.Format != "" && r.Format != FormatJWT && r.Format != FormatOpaque {
			return fmt.Errorf("Resource %q: Format %q, want %q or %q", r.Indicator, r.Format, FormatJWT, FormatOpaque)
		}
	}
	return nil
}

// oidcProviderModules returns the directory holding node_modules/oidc-provider from
// need.EnvOIDCProvider, after checking that it and node are there.
func oidcProviderModules(t testing.TB) string {
	t.Helper()
	env := need.EnvOIDCProvider
	dir := need.Env(t, env, "run ./test.sh, or export "+env+"=$(scripts/idp-bin.sh oidc-provider)")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err != nil {
		need.Missing(t, "oidc-provider", env+"="+dir+" holds no node_modules/oidc-provider: "+err.Error())
	}
	if _, err := exec.LookPath("node"); err != nil {
		need.Missing(t, "node", "oidc-provider runs on Node.js (apt-get install nodejs)")
	}
	if _, err := os.Stat(providerScript()); err != nil {
		t.Fatalf("idptest: oidc-provider script: %v", err)
	}
	return dir
}

// providerScript is e2e/idp/oidc-provider/provider.mjs in this source tree.
func providerScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "idp", "oidc-provider", "provider.mjs")
}

// startOIDCProvider writes provider.mjs's configuration and starts it with node.
func (p *Provider) startOIDCProvider(ctx context.Context, logPath string) (launched, error) {
	port, err := testbench.FreePort()
	if err != nil {
		return launched{}, err
	}
	cfgPath := filepath.Join(p.dir, fmt.Sprintf("oidc-provider-%d.json", p.starts))
	b, err := json.MarshalIndent(p.oidcProviderConfig(port), "", "  ")
	if err != nil {
		return launched{}, fmt.Errorf("oidc-provider config: %w", err)
	}
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return launched{}, fmt.Errorf("oidc-provider config: %w", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return launched{}, fmt.Errorf("oidc-provider: %w", err)
	}
	proc, err := testbench.Start(testbench.Spec{
		Name: "oidc-provider", Bin: node, Args: []string{providerScript(), cfgPath},
		Env: testbench.BaseEnv(), LogPath: logPath, Dir: p.dir,
	})
	if err != nil {
		return launched{}, err
	}
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitReady(ctx, proc, public+"/.well-known/openid-configuration"); err != nil {
		return launched{}, err
	}
	u, _ := url.Parse(public)
	return launched{proc: proc, backend: u}, nil
}

// oidcProviderConfig is the configuration provider.mjs reads (its header lists the keys).
func (p *Provider) oidcProviderConfig(port int) map[string]any {
	o := p.opts
	auth := o.TokenEndpointAuthMethod
	if auth == "" {
		auth = "client_secret_basic"
	}
	client := map[string]any{
		"client_id":                  p.ClientID,
		"client_name":                "tokenhandler",
		"grant_types":                []string{GrantAuthorizationCode, GrantRefreshToken, GrantTokenExchange},
		"response_types":             []string{"code"},
		"redirect_uris":              []string{o.RedirectURL},
		"token_endpoint_auth_method": auth,
		// RFC 9701: introspection answers Accept: application/token-introspection+jwt
		// with a signed JWT.
		"introspection_signed_response_alg": "RS256",
	}
	if p.ClientSecret != "" {
		client["client_secret"] = p.ClientSecret
	}
	if o.ClientJWKS != nil {
		client["jwks"] = o.ClientJWKS
	}
	if o.PostLogoutRedirectURL != "" {
		client["post_logout_redirect_uris"] = []string{o.PostLogoutRedirectURL}
	}
	if o.BackchannelLogoutURL != "" {
		client["backchannel_logout_uri"] = o.BackchannelLogoutURL
		client["backchannel_logout_session_required"] = true
	}
	if o.DPoP == DPoPRequired {
		client["dpop_bound_access_tokens"] = true
	}
	if o.PARRequired {
		client["require_pushed_authorization_requests"] = true
	}
	introspector := map[string]any{
		"client_id": introspectorID, "client_secret": p.introspector,
		"grant_types": []string{}, "response_types": []string{}, "redirect_uris": []string{},
		"token_endpoint_auth_method":        "client_secret_basic",
		"introspection_signed_response_alg": "RS256",
	}
	resources := map[string]testbench.OIDCResource{}
	for _, r := range o.Resources {
		aud := r.Audience
		if aud == "" {
			aud = r.Indicator
		}
		resources[r.Indicator] = testbench.OIDCResource{
			Audience: aud, Scope: strings.Join(r.Scopes, " "), Format: r.Format, TTL: r.TTL, Exchange: r.Exchange,
		}
	}
	return testbench.OIDCProvider{
		Modules: p.bin, Issuer: p.Issuer, Port: port,
		AccessTokenTTL: o.AccessTokenTTL, IDTokenTTL: time.Hour, RefreshTokenTTL: 24 * time.Hour,
		AccountID: demoUserID, Email: demoEmail, Name: demoName,
		Clients:   []map[string]any{client, introspector},
		Resources: resources,
		DPoP:      o.DPoP != DPoPOff, DPoPNonce: o.DPoPNonce,
	}.Config()
}

// peekForm returns the form of a request with a form body and puts the body back
// unchanged (the front proxy forwards it); empty for other requests.
func peekForm(r *http.Request) url.Values {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return url.Values{}
	}
	return testbench.PeekForm(r)
}

// carriesSecret reports whether r carries the client secret: as the password of HTTP
// Basic authentication or as the client_secret form field.
func carriesSecret(r *http.Request, form url.Values, secret string) bool {
	if secret == "" {
		return false
	}
	if _, pw, ok := r.BasicAuth(); ok && (pw == secret || pw == url.QueryEscape(secret)) {
		return true
	}
	return form.Get("client_secret") == secret
}

// GrantCalls returns how many token-endpoint requests with grant_type grant (e.g.
// GrantTokenExchange) arrived through the front proxy since Start, counted as
// TokenCalls counts them.
func (p *Provider) GrantCalls(grant string) int64 {
	p.callsMu.Lock()
	defer p.callsMu.Unlock()
	return p.grants[grant]
}

// TokenExchangeCalls returns GrantCalls(GrantTokenExchange).
func (p *Provider) TokenExchangeCalls() int64 { return p.GrantCalls(GrantTokenExchange) }

// PARCalls returns how many requests reached the pushed-authorization-request endpoint
// through the front (oidc-provider only; 0 elsewhere).
func (p *Provider) PARCalls() int64 { return p.pathCalls(p.paths.par) }

// IntrospectionCalls returns how many requests reached the introspection endpoint:
// oidc-provider's through the front, Hydra's admin one through AdminIntrospectionURL's
// proxy; 0 at Dex. The harness's own Introspect calls are not counted.
func (p *Provider) IntrospectionCalls() int64 {
	if p.Kind == KindHydra {
		return p.Calls("admin " + hydraIntrospectPath)
	}
	return p.pathCalls(p.paths.introspection)
}

// RevocationCalls returns how many requests reached the revocation endpoint through
// the front (Hydra and oidc-provider; Dex has none).
func (p *Provider) RevocationCalls() int64 { return p.pathCalls(p.paths.revocation) }

// DPoPTokenCalls returns how many of TokenCalls carried a DPoP header.
func (p *Provider) DPoPTokenCalls() int64 {
	p.callsMu.Lock()
	defer p.callsMu.Unlock()
	return p.dpopCalls
}

// SecretCalls returns how many requests through the front, to any endpoint, carried
// the client secret (HTTP Basic password or client_secret form field); with
// private_key_jwt there is no secret and it stays 0.
func (p *Provider) SecretCalls() int64 {
	p.callsMu.Lock()
	defer p.callsMu.Unlock()
	return p.secretCalls
}

// AuthorizationRequests returns the query of every request to the authorization
// endpoint through the front so far, first to last: with PAR it should carry only
// client_id and request_uri.
func (p *Provider) AuthorizationRequests() []url.Values {
	p.callsMu.Lock()
	defer p.callsMu.Unlock()
	out := make([]url.Values, len(p.authzQueries))
	for i, q := range p.authzQueries {
		c := url.Values{}
		for k, v := range q {
			c[k] = slices.Clone(v)
		}
		out[i] = c
	}
	return out
}

func (p *Provider) pathCalls(path string) int64 {
	if path == "" {
		return 0
	}
	return p.Calls(path)
}

// Introspection is an RFC 7662 introspection response of oidc-provider or Hydra.
type Introspection struct {
	Active    bool   `json:"active"`
	Subject   string `json:"sub"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope"`
	TokenType string `json:"token_type"` // "Bearer" or "DPoP"; empty for refresh tokens
	Issuer    string `json:"iss"`
	JTI       string `json:"jti"`
	Expiry    int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	// Audience is aud, one string or several, as a list; empty when there is none.
	Audience []string `json:"-"`
	// Cnf is the confirmation: JKT is the RFC 7638 thumbprint of a DPoP-bound token's key.
	Cnf struct {
		JKT string `json:"jkt"`
	} `json:"cnf"`
	// Raw is the whole response.
	Raw map[string]any `json:"-"`
}

// Introspect asks the provider about token, as a resource server would, past the front
// proxies (not counted): oidc-provider with a client of the harness's own, Hydra at its
// admin API. An unknown, expired or revoked token gives Active false.
func (p *Provider) Introspect(t testing.TB, token string) Introspection {
	t.Helper()
	body, _ := p.introspect(t, token, "application/json")
	var in Introspection
	if err := json.Unmarshal(body, &in); err != nil {
		t.Fatalf("idptest: introspection response: %v: %s", err, body)
	}
	if err := json.Unmarshal(body, &in.Raw); err != nil {
		t.Fatalf("idptest: introspection response: %v", err)
	}
	switch aud := in.Raw["aud"].(type) {
	case string:
		in.Audience = []string{aud}
	case []any:
		for _, a := range aud {
			s, _ := a.(string)
			in.Audience = append(in.Audience, s)
		}
	}
	return in
}

// IntrospectJWT asks as Introspect does, with Accept: application/token-introspection+jwt
// (RFC 9701), and returns the signed response (a compact JWS, not verified here: see
// KeySet) with its Content-Type.
func (p *Provider) IntrospectJWT(t testing.TB, token string) (jwt, contentType string) {
	t.Helper()
	body, ct := p.introspect(t, token, "application/token-introspection+jwt")
	return string(body), ct
}

func (p *Provider) introspect(t testing.TB, token, accept string) ([]byte, string) {
	t.Helper()
	form := url.Values{"token": {token}}
	var req *http.Request
	var err error
	switch {
	case p.Kind == KindOIDCProvider:
		req, err = p.backendRequest(t.Context(), http.MethodPost, pathsOf[KindOIDCProvider].introspection, strings.NewReader(form.Encode()))
		if err == nil {
			req.SetBasicAuth(introspectorID, p.introspector)
		}
	case p.Kind == KindHydra && accept == "application/json":
		req, err = http.NewRequestWithContext(t.Context(), http.MethodPost, p.admin()+hydraIntrospectPath, strings.NewReader(form.Encode()))
	default:
		t.Fatalf("idptest: Introspect: only oidc-provider and Hydra (JSON), not %s with %s", p.Kind, accept)
	}
	if err != nil {
		t.Fatalf("idptest: introspect: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", accept)
	resp, err := plainClient.Do(req)
	if err != nil {
		t.Fatalf("idptest: introspect: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("idptest: introspect: %s: %s", resp.Status, body)
	}
	return body, resp.Header.Get("Content-Type")
}

// KeySet returns the provider's signing keys (its jwks_uri), fetched past the front
// proxy: they verify ID tokens, JWT access tokens and JWT introspection responses.
// oidc-provider makes a new key at each start (Restart).
func (p *Provider) KeySet(t testing.TB) *jose.JSONWebKeySet {
	t.Helper()
	jwksURL, _ := p.Discovery(t)["jwks_uri"].(string)
	u, err := url.Parse(jwksURL)
	if err != nil {
		t.Fatalf("idptest: jwks_uri %q: %v", jwksURL, err)
	}
	req, err := p.backendRequest(t.Context(), http.MethodGet, u.Path, nil)
	if err != nil {
		t.Fatalf("idptest: jwks: %v", err)
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		t.Fatalf("idptest: jwks: %v", err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("idptest: jwks: %s, %v", resp.Status, err)
	}
	return &set
}

// VerifyJWT checks the signature of a compact JWS (a JWT access token, an ID token, a
// JWT introspection response) against KeySet and returns its payload's claims and its
// typ header. It checks nothing else: the caller checks iss, aud, exp.
func (p *Provider) VerifyJWT(t testing.TB, jwt string) (claims map[string]any, typ string) {
	t.Helper()
	jws, err := jose.ParseSigned(jwt, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("idptest: VerifyJWT: %v", err)
	}
	set := p.KeySet(t)
	kid := jws.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if len(keys) == 0 {
		t.Fatalf("idptest: VerifyJWT: no key %q in the provider's key set", kid)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("idptest: VerifyJWT: %v", err)
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("idptest: VerifyJWT: payload: %v", err)
	}
	typ, _ = jws.Signatures[0].Header.ExtraHeaders[jose.HeaderType].(string)
	return claims, typ
}

// backendRequest is a request straight to the provider's listener, with the front's
// Host, as the front would forward it.
func (p *Provider) backendRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	p.mu.Lock()
	backend := p.backend
	p.mu.Unlock()
	if backend == nil {
		return nil, errors.New("the provider is not running")
	}
	req, err := http.NewRequestWithContext(ctx, method, backend.String()+path, body)
	if err != nil {
		return nil, err
	}
	req.Host = hostOf(p.front.URL)
	return req, nil
}
