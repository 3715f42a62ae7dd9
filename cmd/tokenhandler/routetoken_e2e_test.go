package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/mint"
)

// Resources of the route-token tests at oidc-provider.
const (
	ordersResource  = "https://orders.test/"
	reportsResource = "https://reports.test/"
)

// routeTokenStack is oidc-provider with two resource servers and tokenhandler with a
// plain route /api/, /orders/ (via refresh, resource orders), /reports/ (via exchange,
// audience reports) and routes whose policies the provider refuses, all to one upstream.
func routeTokenStack(t *testing.T) (*stack, *upstream) {
	api := newUpstream(t)
	routes := []map[string]any{
		{"path": "/api/", "upstream": api.srv.URL},
		{"path": "/orders/", "upstream": api.srv.URL, "token": map[string]any{"via": "refresh", "resource": []string{ordersResource}, "scope": "orders:read"}},
		{"path": "/reports/", "upstream": api.srv.URL, "token": map[string]any{"via": "exchange", "audience": []string{"reports"}}},
		{"path": "/badtarget/", "upstream": api.srv.URL, "token": map[string]any{"via": "exchange", "audience": []string{"nobody"}}},
		{"path": "/minted/", "upstream": api.srv.URL, "token": map[string]any{"format": "jwt"}},
		{"path": "/phantom/", "upstream": api.srv.URL, "token": map[string]any{"format": "jwt", "jwt_from": "introspection"}},
		{"path": "/badscope/", "upstream": api.srv.URL, "token": map[string]any{"via": "refresh", "scope": "reports:read"}},
	}
	rj, _ := json.Marshal(routes)
	keyFile := signingKeyFile(t, "ec")
	s := startStack(t, stackOptions{
		kind: idptest.KindOIDCProvider,
		idp: idptest.Options{
			AccessTokenTTL: time.Hour,
			Resources: []idptest.Resource{
				{Indicator: ordersResource, Scopes: []string{"orders:read"}, Format: idptest.FormatJWT, TTL: 10 * time.Minute},
				{Indicator: reportsResource, Audience: "reports", Scopes: []string{"reports:read"}, Format: idptest.FormatJWT, TTL: 10 * time.Minute, Exchange: true},
			},
		},
		env: map[string]string{
			"TH_ROUTES":             string(rj),
			"TH_OIDC_SCOPES":        "openid,profile,email,offline_access,orders:read",
			"TH_TOKEN_SIGNING_KEYS": keyFile,
			"TH_TOKEN_SIGNING_TTL":  "2m",
		},
	})
	return s, api
}

// signingKeyFile writes a new token_signing key of kind ("ec" or "ed25519") to a file
// and returns its path.
func signingKeyFile(t testing.TB, kind string) string {
	t.Helper()
	keyPEM, err := mint.GenerateKey(kind)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "signing.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile
}

// burst sends n concurrent GETs under prefix with cookies and fails t for each that
// does not answer 200.
func (s *stack) burst(t *testing.T, cookies []*http.Cookie, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	failed := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body, err := s.tryAPICall(http.MethodGet, fmt.Sprintf("%sc%d", prefix, i), cookies, nil, nil)
			if err != nil || resp.StatusCode != http.StatusOK {
				failed <- fmt.Sprintf("%v %s", err, body)
			}
		}()
	}
	wg.Wait()
	close(failed)
	for body := range failed {
		t.Errorf("a concurrent request failed: %s", body)
	}
}

// bearerOf returns the token of the last request the upstream saw on path.
func bearerOf(t *testing.T, api *upstream, path string) string {
	t.Helper()
	reqs := api.requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if strings.HasPrefix(reqs[i].URI, path) {
			if len(reqs[i].Auth) != 1 || !strings.HasPrefix(reqs[i].Auth[0], "Bearer ") {
				t.Fatalf("upstream %s Authorization = %q, want one Bearer", path, reqs[i].Auth)
			}
			return strings.TrimPrefix(reqs[i].Auth[0], "Bearer ")
		}
	}
	t.Fatalf("upstream saw no request on %s", path)
	return ""
}

var csrfHeader = map[string]string{"X-CSRF": "1"}

func TestRouteTokens(t *testing.T) {
	s, api := routeTokenStack(t)
	c := s.signIn("/")
	sess, err := s.session(c, "/orders/")
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"session access token": sess.AccessToken}

	t.Run("via refresh: a token for the resource, the rotated refresh token to the browser", func(t *testing.T) {
		before := s.idp.GrantCalls(idptest.GrantRefreshToken)
		resp, body := s.do(c, http.MethodGet, "/orders/list", csrfHeader)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /orders/list = %d %s, want 200", resp.StatusCode, body)
		}
		if got := s.idp.GrantCalls(idptest.GrantRefreshToken) - before; got != 1 {
			t.Errorf("refresh-token grants = %d, want 1", got)
		}
		tok := bearerOf(t, api, "/orders/")
		secrets["orders token"] = tok
		if tok == sess.AccessToken {
			t.Fatal("the upstream got the session's access token, want the resource's")
		}
		claims, typ := s.idp.VerifyJWT(t, tok)
		if typ != "at+jwt" || claims["aud"] != ordersResource || claims["sub"] != sess.Subject || !strings.Contains(claims["scope"].(string), "orders:read") {
			t.Errorf("orders token typ %q claims %v, want at+jwt with aud %s, sub %s, scope orders:read", typ, claims, ordersResource, sess.Subject)
		}
		if !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "th-rt") {
			t.Errorf("the response carries no rotated refresh cookie: %q", resp.Header.Values("Set-Cookie"))
		}
		ns, err := s.session(c, "/orders/")
		if err != nil || ns.RefreshToken == sess.RefreshToken || ns.AccessToken != sess.AccessToken {
			t.Errorf("after the derivation the session = %v (refresh token rotated %v, access token kept %v), want a rotated refresh token and the same access token",
				err, ns != nil && ns.RefreshToken != sess.RefreshToken, ns != nil && ns.AccessToken == sess.AccessToken)
		}
		// Cached: no provider call, the same token.
		resp, _ = s.do(c, http.MethodGet, "/orders/again", csrfHeader)
		if resp.StatusCode != http.StatusOK || bearerOf(t, api, "/orders/again") != tok {
			t.Errorf("second GET = %d with another token, want 200 with the cached one", resp.StatusCode)
		}
		if got := s.idp.GrantCalls(idptest.GrantRefreshToken) - before; got != 1 {
			t.Errorf("refresh-token grants after the cached request = %d, want 1", got)
		}
		// The plain route still gets the session's token.
		s.do(c, http.MethodGet, "/api/plain", csrfHeader)
		if got := bearerOf(t, api, "/api/plain"); got != sess.AccessToken {
			t.Errorf("/api/ got another token than the session's")
		}
	})

	t.Run("via exchange: RFC 8693 with the session's token as subject", func(t *testing.T) {
		before := s.idp.TokenExchangeCalls()
		resp, body := s.do(c, http.MethodGet, "/reports/q", csrfHeader)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /reports/q = %d %s, want 200", resp.StatusCode, body)
		}
		tok := bearerOf(t, api, "/reports/")
		secrets["reports token"] = tok
		claims, _ := s.idp.VerifyJWT(t, tok)
		if claims["aud"] != "reports" || claims["sub"] != sess.Subject {
			t.Errorf("reports token claims %v, want aud reports, sub %s", claims, sess.Subject)
		}
		s.do(c, http.MethodGet, "/reports/q2", csrfHeader)
		if got := s.idp.TokenExchangeCalls() - before; got != 1 {
			t.Errorf("token exchanges = %d, want 1 (the second request is served from the cache)", got)
		}
		if set := resp.Header.Values("Set-Cookie"); len(set) != 0 {
			t.Errorf("an exchange set cookies %q, want the session untouched", set)
		}
	})

	t.Run("format jwt, mint: an RFC 9068 JWT signed with tokenhandler's key", func(t *testing.T) {
		before := s.idp.IntrospectionCalls()
		resp, body := s.do(c, http.MethodGet, "/minted/x", csrfHeader)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /minted/x = %d %s, want 200", resp.StatusCode, body)
		}
		tok := bearerOf(t, api, "/minted/")
		secrets["minted token"] = tok
		jr, err := http.Get(s.url + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		jb, _ := io.ReadAll(jr.Body)
		jr.Body.Close()
		if cc := jr.Header.Get("Cache-Control"); cc != "public, max-age=300" {
			t.Errorf("JWKS Cache-Control = %q", cc)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(jb, &set); err != nil || len(set.Keys) != 1 {
			t.Fatalf("JWKS = %s (%v), want one key", jb, err)
		}
		jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("minted token does not parse as ES256 JWS: %v", err)
		}
		if kid := jws.Signatures[0].Header.KeyID; kid != set.Keys[0].KeyID {
			t.Errorf("kid %q, want the published %q", kid, set.Keys[0].KeyID)
		}
		if typ := jws.Signatures[0].Header.ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
			t.Errorf("typ = %v, want at+jwt", typ)
		}
		payload, err := jws.Verify(set.Keys[0])
		if err != nil {
			t.Fatalf("minted token does not verify against the published key set: %v", err)
		}
		var claims map[string]any
		_ = json.Unmarshal(payload, &claims)
		if claims["iss"] != s.url || claims["sub"] != sess.Subject || claims["aud"] != api.srv.URL || claims["client_id"] != s.idp.ClientID || claims["jti"] == "" {
			t.Errorf("minted claims = %v, want iss %s, sub %s, aud %s (the upstream's origin), client_id %s", claims, s.url, sess.Subject, api.srv.URL, s.idp.ClientID)
		}
		exp := time.Unix(int64(claims["exp"].(float64)), 0)
		if exp.After(sess.AccessExpiry) || exp.After(time.Now().Add(2*time.Minute+time.Second)) {
			t.Errorf("minted exp %v is beyond the session token's %v or now + ttl", exp, sess.AccessExpiry)
		}
		s.do(c, http.MethodGet, "/minted/y", csrfHeader)
		if got := s.idp.IntrospectionCalls() - before; got != 1 {
			t.Errorf("introspections = %d, want 1 (the second request is served from the cache)", got)
		}
	})

	t.Run("format jwt, jwt_from introspection: the provider's signed introspection response", func(t *testing.T) {
		resp, body := s.do(c, http.MethodGet, "/phantom/x", csrfHeader)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /phantom/x = %d %s, want 200", resp.StatusCode, body)
		}
		tok := bearerOf(t, api, "/phantom/")
		secrets["phantom token"] = tok
		claims, typ := s.idp.VerifyJWT(t, tok)
		ti, _ := claims["token_introspection"].(map[string]any)
		if typ != "token-introspection+jwt" || ti["active"] != true || ti["sub"] != sess.Subject {
			t.Errorf("phantom token typ %q claims %v, want token-introspection+jwt, active, sub %s", typ, claims, sess.Subject)
		}
	})

	t.Run("the provider refuses the policy: 502 token_unavailable, session kept", func(t *testing.T) {
		for _, path := range []string{"/badtarget/x", "/badscope/x"} {
			resp, body := s.do(c, http.MethodGet, path, csrfHeader)
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), `"token_unavailable"`) {
				t.Errorf("GET %s = %d %s, want 502 token_unavailable", path, resp.StatusCode, body)
			}
		}
		if resp, body := s.do(c, http.MethodGet, "/api/still", csrfHeader); resp.StatusCode != http.StatusOK {
			t.Errorf("after token_unavailable GET /api/still = %d %s, want 200 (session kept)", resp.StatusCode, body)
		}
		if !strings.Contains(s.logs.String(), `"level":"ERROR","msg":"proxy: request refused"`) {
			t.Errorf("token_unavailable was not logged at error level")
		}
	})

	t.Run("provider down: 502 idp_unavailable", func(t *testing.T) {
		c2 := s.signIn("/")
		s.idp.SetDown(true)
		resp, body := s.do(c2, http.MethodGet, "/reports/down", csrfHeader)
		s.idp.SetDown(false)
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), `"idp_unavailable"`) {
			t.Errorf("GET /reports/down with the provider down = %d %s, want 502 idp_unavailable", resp.StatusCode, body)
		}
		if resp, body := s.do(c2, http.MethodGet, "/reports/up", csrfHeader); resp.StatusCode != http.StatusOK {
			t.Errorf("provider back: GET = %d %s, want 200", resp.StatusCode, body)
		}
	})

	t.Run("upstream 401 on a derived token: derive again once, retry once", func(t *testing.T) {
		c3 := s.signIn("/")
		s.do(c3, http.MethodGet, "/reports/warm", csrfHeader)
		old := bearerOf(t, api, "/reports/warm")
		api.mu.Lock()
		api.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
			if r.URL.Path == "/reports/401" && n == 1 {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				w.WriteHeader(http.StatusUnauthorized)
				return true
			}
			return false
		}
		api.mu.Unlock()
		defer func() { api.mu.Lock(); api.respond = nil; api.mu.Unlock() }()
		before := s.idp.TokenExchangeCalls()
		resp, body := s.do(c3, http.MethodGet, "/reports/401", csrfHeader)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /reports/401 = %d %s, want 200 after one retry", resp.StatusCode, body)
		}
		if got := s.idp.TokenExchangeCalls() - before; got != 1 {
			t.Errorf("token exchanges = %d, want 1", got)
		}
		if got := bearerOf(t, api, "/reports/401"); got == old {
			t.Errorf("the retry carried the refused token")
		}
	})

	s.assertNoLeak(secrets)
	for _, ck := range c.Jar.Cookies(mustURL(s.url + "/orders/")) {
		for what, v := range secrets {
			if strings.Contains(ck.Value, v) {
				t.Errorf("cookie %s holds the %s", ck.Name, what)
			}
		}
	}
}

// TestRouteTokenConcurrency: 50 concurrent requests of a new session to a derived route
// make exactly one derivation at the provider; a refresh of the session makes exactly
// one new one, and the old derived token is never sent again.
func TestRouteTokenConcurrency(t *testing.T) {
	s, api := routeTokenStack(t)
	for _, tc := range []struct {
		route string
		calls func() int64
	}{
		{"/orders/", func() int64 { return s.idp.GrantCalls(idptest.GrantRefreshToken) }},
		{"/reports/", s.idp.TokenExchangeCalls},
	} {
		t.Run(tc.route, func(t *testing.T) {
			c := s.signIn("/")
			before := tc.calls()
			s.burst(t, s.cookies(c, tc.route), tc.route, 50)
			if got := tc.calls() - before; got != 1 {
				t.Errorf("derivations for 50 concurrent requests = %d, want 1", got)
			}
			old := bearerOf(t, api, tc.route)

			// A refresh of the session (new access token): one new derivation.
			resp, _ := s.do(c, http.MethodPost, "/auth/refresh", nil)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("POST /auth/refresh = %d, want 204", resp.StatusCode)
			}
			before = tc.calls()
			api.reset()
			for i := range 3 {
				if resp, body := s.do(c, http.MethodGet, tc.route+"after"+string(rune('a'+i)), csrfHeader); resp.StatusCode != http.StatusOK {
					t.Fatalf("after the refresh GET = %d %s", resp.StatusCode, body)
				}
			}
			if got := tc.calls() - before; got != 1 {
				t.Errorf("derivations after the session's refresh = %d, want 1", got)
			}
			for _, r := range api.requests() {
				if strings.Contains(strings.Join(r.Auth, ""), old) {
					t.Errorf("%s was sent the derived token of before the refresh", r.URI)
				}
			}
		})
	}
}

// TestRouteTokenInvalidGrant: an exchange whose subject the provider refuses refreshes
// the session once; refused too, the session ends (401 session_expired); when the
// provider has forgotten the grant, both kinds of derivation end the session.
func TestRouteTokenInvalidGrant(t *testing.T) {
	s, api := routeTokenStack(t)
	c := s.signIn("/")
	sess, err := s.session(c, "/reports/")
	if err != nil {
		t.Fatal(err)
	}
	// Revoke the session's access token at the provider: the exchange's subject dies.
	disc := s.idp.Discovery(t)
	req, _ := http.NewRequest(http.MethodPost, disc["revocation_endpoint"].(string),
		strings.NewReader(url.Values{"token": {sess.AccessToken}, "token_type_hint": {"access_token"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(s.idp.ClientID, s.idp.ClientSecret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoking the access token: %v %v", resp, err)
	}
	// oidc-provider's revocation of an access token revokes its grant: the exchange is
	// refused (invalid_grant), the one refresh too, and the session ends.
	exchanges, refreshes := s.idp.TokenExchangeCalls(), s.idp.GrantCalls(idptest.GrantRefreshToken)
	resp, body := s.do(c, http.MethodGet, "/reports/after-revoke", csrfHeader)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"session_expired"`) {
		t.Fatalf("GET /reports/ with a revoked subject = %d %s, want 401 session_expired", resp.StatusCode, body)
	}
	if e, r := s.idp.TokenExchangeCalls()-exchanges, s.idp.GrantCalls(idptest.GrantRefreshToken)-refreshes; e != 1 || r != 1 {
		t.Errorf("exchanges, refreshes = %d, %d, want 1, 1 (refresh the session once, then give up)", e, r)
	}
	if len(api.requests()) != 0 {
		t.Errorf("the upstream was called: %v", api.requests())
	}

	// The provider forgets every grant: no derivation can succeed, the session ends.
	clients := map[string]*http.Client{"/reports/forgotten": s.signIn("/"), "/orders/forgotten": s.signIn("/")}
	s.idp.Restart(t)
	for path, c := range clients {
		resp, body := s.do(c, http.MethodGet, path, csrfHeader)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"session_expired"`) {
			t.Errorf("GET %s after the provider forgot the grant = %d %s, want 401 session_expired", path, resp.StatusCode, body)
		}
		if !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "Max-Age=0") {
			t.Errorf("GET %s: the ended session's cookies were not deleted", path)
		}
	}
}

// TestReplicasDeriveOnce: three replicas on one Redis, 60 concurrent requests of a new
// session to a derived route, spread over the replicas, make one derivation at the
// provider between them (one token exchange; one introspection for a minted JWT), and
// every request carries the same derived token.
func TestReplicasDeriveOnce(t *testing.T) {
	api := newUpstream(t)
	keyFile := signingKeyFile(t, "ec")
	routes, _ := json.Marshal([]map[string]any{
		{"path": "/reports/", "upstream": api.srv.URL, "token": map[string]any{"via": "exchange", "audience": []string{"reports"}}},
		{"path": "/minted/", "upstream": api.srv.URL, "token": map[string]any{"format": "jwt"}},
	})
	c := startCluster(t, clusterOptions{
		kind: idptest.KindOIDCProvider, store: "cookie", replicas: 3,
		idp: idptest.Options{
			AccessTokenTTL: time.Hour,
			Resources: []idptest.Resource{
				{Indicator: reportsResource, Audience: "reports", Scopes: []string{"reports:read"}, Format: idptest.FormatJWT, TTL: 10 * time.Minute, Exchange: true},
			},
		},
		env: map[string]string{"TH_ROUTES": string(routes), "TH_TOKEN_SIGNING_KEYS": keyFile},
	})
	for _, tc := range []struct {
		route string
		calls func() int64
	}{
		{"/reports/", c.idp.TokenExchangeCalls},
		{"/minted/", c.idp.IntrospectionCalls},
	} {
		t.Run(tc.route, func(t *testing.T) {
			b := c.signIn()
			cookies := c.cookies(b, tc.route)
			before := c.idp.TokenExchangeCalls() + c.idp.IntrospectionCalls()
			beforeRoute := tc.calls()
			api.reset()
			const n = 60
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, body, err := tryCall(c.nodes[i%3], http.MethodGet, tc.route+"item", cookies)
					if err != nil || resp.StatusCode != http.StatusOK {
						t.Errorf("request %d at replica %d: %v %s", i, i%3, err, body)
					}
				}()
			}
			wg.Wait()
			if got := tc.calls() - beforeRoute; got != 1 {
				t.Errorf("%d concurrent requests over 3 replicas: %d derivations at the provider, want 1", n, got)
			}
			if got := c.idp.TokenExchangeCalls() + c.idp.IntrospectionCalls() - before; got != 1 {
				t.Errorf("provider calls for the derivation: %d, want 1", got)
			}
			reqs := api.requests()
			if len(reqs) != n {
				t.Fatalf("the upstream saw %d requests, want %d", len(reqs), n)
			}
			for _, r := range reqs {
				if len(r.Auth) != 1 || r.Auth[0] != reqs[0].Auth[0] || r.Auth[0] == "" {
					t.Fatalf("the upstream saw different tokens for one session and route")
				}
			}
		})
	}
}
