package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/examples/api"
	"github.com/tokenhandler/tokenhandler/josekey"
)

// TestRouteTokenDPoP runs token.dpop against panva oidc-provider with oidc.dpop: true and
// server nonces at the token endpoint: a derived token is DPoP-bound by default (its
// derivation proves the DPoP key, the provider binds it, cnf.jkt = the key's thumbprint,
// and the upstream gets "Authorization: DPoP" with a proof of it), and token.dpop: false
// asks for a bearer one (no proof at the derivation, no cnf, "Bearer" upstream). The
// exchange of a bound session token without a proof is refused by the provider's
// token-exchange grant (it asks for the subject token's proof): the contract's
// invalid_grant row for exchange, refresh once, then the session ends.
func TestRouteTokenDPoP(t *testing.T) {
	dpopKey, dpopPath := writePEM(t, josekey.EdDSA)
	jkt := dpopKey.Thumbprint()
	a := newUpstream(t)
	routes := []map[string]any{
		{"path": "/api/", "upstream": a.srv.URL},
		{"path": "/orders/", "upstream": a.srv.URL, "token": map[string]any{"via": "refresh", "resource": []string{ordersResource}, "scope": "orders:read"}},
		{"path": "/orders-bearer/", "upstream": a.srv.URL, "token": map[string]any{"via": "refresh", "resource": []string{ordersResource}, "scope": "orders:read", "dpop": false}},
		{"path": "/reports/", "upstream": a.srv.URL, "token": map[string]any{"via": "exchange", "audience": []string{"reports"}}},
		{"path": "/reports-bearer/", "upstream": a.srv.URL, "token": map[string]any{"via": "exchange", "audience": []string{"reports"}, "dpop": false}},
		{"path": "/phantom/", "upstream": a.srv.URL, "token": map[string]any{"format": "jwt", "jwt_from": "introspection", "dpop": false}},
	}
	rj, _ := json.Marshal(routes)
	s := startStack(t, stackOptions{
		kind: idptest.KindOIDCProvider,
		idp: idptest.Options{
			AccessTokenTTL: time.Hour,
			DPoPNonce:      true,
			Resources: []idptest.Resource{
				{Indicator: ordersResource, Scopes: []string{"orders:read"}, Format: idptest.FormatJWT, TTL: 10 * time.Minute},
				{Indicator: reportsResource, Audience: "reports", Scopes: []string{"reports:read"}, Format: idptest.FormatJWT, TTL: 10 * time.Minute, Exchange: true},
			},
		},
		env: map[string]string{
			"TH_ROUTES":        string(rj),
			"TH_OIDC_SCOPES":   "openid,profile,email,offline_access,orders:read",
			"TH_OIDC_DPOP":     "true",
			"TH_DPOP_KEY_FILE": dpopPath,
		},
	})

	// The upstream checks every DPoP proof as an RFC 9449 resource server does (the
	// example API's verifier: signature, htm, htu, iat, ath of the token presented, the
	// key's thumbprint = jkt, no jti twice), records the DPoP header of every request,
	// and asks for a nonce once on /orders/nonce.
	verifier := &api.DPoPVerifier{}
	var mu sync.Mutex
	var proofErrs []string
	proofs := map[string]string{} // request URI -> its DPoP header
	a.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		mu.Lock()
		defer mu.Unlock()
		proofs[r.RequestURI] = r.Header.Get("DPoP")
		tok, isDPoP := api.DPoPToken(r.Header.Get("Authorization"))
		if !isDPoP {
			return false // a bearer request: checked by the test from what was seen
		}
		if r.URL.Path == "/orders/nonce" && n == 1 {
			w.Header().Set("DPoP-Nonce", "upstream-nonce-1")
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
		err := verifier.Verify(r.Header.Get("DPoP"), r.Method, a.srv.URL+r.URL.EscapedPath(), tok, jkt)
		if err == nil && r.URL.Path == "/orders/nonce" {
			jws, _ := jose.ParseSigned(r.Header.Get("DPoP"), []jose.SignatureAlgorithm{jose.EdDSA})
			var c struct{ Nonce string }
			_ = json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c)
			if c.Nonce != "upstream-nonce-1" {
				err = errString("the nonce retry's proof lacks the upstream's nonce")
			}
		}
		if err != nil {
			proofErrs = append(proofErrs, r.RequestURI+": "+err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
		return false
	}
	// sent returns the Authorization scheme and token and the DPoP header of the last
	// request the upstream saw on uri.
	sent := func(t *testing.T, uri string) (scheme, token, proof string) {
		t.Helper()
		reqs := a.requests()
		for i := len(reqs) - 1; i >= 0; i-- {
			if reqs[i].URI == uri {
				if len(reqs[i].Auth) != 1 {
					t.Fatalf("upstream %s Authorization = %q, want one", uri, reqs[i].Auth)
				}
				scheme, token, _ = strings.Cut(reqs[i].Auth[0], " ")
				mu.Lock()
				defer mu.Unlock()
				return scheme, token, proofs[uri]
			}
		}
		t.Fatalf("upstream saw no request on %s", uri)
		return "", "", ""
	}
	cnfJKT := func(claims map[string]any) string {
		cnf, _ := claims["cnf"].(map[string]any)
		j, _ := cnf["jkt"].(string)
		return j
	}

	c := s.signIn("/")
	sess, err := s.session(c, "/orders/")
	if err != nil || sess.TokenType != "DPoP" {
		t.Fatalf("session = %v, %v; want DPoP-bound tokens", sess, err)
	}
	secrets := map[string]string{"session access token": sess.AccessToken}

	t.Run("via refresh, bound by oidc.dpop's default", func(t *testing.T) {
		refreshes, dpopCalls := s.idp.GrantCalls(idptest.GrantRefreshToken), s.idp.DPoPTokenCalls()
		tokenCalls := s.idp.TokenCalls()
		for _, uri := range []string{"/orders/a", "/orders/b"} {
			if resp, body := s.do(c, http.MethodGet, uri, csrfHeader); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d %s (proof problems %v)", uri, resp.StatusCode, body, proofErrs)
			}
		}
		if got := s.idp.GrantCalls(idptest.GrantRefreshToken) - refreshes; got != 1 {
			t.Errorf("refresh-token grants = %d, want 1 (the second request is cached)", got)
		}
		// Every token call of the derivation, the nonce retry included, carried a proof.
		if calls, proved := s.idp.TokenCalls()-tokenCalls, s.idp.DPoPTokenCalls()-dpopCalls; calls == 0 || proved != calls {
			t.Errorf("token calls of the derivation = %d, with a DPoP proof %d; want all", calls, proved)
		}
		scheme, tok, proof := sent(t, "/orders/b")
		secrets["orders token"] = tok
		if scheme != "DPoP" || proof == "" || tok == sess.AccessToken {
			t.Fatalf("upstream got %s (proof %v), the session's token %v; want DPoP, a proof and the resource's token", scheme, proof != "", tok == sess.AccessToken)
		}
		claims, _ := s.idp.VerifyJWT(t, tok)
		if claims["aud"] != ordersResource || cnfJKT(claims) != jkt {
			t.Errorf("orders token aud %v, cnf.jkt %q; want %s and the DPoP key's %s", claims["aud"], cnfJKT(claims), ordersResource, jkt)
		}
		// The upstream asks for its nonce: one retry with it, the same derived token.
		if resp, body := s.do(c, http.MethodGet, "/orders/nonce", csrfHeader); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /orders/nonce = %d %s (proof problems %v)", resp.StatusCode, body, proofErrs)
		}
		if _, again, _ := sent(t, "/orders/nonce"); again != tok {
			t.Errorf("the nonce retry sent another token")
		}
		if got := s.idp.GrantCalls(idptest.GrantRefreshToken) - refreshes; got != 1 {
			t.Errorf("refresh-token grants after a nonce challenge = %d, want 1", got)
		}
	})

	t.Run("via refresh, token.dpop false: a bearer token", func(t *testing.T) {
		tokenCalls, dpopCalls := s.idp.TokenCalls(), s.idp.DPoPTokenCalls()
		if resp, body := s.do(c, http.MethodGet, "/orders-bearer/a", csrfHeader); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /orders-bearer/a = %d %s", resp.StatusCode, body)
		}
		if calls, proved := s.idp.TokenCalls()-tokenCalls, s.idp.DPoPTokenCalls()-dpopCalls; calls != 1 || proved != 0 {
			t.Errorf("token calls = %d, with a DPoP proof %d; want 1 without", calls, proved)
		}
		scheme, tok, proof := sent(t, "/orders-bearer/a")
		secrets["unbound orders token"] = tok
		if scheme != "Bearer" || proof != "" {
			t.Fatalf("upstream got %s with a DPoP header %v, want Bearer and none", scheme, proof != "")
		}
		claims, _ := s.idp.VerifyJWT(t, tok)
		if claims["aud"] != ordersResource || claims["cnf"] != nil {
			t.Errorf("unbound orders token aud %v, cnf %v; want %s and no cnf", claims["aud"], claims["cnf"], ordersResource)
		}
		// The session's own token stays bound.
		if ns, err := s.session(c, "/orders/"); err != nil || ns.TokenType != "DPoP" {
			t.Errorf("session after the unbound derivation = %v, %v; want still DPoP", ns, err)
		}
		if resp, _ := s.do(c, http.MethodGet, "/api/plain", csrfHeader); resp.StatusCode != http.StatusOK {
			t.Errorf("GET /api/plain = %d", resp.StatusCode)
		}
		if scheme, tok, proof := sent(t, "/api/plain"); scheme != "DPoP" || tok != sess.AccessToken || proof == "" {
			t.Errorf("the plain route got %s with a proof %v, want the session's token as DPoP", scheme, proof != "")
		}
	})

	t.Run("via exchange, bound", func(t *testing.T) {
		exchanges, dpopCalls := s.idp.TokenExchangeCalls(), s.idp.DPoPTokenCalls()
		if resp, body := s.do(c, http.MethodGet, "/reports/a", csrfHeader); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /reports/a = %d %s (proof problems %v)", resp.StatusCode, body, proofErrs)
		}
		if e, d := s.idp.TokenExchangeCalls()-exchanges, s.idp.DPoPTokenCalls()-dpopCalls; e == 0 || d != e {
			t.Errorf("token exchanges = %d, with a DPoP proof %d; want all", e, d)
		}
		scheme, tok, proof := sent(t, "/reports/a")
		secrets["reports token"] = tok
		claims, _ := s.idp.VerifyJWT(t, tok)
		if scheme != "DPoP" || proof == "" || claims["aud"] != "reports" || cnfJKT(claims) != jkt {
			t.Errorf("upstream got %s (proof %v), aud %v, cnf.jkt %q; want DPoP, aud reports, cnf.jkt %s", scheme, proof != "", claims["aud"], cnfJKT(claims), jkt)
		}
	})

	t.Run("format jwt from introspection of the bound session token: Bearer", func(t *testing.T) {
		if resp, body := s.do(c, http.MethodGet, "/phantom/a", csrfHeader); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /phantom/a = %d %s", resp.StatusCode, body)
		}
		scheme, tok, proof := sent(t, "/phantom/a")
		secrets["phantom token"] = tok
		claims, typ := s.idp.VerifyJWT(t, tok)
		ti, _ := claims["token_introspection"].(map[string]any)
		if scheme != "Bearer" || proof != "" || typ != "token-introspection+jwt" || ti["active"] != true {
			t.Errorf("upstream got %s (proof %v), typ %q, introspection %v; want Bearer, no proof, an active token's signed introspection", scheme, proof != "", typ, ti)
		}
	})

	t.Run("via exchange, token.dpop false: the provider wants the subject's proof", func(t *testing.T) {
		c2 := s.signIn("/")
		exchanges, refreshes := s.idp.TokenExchangeCalls(), s.idp.GrantCalls(idptest.GrantRefreshToken)
		before := len(a.requests())
		resp, body := s.do(c2, http.MethodGet, "/reports-bearer/a", csrfHeader)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"session_expired"`) {
			t.Fatalf("GET /reports-bearer/a = %d %s, want 401 session_expired", resp.StatusCode, body)
		}
		if e, r := s.idp.TokenExchangeCalls()-exchanges, s.idp.GrantCalls(idptest.GrantRefreshToken)-refreshes; e != 2 || r != 1 {
			t.Errorf("exchanges, refreshes = %d, %d; want 2, 1 (refresh the session once, then give up)", e, r)
		}
		if got := len(a.requests()) - before; got != 0 {
			t.Errorf("the upstream was called %d times", got)
		}
	})

	mu.Lock()
	if len(proofErrs) > 0 {
		t.Errorf("the upstream refused proofs: %v", proofErrs)
	}
	mu.Unlock()
	s.assertNoLeak(secrets)
}

// TestRouteTokenDPoPWithoutSessionDPoP: token.dpop: true with oidc.dpop off and no
// dpop.key_file. Start-up generates a key for the route, whose derived token is bound to
// it and sent as DPoP with a proof, while the session's tokens and the plain route stay
// Bearer and the sign-in and the session's refresh carry no proof.
func TestRouteTokenDPoPWithoutSessionDPoP(t *testing.T) {
	a := newUpstream(t)
	routes := []map[string]any{
		{"path": "/api/", "upstream": a.srv.URL},
		{"path": "/orders/", "upstream": a.srv.URL, "token": map[string]any{"via": "refresh", "resource": []string{ordersResource}, "scope": "orders:read", "dpop": true}},
	}
	rj, _ := json.Marshal(routes)
	s := startStack(t, stackOptions{
		kind: idptest.KindOIDCProvider,
		idp: idptest.Options{
			AccessTokenTTL: time.Hour,
			Resources:      []idptest.Resource{{Indicator: ordersResource, Scopes: []string{"orders:read"}, Format: idptest.FormatJWT, TTL: 10 * time.Minute}},
		},
		env: map[string]string{"TH_ROUTES": string(rj), "TH_OIDC_SCOPES": "openid,profile,email,offline_access,orders:read"},
	})
	var mu sync.Mutex
	proofs := map[string]string{} // request URI -> its DPoP header
	a.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		mu.Lock()
		proofs[r.RequestURI] = r.Header.Get("DPoP")
		mu.Unlock()
		return false
	}
	c := s.signIn("/")
	if got := s.idp.DPoPTokenCalls(); got != 0 {
		t.Errorf("token calls with a DPoP proof at sign-in = %d, want 0", got)
	}
	sess, err := s.session(c, "/orders/")
	if err != nil || sess.TokenType != "" {
		t.Fatalf("session = %v, %v; want bearer tokens", sess, err)
	}
	secrets := map[string]string{"session access token": sess.AccessToken}
	for _, uri := range []string{"/orders/a", "/orders/b", "/api/plain"} {
		if resp, body := s.do(c, http.MethodGet, uri, csrfHeader); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d %s", uri, resp.StatusCode, body)
		}
	}
	if got := s.idp.DPoPTokenCalls(); got != 1 {
		t.Errorf("token calls with a DPoP proof = %d, want 1 (the derivation)", got)
	}
	// Each request's proof, checked as an RFC 9449 resource server does, against the
	// key the provider bound the token to (cnf.jkt).
	verifier := &api.DPoPVerifier{}
	for _, r := range a.requests() {
		scheme, tok, _ := strings.Cut(strings.Join(r.Auth, ","), " ")
		secrets[r.URI+" token"] = tok
		mu.Lock()
		proof := proofs[r.URI]
		mu.Unlock()
		if r.URI == "/api/plain" {
			if scheme != "Bearer" || tok != sess.AccessToken || proof != "" {
				t.Errorf("%s: %s with a DPoP header %v, want the session's token as Bearer and none", r.URI, scheme, proof != "")
			}
			continue
		}
		claims, _ := s.idp.VerifyJWT(t, tok)
		cnf, _ := claims["cnf"].(map[string]any)
		jkt, _ := cnf["jkt"].(string)
		if scheme != "DPoP" || claims["aud"] != ordersResource || jkt == "" {
			t.Errorf("%s: %s, aud %v, cnf.jkt %q; want DPoP, aud %s, a cnf.jkt", r.URI, scheme, claims["aud"], jkt, ordersResource)
			continue
		}
		if err := verifier.Verify(proof, r.Method, a.srv.URL+r.URI, tok, jkt); err != nil {
			t.Errorf("%s: %v", r.URI, err)
		}
	}
	// The session's own refresh stays without a proof.
	before := s.idp.DPoPTokenCalls()
	if resp, _ := s.do(c, http.MethodPost, "/auth/refresh", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /auth/refresh = %d", resp.StatusCode)
	}
	if got := s.idp.DPoPTokenCalls() - before; got != 0 {
		t.Errorf("the session's refresh carried %d DPoP proofs, want 0", got)
	}
	if !strings.Contains(s.logs.String(), "DPoP on for the routes whose token.dpop is true") {
		t.Error("start-up did not say it made a DPoP key for the routes")
	}
	s.assertNoLeak(secrets)
}
