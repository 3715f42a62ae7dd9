package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/internal/need"
	"github.com/tokenhandler/tokenhandler/internal/testbench"
	"github.com/tokenhandler/tokenhandler/josekey"
)

func TestFAPIProviderConfig(t *testing.T) {
	jwk := map[string]any{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}
	c := fapiProviderConfig("/m", "http://localhost:3000", 3000, 5*time.Second, "http://localhost:8080", jwk).Config()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Issuer          string                      `json:"issuer"`
		SigningAlg      string                      `json:"signingAlg"`
		DefaultResource string                      `json:"defaultResource"`
		TTL             struct{ AccessToken int64 } `json:"ttl"`
		DPoP            struct{ Enabled bool }      `json:"dpop"`
		Resources       map[string]struct {
			Audience, Scope, AccessTokenFormat string
		} `json:"resources"`
		Clients []struct {
			ClientID     string   `json:"client_id"`
			Auth         string   `json:"token_endpoint_auth_method"`
			PAR          bool     `json:"require_pushed_authorization_requests"`
			DPoP         bool     `json:"dpop_bound_access_tokens"`
			IDTokenAlg   string   `json:"id_token_signed_response_alg"`
			Redirects    []string `json:"redirect_uris"`
			JWKS         struct{ Keys []map[string]any }
			ClientSecret string         `json:"client_secret"`
			Extra        map[string]any `json:"-"`
		} `json:"clients"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Clients) != 1 {
		t.Fatalf("clients = %d, want tokenhandler's only", len(got.Clients))
	}
	cl := got.Clients[0]
	rs := got.Resources[fapiResource]
	checks := []struct {
		name      string
		got, want any
	}{
		{"issuer", got.Issuer, "http://localhost:3000"},
		{"signingAlg (PS256 ID tokens for fapi2)", got.SigningAlg, "PS256"},
		{"defaultResource", got.DefaultResource, fapiResource},
		{"ttl.accessToken", got.TTL.AccessToken, int64(5)},
		{"dpop.enabled", got.DPoP.Enabled, true},
		{"resource audience", rs.Audience, fapiResource},
		{"resource scope", rs.Scope, fapiScope},
		{"resource format", rs.AccessTokenFormat, "jwt"},
		{"client_id", cl.ClientID, clientID},
		{"token_endpoint_auth_method", cl.Auth, "private_key_jwt"},
		{"require_pushed_authorization_requests", cl.PAR, true},
		{"dpop_bound_access_tokens", cl.DPoP, true},
		{"id_token_signed_response_alg", cl.IDTokenAlg, "PS256"},
		{"redirect_uris", strings.Join(cl.Redirects, " "), "http://localhost:8080/auth/callback"},
		{"client_secret", cl.ClientSecret, ""},
		{"jwks", len(cl.JWKS.Keys) == 1 && cl.JWKS.Keys[0]["kid"] == "k1", true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("oidc-provider config %s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestFAPIStack starts the -fapi demo (panva oidc-provider, PAR, private_key_jwt, DPoP,
// oidc.profile fapi2), signs in through the provider's login form as a browser would,
// and calls the example API through tokenhandler: the API, which accepts only DPoP,
// answers with the token's claims, bound (cnf.jkt) to the stack's DPoP key.
func TestFAPIStack(t *testing.T) {
	dir := os.Getenv("TOKENHANDLER_OIDC_PROVIDER")
	if dir == "" {
		dir = need.Env(t, need.EnvOIDCProvider, "run ./test.sh, or export "+need.EnvOIDCProvider+"=$(scripts/idp-bin.sh oidc-provider)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err != nil {
		need.Missing(t, "oidc-provider", dir+" holds no node_modules/oidc-provider: "+err.Error())
	}
	if _, err := exec.LookPath("node"); err != nil {
		need.Missing(t, "node", "-fapi runs oidc-provider on Node.js (apt-get install nodejs)")
	}
	if testing.Short() {
		t.Skip("starts oidc-provider and tokenhandler")
	}
	root, th := buildTokenhandler(t)
	info, cancel, done, _ := startStack(t, "-fapi", "-oidc-provider", dir, "-tokenhandler", th, "-root", root)
	defer cancel()
	if !info.FAPI || info.Audience != fapiResource || info.Username != fapiLogin {
		t.Errorf("-json = %+v, want fapi true, audience %s, username %s", info, fapiResource, fapiLogin)
	}
	dpopKey, err := josekey.Load(filepath.Join(info.LogDir, "dpop.pem"))
	if err != nil {
		t.Fatalf("the stack's DPoP key: %v", err)
	}
	issuer, _ := url.Parse(info.Issuer)

	// A browser: the loopback jar, and every redirect to the provider's authorization
	// endpoint recorded.
	jar, err := testbench.NewJar()
	if err != nil {
		t.Fatal(err)
	}
	var authz []url.Values
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host == issuer.Host && req.URL.Path == "/auth" {
			authz = append(authz, req.URL.Query())
		}
		if len(via) >= 20 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	res, err := testbench.SignIn(ctx, c, info.URL+"/auth/login?return_to=%2F", testbench.Flow{
		// Any password works for a known login at oidc-provider's development form.
		Username: fapiLogin, Password: "any-" + testbench.RandomHex(4),
		Provider: func(u *url.URL) bool { return u.Host == issuer.Host },
	})
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	page, _ := io.ReadAll(io.LimitReader(res.Response.Body, 2048))
	res.Response.Body.Close()
	if !res.Posted || res.Response.Request.URL.String() != info.URL+"/" {
		t.Fatalf("sign-in ended at %s (%s, form posted: %v), want %s/; the page:\n%s", res.Response.Request.URL, res.Response.Status, res.Posted, info.URL, page)
	}
	// PAR: what the browser carried to the authorization endpoint is client_id and
	// request_uri, nothing else.
	if len(authz) == 0 {
		t.Fatal("the browser never went to the provider's authorization endpoint")
	}
	for _, q := range authz {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range q {
				if !yield(k) {
					return
				}
			}
		})
		if strings.Join(keys, ",") != "client_id,request_uri" {
			t.Errorf("authorization request carries %v, want client_id and request_uri only (PAR)", keys)
		}
	}

	get := func(c *http.Client, u string, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, body := get(c, info.URL+"/auth/session"); resp.StatusCode != 200 || !strings.Contains(string(body), `"authenticated":true`) {
		t.Fatalf("GET /auth/session = %d %s, want authenticated", resp.StatusCode, body)
	}

	// The SPA's call: the example API (-require-dpop) answers only after checking the
	// proof in full and that the token's cnf.jkt is the proof key's thumbprint.
	cl := callAPI(t, c, info.URL)
	if cl.Cnf.JKT != dpopKey.Thumbprint() {
		t.Errorf("the token's cnf.jkt = %q, want the DPoP key's thumbprint %q", cl.Cnf.JKT, dpopKey.Thumbprint())
	}
	if cl.Iss != info.Issuer || cl.Sub != fapiLogin || cl.Aud != fapiResource || cl.Scope != fapiScope {
		t.Errorf("claims iss %q sub %q aud %v scope %q, want %s, %s, %s, %s", cl.Iss, cl.Sub, cl.Aud, cl.Scope, info.Issuer, fapiLogin, fapiResource, fapiScope)
	}

	// /orders/ gets a token of its own (a refresh for the resource, token.dpop inherited
	// from oidc.dpop): another JWT, bound to the same key, which the DPoP-only API takes.
	orders := callAPIAt(t, c, info.URL, "/orders/claims")
	if orders.JTI == "" || orders.JTI == cl.JTI || orders.Cnf.JKT != dpopKey.Thumbprint() || orders.Aud != fapiResource || orders.Sub != fapiLogin {
		t.Errorf("/orders/ token: jti %q (the session's %q), cnf.jkt %q, aud %v, sub %q; want its own token bound to %q for %s, sub %s",
			orders.JTI, cl.JTI, orders.Cnf.JKT, orders.Aud, orders.Sub, dpopKey.Thumbprint(), fapiResource, fapiLogin)
	}
	if again := callAPI(t, c, info.URL); again.JTI != cl.JTI {
		t.Errorf("/api/ after the /orders/ derivation got token %q, want the session's own %q", again.JTI, cl.JTI)
	}

	// A refresh (private_key_jwt and a DPoP proof at the token endpoint) gives a new JWT
	// for the API, bound to the same key; it spends the refresh token the /orders/
	// derivation rotated, so that rotation reached the browser.
	req, _ := http.NewRequest(http.MethodPost, info.URL+"/auth/refresh", nil)
	req.Header.Set("X-CSRF", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST /auth/refresh: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST /auth/refresh = %d, want 2xx", resp.StatusCode)
	}
	after := callAPI(t, c, info.URL)
	if after.JTI == "" || after.JTI == cl.JTI || after.Cnf.JKT != cl.Cnf.JKT || after.Aud != fapiResource {
		t.Errorf("after a refresh: jti %q (before %q), cnf.jkt %q, aud %v; want a new token bound to %q for %s", after.JTI, cl.JTI, after.Cnf.JKT, after.Aud, cl.Cnf.JKT, fapiResource)
	}

	// The API refuses anything but DPoP: a Bearer request gets 401 before any token check.
	if resp, _ := get(http.DefaultClient, info.APIURL+"/claims", "Authorization", "Bearer x.y.z"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("example API with a Bearer token = %d, want 401 (-require-dpop)", resp.StatusCode)
	}

	// Sign out as the SPA does: POST /auth/logout (tokenhandler revokes the refresh token
	// with private_key_jwt and a proof), then the provider's confirmation, back to the SPA.
	req, _ = http.NewRequest(http.MethodPost, info.URL+"/auth/logout", nil)
	req.Header.Set("X-CSRF", "1")
	if resp, err = c.Do(req); err != nil {
		t.Fatalf("POST /auth/logout: %v", err)
	}
	var logout struct {
		LogoutURL string `json:"logout_url"`
	}
	err = json.NewDecoder(resp.Body).Decode(&logout)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || !strings.HasPrefix(logout.LogoutURL, info.Issuer+"/") {
		t.Fatalf("POST /auth/logout = %d, logout_url %q (%v), want 200 and the provider's end-session URL", resp.StatusCode, logout.LogoutURL, err)
	}
	res, err = testbench.SignIn(ctx, c, logout.LogoutURL, testbench.Flow{
		Confirm: true, Provider: func(u *url.URL) bool { return u.Host == issuer.Host },
	})
	if err != nil {
		t.Fatalf("provider logout: %v", err)
	}
	res.Response.Body.Close()
	if got := res.Response.Request.URL.String(); got != info.URL+"/" {
		t.Errorf("after the provider's logout the browser is at %s, want %s/", got, info.URL)
	}
	if resp, body := get(c, info.URL+"/auth/session"); !strings.Contains(string(body), `"authenticated":false`) {
		t.Errorf("GET /auth/session after logout = %d %s, want authenticated false", resp.StatusCode, body)
	}

	stopStack(t, info, cancel, done, childPIDs(t, info.LogDir, th))
}

// apiClaims are the claims of the access token, as the example API answers them.
type apiClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Aud   any    `json:"aud"`
	Scope string `json:"scope"`
	JTI   string `json:"jti"`
	Cnf   struct {
		JKT string `json:"jkt"`
	} `json:"cnf"`
}

// callAPI is the SPA's call: GET /api/claims through tokenhandler. The example API
// (-require-dpop) answers 200 only after checking the DPoP proof in full, including
// that the token's cnf.jkt is the proof key's thumbprint.
func callAPI(t *testing.T, c *http.Client, base string) apiClaims {
	t.Helper()
	return callAPIAt(t, c, base, "/api/claims")
}

// callAPIAt is callAPI on another path (another route to the example API).
func callAPIAt(t *testing.T, c *http.Client, base, path string) apiClaims {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("X-CSRF", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s, want 200", path, resp.StatusCode, body)
	}
	var answer struct {
		Claims apiClaims `json:"claims"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		t.Fatalf("claims answer %s: %v", body, err)
	}
	return answer.Claims
}
