package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
)

// ordersAudience is the aud of the JWTs minted for the route /minted/ at Hydra.
const ordersAudience = "https://orders.test"

// hydraMintStack is Hydra issuing opaque access tokens (its default strategy in
// production) and tokenhandler with a plain route /api/ and /minted/, whose upstream
// gets a JWT tokenhandler mints from Hydra's introspection (format jwt, jwt_from mint,
// via session) at Hydra's admin introspection endpoint, which Hydra's discovery does not
// name (oidc.introspection_endpoint).
func hydraMintStack(t *testing.T) (*stack, *upstream) {
	api := newUpstream(t)
	routes, _ := json.Marshal([]map[string]any{
		{"path": "/api/", "upstream": api.srv.URL},
		{"path": "/minted/", "upstream": api.srv.URL, "token": map[string]any{"format": "jwt", "jwt_from": "mint", "audience": []string{ordersAudience}}},
	})
	keyFile := signingKeyFile(t, "ec")
	s := startStack(t, stackOptions{
		kind: idptest.KindHydra,
		// The access token outlives no minted JWT's cap: exp must be the token's own.
		idp: idptest.Options{OpaqueAccessTokens: true, AccessTokenTTL: 5 * time.Minute},
		env: map[string]string{
			"TH_ROUTES":             string(routes),
			"TH_TOKEN_SIGNING_KEYS": keyFile,
			"TH_TOKEN_SIGNING_TTL":  "10m",
		},
		idpEnv: func(p *idptest.Provider) map[string]string {
			return map[string]string{"TH_OIDC_INTROSPECTION_ENDPOINT": p.AdminIntrospectionURL()}
		},
	})
	if _, ok := s.idp.Discovery(t)["introspection_endpoint"]; ok {
		t.Fatal("Hydra's discovery names an introspection_endpoint: this test proves oidc.introspection_endpoint, which is then not needed")
	}
	return s, api
}

// tokenhandlerKeys fetches tokenhandler's published key set over HTTP, as an API would.
func tokenhandlerKeys(t *testing.T, s *stack) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(s.url + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil || resp.StatusCode != http.StatusOK || len(set.Keys) == 0 {
		t.Fatalf("GET /.well-known/jwks.json = %d %s (%v), want a key set", resp.StatusCode, b, err)
	}
	return set
}

// verifyMinted checks tok's signature (alg) against set and its RFC 9068 header, and
// returns its claims.
func verifyMinted(t *testing.T, set jose.JSONWebKeySet, tok string, alg jose.SignatureAlgorithm) map[string]any {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{alg})
	if err != nil {
		t.Fatalf("the upstream's token is not an %s JWS: %v", alg, err)
	}
	h := jws.Signatures[0].Header
	if typ := h.ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
		t.Errorf("typ = %v, want at+jwt", typ)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in tokenhandler's published key set", h.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("the minted JWT does not verify against tokenhandler's published key: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func unixClaim(c map[string]any, name string) time.Time {
	f, _ := c[name].(float64)
	return time.Unix(int64(f), 0)
}

// TestHydraMint: opaque access tokens of Ory Hydra become JWTs minted by tokenhandler
// from Hydra's admin introspection: 20 concurrent requests of a session make exactly one
// introspection; a refresh of the session makes one new introspection and a new JWT, and
// the old JWT is never sent again; no minted JWT reaches a cookie, a response or the log.
func TestHydraMint(t *testing.T) {
	s, api := hydraMintStack(t)
	c := s.signIn("/")
	sess, err := s.session(c, "/minted/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sess.AccessToken, "ory_at_") {
		t.Fatalf("Hydra's access token %.10q... is not opaque", sess.AccessToken)
	}
	if sess.Subject != s.idp.Subject {
		t.Fatalf("the session's subject (the ID token's sub) = %q, want %q", sess.Subject, s.idp.Subject)
	}
	secrets := map[string]string{"session access token": sess.AccessToken, "refresh token": sess.RefreshToken}
	keys := tokenhandlerKeys(t, s)

	// 20 concurrent requests of the session: one introspection at Hydra, one JWT.
	introspections, grants := s.idp.IntrospectionCalls(), s.idp.TokenCalls()
	s.burst(t, s.cookies(c, "/minted/"), "/minted/", 20)
	if got := s.idp.IntrospectionCalls() - introspections; got != 1 {
		t.Errorf("introspections at Hydra for 20 concurrent requests = %d, want 1", got)
	}
	if got := s.idp.TokenCalls() - grants; got != 0 {
		t.Errorf("token-endpoint calls for 20 requests = %d, want 0 (via session spends no grant)", got)
	}
	reqs := api.requests()
	if len(reqs) != 20 {
		t.Fatalf("the upstream saw %d requests, want 20", len(reqs))
	}
	first := bearerOf(t, api, "/minted/")
	for _, r := range reqs {
		if len(r.Auth) != 1 || r.Auth[0] != "Bearer "+first {
			t.Errorf("%s carried %d Authorization headers or another token than the one minted JWT", r.URI, len(r.Auth))
		}
	}
	secrets["first minted JWT"] = first

	claims := verifyMinted(t, keys, first, jose.ES256)
	hydraView := s.idp.Introspect(t, sess.AccessToken)
	if !hydraView.Active || hydraView.Expiry == 0 {
		t.Fatalf("Hydra's introspection of the session's token = %+v, want active with exp", hydraView)
	}
	exp := unixClaim(claims, "exp")
	if exp.After(time.Unix(hydraView.Expiry, 0)) {
		t.Errorf("minted exp %v is beyond the opaque token's %v", exp, time.Unix(hydraView.Expiry, 0))
	}
	// token_signing.ttl (10m) is longer than the token's life (5m): exp is the token's.
	if !exp.Equal(time.Unix(hydraView.Expiry, 0)) {
		t.Errorf("minted exp %v, want the opaque token's own %v (the shorter of it and now + ttl)", exp, time.Unix(hydraView.Expiry, 0))
	}
	if claims["iss"] != s.url || claims["sub"] != sess.Subject || claims["aud"] != ordersAudience ||
		claims["client_id"] != s.idp.ClientID || claims["jti"] == nil || claims["jti"] == "" {
		t.Errorf("minted claims = %v, want iss %s (public_url), sub %s, aud %s, client_id %s, a jti",
			claims, s.url, sess.Subject, ordersAudience, s.idp.ClientID)
	}
	if scope, _ := claims["scope"].(string); scope != hydraView.Scope {
		t.Errorf("minted scope %q, want Hydra's %q", scope, hydraView.Scope)
	}
	if iat := unixClaim(claims, "iat"); iat.After(time.Now().Add(time.Second)) || exp.Before(iat) {
		t.Errorf("minted iat %v, exp %v", iat, exp)
	}

	// The plain route still gets Hydra's opaque token, untouched.
	if resp, body := s.do(c, http.MethodGet, "/api/plain", csrfHeader); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/plain = %d %s", resp.StatusCode, body)
	}
	if got := bearerOf(t, api, "/api/plain"); got != sess.AccessToken {
		t.Errorf("/api/ got another token than the session's")
	}

	// A refresh of the session: a new opaque token, one new introspection, a new JWT; the
	// old JWT is never sent again.
	refreshes := s.idp.RefreshCalls()
	if resp, _ := s.do(c, http.MethodPost, "/auth/refresh", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /auth/refresh = %d, want 204", resp.StatusCode)
	}
	if got := s.idp.RefreshCalls() - refreshes; got != 1 {
		t.Errorf("refresh-token grants for one refresh = %d, want 1", got)
	}
	refreshed, err := s.session(c, "/minted/")
	if err != nil || refreshed.AccessToken == sess.AccessToken {
		t.Fatalf("after the refresh the session = %v, new access token %v", err, refreshed != nil && refreshed.AccessToken != sess.AccessToken)
	}
	secrets["refreshed access token"], secrets["rotated refresh token"] = refreshed.AccessToken, refreshed.RefreshToken
	introspections = s.idp.IntrospectionCalls()
	api.reset()
	for i := range 3 {
		if resp, body := s.do(c, http.MethodGet, "/minted/after"+string(rune('a'+i)), csrfHeader); resp.StatusCode != http.StatusOK {
			t.Fatalf("after the refresh GET = %d %s", resp.StatusCode, body)
		}
	}
	if got := s.idp.IntrospectionCalls() - introspections; got != 1 {
		t.Errorf("introspections after the session's refresh = %d, want 1", got)
	}
	second := bearerOf(t, api, "/minted/after")
	secrets["second minted JWT"] = second
	for _, r := range api.requests() {
		if strings.Contains(strings.Join(r.Auth, ""), first) {
			t.Errorf("%s was sent the JWT minted before the refresh", r.URI)
		}
	}
	claims2 := verifyMinted(t, keys, second, jose.ES256)
	if claims2["jti"] == claims["jti"] {
		t.Errorf("the JWT minted after the refresh has the old jti %v", claims["jti"])
	}
	if hv := s.idp.Introspect(t, refreshed.AccessToken); unixClaim(claims2, "exp").After(time.Unix(hv.Expiry, 0)) || claims2["sub"] != sess.Subject {
		t.Errorf("the second JWT's exp %v is beyond its token's %v, or sub %v is not the session's", unixClaim(claims2, "exp"), time.Unix(hv.Expiry, 0), claims2["sub"])
	}
	t.Logf("Hydra: %d admin introspections, %d token-endpoint calls (1 code, %d refresh) in all",
		s.idp.IntrospectionCalls(), s.idp.TokenCalls(), s.idp.RefreshCalls())

	// No minted JWT (nor any token) in a response, a cookie or the log.
	s.assertNoLeak(secrets)
	for _, ck := range c.Jar.Cookies(mustURL(s.url + "/minted/")) {
		for what, v := range secrets {
			if strings.Contains(ck.Value, v) {
				t.Errorf("cookie %s holds the %s", ck.Name, what)
			}
		}
	}
	opened, _ := json.Marshal(refreshed)
	for _, what := range []string{"first minted JWT", "second minted JWT"} {
		if strings.Contains(string(opened), secrets[what]) {
			t.Errorf("the session in the cookies holds the %s", what)
		}
	}
}

// TestHydraRefreshMint: format jwt via refresh at Hydra works, at a price the README
// warns about. The first request makes one refresh grant and one introspection, the
// rotated refresh token reaches the browser, the upstream gets a minted JWT; a second
// request is served from the cache. But Hydra ignores scope on a refresh (the token is
// not narrowed) and, as every fosite refresh does, revokes the access tokens issued
// before it, the session's own included: its plain routes then get a dead token until
// a reactive refresh. At Hydra, mint via session.
func TestHydraRefreshMint(t *testing.T) {
	api := newUpstream(t)
	routes, _ := json.Marshal([]map[string]any{
		{"path": "/api/", "upstream": api.srv.URL},
		{"path": "/r/", "upstream": api.srv.URL, "token": map[string]any{"via": "refresh", "scope": "openid offline_access", "format": "jwt"}},
	})
	keyFile := signingKeyFile(t, "ed25519")
	s := startStack(t, stackOptions{
		kind: idptest.KindHydra,
		idp:  idptest.Options{OpaqueAccessTokens: true, AccessTokenTTL: 5 * time.Minute},
		env:  map[string]string{"TH_ROUTES": string(routes), "TH_TOKEN_SIGNING_KEYS": keyFile},
		idpEnv: func(p *idptest.Provider) map[string]string {
			return map[string]string{"TH_OIDC_INTROSPECTION_ENDPOINT": p.AdminIntrospectionURL()}
		},
	})
	c := s.signIn("/")
	sess, err := s.session(c, "/r/")
	if err != nil {
		t.Fatal(err)
	}
	refreshes, introspections := s.idp.RefreshCalls(), s.idp.IntrospectionCalls()
	resp, body := s.do(c, http.MethodGet, "/r/x", csrfHeader)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /r/x = %d %s", resp.StatusCode, body)
	}
	if r, i := s.idp.RefreshCalls()-refreshes, s.idp.IntrospectionCalls()-introspections; r != 1 || i != 1 {
		t.Errorf("refresh grants, introspections for the first request = %d, %d, want 1, 1", r, i)
	}
	if !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "th-rt") {
		t.Errorf("the rotated refresh token did not reach the browser: %q", resp.Header.Values("Set-Cookie"))
	}
	tok := bearerOf(t, api, "/r/x")
	claims := verifyMinted(t, tokenhandlerKeys(t, s), tok, jose.EdDSA)
	if claims["sub"] != sess.Subject || claims["aud"] != api.srv.URL || claims["iss"] != s.url {
		t.Errorf("minted claims = %v, want sub %s, aud %s (the upstream's origin), iss %s", claims, sess.Subject, api.srv.URL, s.url)
	}
	if resp, _ := s.do(c, http.MethodGet, "/r/y", csrfHeader); resp.StatusCode != http.StatusOK || bearerOf(t, api, "/r/y") != tok {
		t.Errorf("second GET = %d, or another token: want the cached JWT", resp.StatusCode)
	}
	if r, i := s.idp.RefreshCalls()-refreshes, s.idp.IntrospectionCalls()-introspections; r != 1 || i != 1 {
		t.Errorf("refresh grants, introspections after the cached request = %d, %d, want still 1, 1", r, i)
	}
	s.assertNoLeak(map[string]string{"minted JWT": tok, "session access token": sess.AccessToken})

	// What README warns about: Hydra's answers, as this Hydra gives them.
	if scope, _ := claims["scope"].(string); scope == "openid offline_access" {
		t.Errorf("Hydra narrowed the scope on the refresh to %q: README's Hydra note is out of date", scope)
	}
	if s.idp.Introspect(t, sess.AccessToken).Active {
		t.Errorf("Hydra kept the session's access token active after a refresh of its grant: README's Hydra note is out of date")
	}
}
