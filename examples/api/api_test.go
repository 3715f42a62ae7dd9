package api

import (
	"github.com/tokenhandler/tokenhandler/mint"

	"cmp"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/coreos/go-oidc/v3/oidc/oidctest"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// testIdP is go-oidc's test provider (discovery and keys, issuer iss or the server's
// own URL when iss is "") with one RSA key, counting the requests for its keys.
type testIdP struct {
	srv       *httptest.Server
	key       *rsa.PrivateKey
	jwksCalls atomic.Int32
}

func newIdP(t *testing.T, iss string) *testIdP {
	t.Helper()
	signer, err := testbench.NewSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	idp := &testIdP{key: signer.Key}
	provider := &oidctest.Server{
		PublicKeys: []oidctest.PublicKey{{PublicKey: signer.Key.Public(), KeyID: signer.KeyID, Algorithm: oidc.RS256}},
		Algorithms: []string{"RS256", "HS256", "none"},
	}
	idp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/keys", "/dex/keys": // /dex/keys: the Docker case's jwks_uri, on this host
			idp.jwksCalls.Add(1)
			r.URL.Path = "/keys"
		}
		provider.ServeHTTP(w, r)
	}))
	t.Cleanup(idp.srv.Close)
	provider.SetIssuer(cmp.Or(iss, idp.srv.URL))
	return idp
}

// sign returns claims as a JWT signed with key by alg (kid k1).
func sign(t *testing.T, key any, alg jose.SignatureAlgorithm, claims map[string]any) string {
	t.Helper()
	s, err := testbench.SignJWT(key, alg, "k1", claims)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsFor(iss string, mut func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss": iss, "sub": "user-1", "aud": "tokenhandler",
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(45 * time.Second).Unix(),
		"email": "demo@example.com",
	}
	if mut != nil {
		mut(c)
	}
	return c
}

func call(t *testing.T, h http.Handler, path, authz string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestClaims(t *testing.T) {
	idp := newIdP(t, "")
	iss := idp.srv.URL
	h, err := New(Options{Issuer: iss, Audience: "tokenhandler", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, idp.key, jose.RS256, claimsFor(iss, nil))
	for _, path := range []string{"/claims", "/"} {
		rec := call(t, h, path, "Bearer "+tok)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d %s, want 200", path, rec.Code, rec.Body)
		}
		var got Response
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got.Claims["sub"] != "user-1" || got.Claims["email"] != "demo@example.com" {
			t.Errorf("GET %s claims = %v, want sub user-1 and the email", path, got.Claims)
		}
		if want := now.Add(45 * time.Second).Format(time.RFC3339); got.ExpiresAt != want || got.ExpiresInSeconds != 45 {
			t.Errorf("GET %s expiry = %s, %d s; want %s, 45 s", path, got.ExpiresAt, got.ExpiresInSeconds, want)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", rec.Header().Get("Cache-Control"))
		}
	}
}

func TestRejects(t *testing.T) {
	idp := newIdP(t, "")
	iss := idp.srv.URL
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	tests := []struct {
		name      string
		authz     string
		audience  string
		wantError bool // WWW-Authenticate carries error="invalid_token"
	}{
		{name: "no header"},
		{name: "basic scheme", authz: "Basic dXNlcjpwYXNz"},
		{name: "empty bearer", authz: "Bearer "},
		{name: "expired", authz: "Bearer " + sign(t, idp.key, jose.RS256, claimsFor(iss, func(c map[string]any) {
			c["exp"] = now.Add(-time.Second).Unix()
		})), wantError: true},
		{name: "no exp", authz: "Bearer " + sign(t, idp.key, jose.RS256, claimsFor(iss, func(c map[string]any) { delete(c, "exp") })), wantError: true},
		{name: "other issuer", authz: "Bearer " + sign(t, idp.key, jose.RS256, claimsFor("http://evil.example", nil)), wantError: true},
		{name: "other key", authz: "Bearer " + sign(t, other, jose.RS256, claimsFor(iss, nil)), wantError: true},
		{name: "hmac with a guessable key", authz: "Bearer " + sign(t, []byte(strings.Repeat("k", 32)), jose.HS256, claimsFor(iss, nil)), wantError: true},
		{name: "alg none", authz: "Bearer " + unsigned(claimsFor(iss, nil)), wantError: true},
		{name: "tampered payload", authz: "Bearer " + tamper(sign(t, idp.key, jose.RS256, claimsFor(iss, nil))), wantError: true},
		{name: "wrong audience", authz: "Bearer " + sign(t, idp.key, jose.RS256, claimsFor(iss, nil)), audience: "orders-api", wantError: true},
		{name: "opaque token", authz: "Bearer ory_at_abcdef", wantError: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := New(Options{Issuer: iss, Audience: tc.audience, Now: func() time.Time { return now }})
			rec := call(t, h, "/claims", tc.authz)
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("GET /claims = %d %s, want 401", rec.Code, rec.Body)
			}
			www := rec.Header().Get("WWW-Authenticate")
			if !strings.HasPrefix(www, "Bearer") || strings.Contains(www, `error="invalid_token"`) != tc.wantError {
				t.Errorf("WWW-Authenticate = %q, want Bearer with invalid_token %v", www, tc.wantError)
			}
			if strings.Contains(rec.Body.String(), "eyJ") {
				t.Errorf("body %q echoes the token", rec.Body)
			}
		})
	}
}

func unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	enc := func(b []byte) string { return strings.TrimRight(b64(b), "=") }
	return enc(h) + "." + enc(p) + "."
}

func tamper(jwt string) string {
	parts := strings.Split(jwt, ".")
	var c map[string]any
	b, _ := b64dec(parts[1])
	json.Unmarshal(b, &c)
	c["sub"] = "admin"
	p, _ := json.Marshal(c)
	parts[1] = strings.TrimRight(b64(p), "=")
	return strings.Join(parts, ".")
}

// TestDiscoveryURL is the Docker case: iss and jwks_uri name the public host, the API
// fetches discovery and keys from another base, and still checks iss.
func TestDiscoveryURL(t *testing.T) {
	const public = "http://localhost:5556/dex"
	idp := newIdP(t, public)
	h, _ := New(Options{Issuer: public, DiscoveryURL: idp.srv.URL, Now: func() time.Time { return now }})
	rec := call(t, h, "/claims", "Bearer "+sign(t, idp.key, jose.RS256, claimsFor(public, nil)))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /claims = %d %s, want 200", rec.Code, rec.Body)
	}
	if idp.jwksCalls.Load() == 0 {
		t.Errorf("keys were not fetched from the discovery URL's host")
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	idp := newIdP(t, "http://other.example")
	h, _ := New(Options{Issuer: idp.srv.URL, Now: func() time.Time { return now }})
	rec := call(t, h, "/claims", "Bearer "+sign(t, idp.key, jose.RS256, claimsFor(idp.srv.URL, nil)))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /claims with a mismatched discovery issuer = %d, want 503", rec.Code)
	}
}

func TestDiscoveryRetried(t *testing.T) {
	var up atomic.Bool
	idp := newIdP(t, "")
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		idp.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer gate.Close()
	iss := idp.srv.URL
	h, _ := New(Options{Issuer: iss, DiscoveryURL: gate.URL, Now: func() time.Time { return now }})
	tok := "Bearer " + sign(t, idp.key, jose.RS256, claimsFor(iss, nil))
	if rec := call(t, h, "/claims", tok); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("GET /claims while the provider is down = %d, want 503", rec.Code)
	}
	up.Store(true)
	if rec := call(t, h, "/claims", tok); rec.Code != http.StatusOK {
		t.Errorf("GET /claims once the provider is up = %d %s, want 200", rec.Code, rec.Body)
	}
}

func TestRoutes(t *testing.T) {
	h, _ := New(Options{Issuer: "http://127.0.0.1:1"})
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/healthz", 200},
		{"GET", "/nope", 404},
		{"POST", "/claims", 405},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer a b", "", false},
		{"Basic abc", "", false},
		{"Bearerabc", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := BearerToken(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("BearerToken(%q) = %q, %v, want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x", "Basic y", "Bearer a\tb", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, ok := BearerToken(s)
		if ok && (tok == "" || strings.ContainsAny(tok, " \t\r\n") || !strings.HasSuffix(s, tok)) {
			t.Fatalf("BearerToken(%q) = %q, true: want a non-empty, space-free suffix", s, tok)
		}
		if !ok && tok != "" {
			t.Fatalf("BearerToken(%q) = %q, false: want an empty token", s, tok)
		}
	})
}

func b64(b []byte) string { return base64.URLEncoding.EncodeToString(b) }

func b64dec(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// TestMintedJWT: with JWKSURL the API accepts a JWT that tokenhandler minted (format jwt)
// and verifies it against tokenhandler's key set; a token of another key, another issuer
// or an expired one is refused.
func TestMintedJWT(t *testing.T) {
	newSigner := func(iss string, ttl time.Duration) *mint.Signer {
		pemKey, err := mint.GenerateKey("ec")
		if err != nil {
			t.Fatal(err)
		}
		k, _ := mint.ParseKey(pemKey)
		s, err := mint.NewSigner([]*mint.Key{k}, mint.Options{Issuer: iss, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	th := newSigner("https://app.example.com", time.Minute)
	jwks := httptest.NewServer(th.JWKSHandler())
	defer jwks.Close()
	h, err := New(Options{Issuer: "https://app.example.com", JWKSURL: jwks.URL, Audience: "https://orders"})
	if err != nil {
		t.Fatal(err)
	}
	claims := mint.Claims{Subject: "alice", ClientID: "spa", Audience: []string{"https://orders"}, Expiry: time.Now().Add(time.Hour)}
	good, _, err := th.Mint(claims)
	if err != nil {
		t.Fatal(err)
	}
	if rec := call(t, h, "/claims", "Bearer "+good); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"sub":"alice"`) {
		t.Fatalf("minted token: %d %s, want 200 with sub alice", rec.Code, rec.Body)
	}
	other, _, _ := newSigner("https://app.example.com", time.Minute).Mint(claims)
	wrongIss, _, _ := newSigner("https://evil.example.com", time.Minute).Mint(claims)
	wrongAud := claims
	wrongAud.Audience = []string{"https://billing"}
	otherAud, _, _ := th.Mint(wrongAud)
	for name, tok := range map[string]string{"another key": other, "another issuer": wrongIss, "another audience": otherAud} {
		if rec := call(t, h, "/claims", "Bearer "+tok); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, rec.Code)
		}
	}
}
