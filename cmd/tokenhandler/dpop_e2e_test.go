package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/examples/api"
	"github.com/tokenhandler/tokenhandler/josekey"
)

// writePEM writes a fresh key of alg to a file and returns the key and the path.
func writePEM(t *testing.T, alg string) (*josekey.Key, string) {
	t.Helper()
	k, err := josekey.Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := k.PEM()
	p := filepath.Join(t.TempDir(), alg+".pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return k, p
}

// TestFAPIClientAgainstOIDCProvider signs in, refreshes, calls the API and signs out
// against panva oidc-provider configured as a FAPI 2.0 server: PAR required,
// private_key_jwt, DPoP-bound tokens only, a server nonce in every proof.
func TestFAPIClientAgainstOIDCProvider(t *testing.T) {
	clientKey, clientPath := writePEM(t, josekey.PS256)
	dpopKey, dpopPath := writePEM(t, josekey.EdDSA)
	var reg jose.JSONWebKey
	if err := reg.UnmarshalJSON(clientKey.RegistrationJWK()); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, stackOptions{
		kind: idptest.KindOIDCProvider,
		idp: idptest.Options{
			TokenEndpointAuthMethod: "private_key_jwt",
			ClientJWKS:              &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{reg}},
			DPoP:                    idptest.DPoPRequired,
			DPoPNonce:               true,
			PARRequired:             true,
		},
		env: map[string]string{
			"TH_OIDC_CLIENT_SECRET":     "",
			"TH_OIDC_TOKEN_AUTH_METHOD": "private_key_jwt",
			"TH_OIDC_CLIENT_KEY_FILE":   clientPath,
			"TH_OIDC_PAR":               "required",
			"TH_OIDC_DPOP":              "true",
			"TH_DPOP_KEY_FILE":          dpopPath,
		},
	})
	jkt := dpopKey.Thumbprint()
	csrf := map[string]string{"X-CSRF": "1"}

	// The API checks every proof as RFC 9449 asks (the example API's verifier: its
	// replay cache refuses a repeated jti), and asks for a nonce once on /api/nonce.
	verifier := &api.DPoPVerifier{}
	var mu sync.Mutex
	var proofErrs []error
	jtis := map[string]bool{}
	s.api.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		tok, ok := api.DPoPToken(r.Header.Get("Authorization"))
		var err error
		if !ok {
			err = errString("Authorization is not DPoP: " + r.Header.Get("Authorization")[:min(10, len(r.Header.Get("Authorization")))])
		} else if r.URL.Path == "/api/nonce" && n == 1 {
			w.Header().Set("DPoP-Nonce", "upstream-nonce-1")
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
			w.WriteHeader(http.StatusUnauthorized)
			return true
		} else {
			err = verifier.Verify(r.Header.Get("DPoP"), r.Method, s.api.srv.URL+r.URL.EscapedPath(), tok, jkt)
		}
		if err == nil {
			jws, _ := jose.ParseSigned(r.Header.Get("DPoP"), []jose.SignatureAlgorithm{jose.EdDSA})
			var c struct{ JTI, Nonce string }
			_ = json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c)
			mu.Lock()
			if jtis[c.JTI] {
				err = errString("jti repeated")
			}
			jtis[c.JTI] = true
			if r.URL.Path == "/api/nonce" && c.Nonce != "upstream-nonce-1" {
				err = errString("the retry lacks the upstream's nonce")
			}
			mu.Unlock()
		}
		if err != nil {
			mu.Lock()
			proofErrs = append(proofErrs, err)
			mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
		return false
	}

	// Sign-in: the browser's authorization requests carry client_id and request_uri only.
	c := s.signIn("/")
	authz := s.idp.AuthorizationRequests()
	if len(authz) == 0 {
		t.Fatal("no authorization request reached the provider")
	}
	for _, q := range authz {
		if len(q) == 0 {
			continue // a resumed interaction
		}
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range q {
				if !yield(k) {
					return
				}
			}
		})
		if !slices.Equal(keys, []string{"client_id", "request_uri"}) {
			t.Errorf("authorization request parameters = %v, want client_id and request_uri only", keys)
		}
	}
	sess, err := s.session(c, "/auth/refresh")
	if err != nil || sess.TokenType != "DPoP" {
		t.Fatalf("session = %v, %v; want a DPoP-bound token", sess, err)
	}
	in := s.idp.Introspect(t, sess.AccessToken)
	if !in.Active || in.TokenType != "DPoP" || in.Cnf.JKT != jkt {
		t.Fatalf("introspection after login = active %v, token_type %q, cnf.jkt %q; want DPoP bound to %s", in.Active, in.TokenType, in.Cnf.JKT, jkt)
	}
	if resp, body := s.do(c, http.MethodGet, "/auth/userinfo", nil); resp.StatusCode != 200 {
		t.Errorf("/auth/userinfo = %d %s (DPoP with the provider's nonce)", resp.StatusCode, body)
	}

	// Thousands of proxied calls: every proof passes the full check, no jti repeats.
	const calls = 2000
	for i := range calls {
		if resp, body := s.do(c, http.MethodGet, "/api/items/"+strconv.Itoa(i)+"?q=1", csrf); resp.StatusCode != 200 {
			t.Fatalf("API call %d = %d %s (proof problems %v)", i, resp.StatusCode, body, proofErrs)
		}
	}

	// An upstream that asks for a nonce once gets exactly one retry, with it.
	s.api.reset()
	if resp, _ := s.do(c, http.MethodPost, "/api/nonce", nil); resp.StatusCode != 200 {
		t.Errorf("POST /api/nonce = %d, want 200 after one retry", resp.StatusCode)
	}
	if n := len(s.api.requests()); n != 2 {
		t.Errorf("upstream requests for one call with a nonce challenge = %d, want 2", n)
	}

	// Refresh: the same binding, with a new nonce-bearing proof.
	tokenCalls, dpopCalls := s.idp.TokenCalls(), s.idp.DPoPTokenCalls()
	if resp, _ := s.do(c, http.MethodPost, "/auth/refresh", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /auth/refresh = %d", resp.StatusCode)
	}
	after, err := s.session(c, "/auth/refresh")
	if err != nil || after.AccessToken == sess.AccessToken || after.TokenType != "DPoP" {
		t.Fatalf("session after refresh = %v, %v; want a new DPoP-bound token", after, err)
	}
	in = s.idp.Introspect(t, after.AccessToken)
	if !in.Active || in.Cnf.JKT != jkt {
		t.Errorf("introspection after refresh: active %v cnf.jkt %q, want %s", in.Active, in.Cnf.JKT, jkt)
	}
	if resp, _ := s.do(c, http.MethodGet, "/api/after-refresh", csrf); resp.StatusCode != 200 {
		t.Errorf("API call after refresh = %d", resp.StatusCode)
	}
	refreshTokenCalls := s.idp.TokenCalls() - tokenCalls
	if got := s.idp.DPoPTokenCalls() - dpopCalls; got != refreshTokenCalls {
		t.Errorf("token calls of the refresh with DPoP = %d of %d", got, refreshTokenCalls)
	}

	// Logout revokes the (client-bound) refresh token, authenticated with an assertion.
	revocations := s.idp.RevocationCalls()
	if resp, _ := s.do(c, http.MethodPost, "/auth/logout", nil); resp.StatusCode != 200 {
		t.Fatalf("logout = %d", resp.StatusCode)
	}
	if got := s.idp.RevocationCalls() - revocations; got < 1 {
		t.Errorf("revocation calls at logout = %d, want at least 1", got)
	}
	if in := s.idp.Introspect(t, after.RefreshToken); in.Active {
		t.Error("the refresh token is still active after logout")
	}

	if n := s.idp.SecretCalls(); n != 0 {
		t.Errorf("requests carrying a client secret = %d, want 0", n)
	}
	if len(proofErrs) > 0 {
		t.Errorf("the API refused proofs: %v", proofErrs)
	}
	t.Logf("counts: %d API calls, %d distinct jti; token calls %d (with DPoP %d, refresh %d incl. nonce retries); PAR %d; revocation %d; authorization requests %d",
		calls+2, len(jtis), s.idp.TokenCalls(), s.idp.DPoPTokenCalls(), refreshTokenCalls, s.idp.PARCalls(), s.idp.RevocationCalls(), len(authz))
}

type errString string

func (e errString) Error() string { return string(e) }
