package oauthagent

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/session"
)

// newLogoutFuzzAgent is an agent with back-channel logout whose provider (on loopback,
// closed with tb) signs with testKey. It is built once per fuzz target, not per input.
func newLogoutFuzzAgent(tb testing.TB) (*Agent, *fakeSessions, string) {
	tb.Helper()
	var issuer string
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": issuer, "authorization_endpoint": issuer + "/auth", "token_endpoint": issuer + "/token",
			"jwks_uri": issuer + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
			"backchannel_logout_supported": true,
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: testKey.Public(), KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	issuer = srv.URL

	kp, err := session.GenerateKeyPair()
	if err != nil {
		tb.Fatal(err)
	}
	opts := session.CookieOptions{Keys: []session.KeyPair{kp}, RefreshPaths: []string{"/auth/refresh"}}
	store, err := session.NewCookieStore(opts)
	if err != nil {
		tb.Fatal(err)
	}
	logins, err := session.NewLoginJar(session.LoginOptions{Keys: opts.Keys})
	if err != nil {
		tb.Fatal(err)
	}
	b := &fakeSessions{seen: map[string]bool{}}
	a, err := New(store, logins, session.NewCoordinator(session.CoordinatorOptions{}), Options{
		Issuer: issuer, ClientID: "spa", ClientSecret: "s3cret", RedirectURL: "https://app.test/auth/callback",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Backchannel: b,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.Discover(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return a, b, issuer
}

// checkRefused fails unless the answer refused the request (4xx) and no session ended.
func checkRefused(t *testing.T, b *fakeSessions, rec *httptest.ResponseRecorder, what string) {
	t.Helper()
	b.mu.Lock()
	ended := len(b.ended)
	b.mu.Unlock()
	if ended != 0 {
		t.Fatalf("%s ended sessions: %v", what, b.ended)
	}
	if rec.Code/100 != 4 {
		t.Fatalf("%s = %d %s, want a 4xx refusal", what, rec.Code, rec.Body)
	}
}

// FuzzBackchannelLogoutToken posts logout tokens an attacker can make: any JOSE header
// and payload, with a signature that is fuzzed bytes, empty (alg none), an HMAC keyed with
// the provider's public key (algorithm confusion), or a real RS256 signature by a key the
// provider does not hold. None may end a session, and the endpoint answers 400 to all.
func FuzzBackchannelLogoutToken(f *testing.F) {
	a, b, issuer := newLogoutFuzzAgent(f)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(testKey.Public())
	if err != nil {
		f.Fatal(err)
	}
	valid := `{"iss":"ISSUER","aud":"spa","iat":NOW,"jti":"j-1","sid":"sid-1","events":{"` + backchannelEvent + `":{}}}`
	for _, seed := range []struct {
		header, payload string
		sig             []byte
		mode            uint8
	}{
		{`{"alg":"RS256","kid":"k1","typ":"logout+jwt"}`, valid, []byte("not a signature"), 0},
		{`{"alg":"none"}`, valid, nil, 1},
		{`{"alg":"HS256","kid":"k1"}`, valid, nil, 2},
		{`{"alg":"RS256","kid":"k1"}`, valid, nil, 3},
		{`{"alg":"RS256","kid":"unknown-kid"}`, valid, nil, 3},
		{`{"alg":"RS256","kid":"k1","crit":["exp"]}`, `{"iss":"ISSUER","aud":["spa"],"iat":NOW,"jti":"j-2","sub":"alice","events":{}}`, []byte{0}, 0},
		{`{"alg":"RS256","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}`, `null`, nil, 3},
	} {
		f.Add(seed.header, seed.payload, seed.sig, seed.mode)
	}
	enc := base64.RawURLEncoding.EncodeToString
	f.Fuzz(func(t *testing.T, header, payload string, sig []byte, mode uint8) {
		// Aim the claims at this provider and this moment, so that only the signature
		// stands between the token and a logout.
		payload = strings.ReplaceAll(payload, "ISSUER", issuer)
		payload = strings.ReplaceAll(payload, "NOW", strconv.FormatInt(time.Now().Unix(), 10))
		signingInput := enc([]byte(header)) + "." + enc([]byte(payload))
		switch mode % 4 {
		case 1: // alg none: no signature at all
			sig = nil
		case 2: // HMAC with the provider's public key as the secret
			m := hmac.New(sha256.New, pub)
			m.Write([]byte(signingInput))
			sig = m.Sum(nil)
		case 3: // a real signature by a key the provider does not hold
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: otherKey}, nil)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := signer.Sign([]byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			compact, err := jws.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			// Keep the fuzzed header: the signature covers the signer's own header, so the
			// token stays forged whatever the fuzzed one says.
			sig, err = base64.RawURLEncoding.DecodeString(compact[strings.LastIndexByte(compact, '.')+1:])
			if err != nil {
				t.Fatal(err)
			}
		}
		token := signingInput + "." + enc(sig)
		rec := postLogout(a, logoutForm(token), formType)
		checkRefused(t, b, rec, "a forged logout token")
	})
}

// FuzzBackchannelLogoutForm posts any body with any content type to the back-channel
// logout endpoint: no panic, never a session ended, a 4xx answer.
func FuzzBackchannelLogoutForm(f *testing.F) {
	a, b, _ := newLogoutFuzzAgent(f)
	for _, seed := range []struct{ body, ctype string }{
		{"logout_token=a.b.c", formType},
		{"logout_token=eyJhbGciOiJub25lIn0.e30.&logout_token=x", formType},
		{"logout_token=%zz", formType + "; charset=utf-8"},
		{`{"logout_token":"x"}`, "application/json"},
		{"logout_token=" + strings.Repeat("A", 300), "multipart/form-data; boundary=x"},
		{"", ""},
	} {
		f.Add(seed.body, seed.ctype)
	}
	f.Fuzz(func(t *testing.T, body, ctype string) {
		rec := postLogout(a, body, ctype)
		checkRefused(t, b, rec, "a fuzzed back-channel logout request")
	})
}

// TestLogoutFuzzRigAcceptsSigned keeps the fuzz targets above honest: the same claims,
// signed by the provider's own key, do end a session, so a refusal there is the
// signature's doing.
func TestLogoutFuzzRigAcceptsSigned(t *testing.T) {
	a, b, issuer := newLogoutFuzzAgent(t)
	payload := `{"iss":"` + issuer + `","aud":"spa","iat":` + strconv.FormatInt(time.Now().Unix(), 10) +
		`,"jti":"j-1","sid":"sid-1","events":{"` + backchannelEvent + `":{}}}`
	rec := postLogout(a, logoutForm(signJSON(t, testKey, payload)), formType)
	if rec.Code != http.StatusOK || len(b.ended) != 1 {
		t.Fatalf("a logout token signed by the provider = %d %s, ended %v; want 200 and one session ended", rec.Code, rec.Body, b.ended)
	}
}
