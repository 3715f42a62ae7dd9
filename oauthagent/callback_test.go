package oauthagent

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// A hand-written provider for what the real ones will not do on demand: an ID token
// without name and email, a userinfo of another subject, a wrong nonce, a foreign
// signature, an HMAC-signed token, a bad at_hash, an advertised RFC 9207 iss parameter.
func TestCallbackWithHandwrittenProvider(t *testing.T) {
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	type tokenCase struct {
		nonce     func(real string) string
		key       any // *rsa.PrivateKey or []byte (HS256)
		claims    map[string]any
		noIDToken bool
		atHash    string
		status    int
		body      string
	}
	tests := []struct {
		name       string
		tok        tokenCase
		userinfo   func(w http.ResponseWriter, r *http.Request)
		issParam   bool   // discovery advertises authorization_response_iss_parameter_supported
		iss        string // iss query parameter sent to the callback ("" none)
		want       string // auth_error, "" success
		wantName   string
		wantUIHits int64
	}{
		{name: "profile from userinfo when the ID token lacks it",
			userinfo: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer at-1" {
					w.WriteHeader(401)
					return
				}
				_, _ = io.WriteString(w, `{"sub":"alice","name":"Alice U","email":"alice@userinfo.test"}`)
			},
			wantName: "Alice U", wantUIHits: 1},
		{name: "profile from the ID token: no userinfo call",
			tok:      tokenCase{claims: map[string]any{"name": "Alice T", "email": "alice@idtoken.test"}},
			userinfo: func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"sub":"alice"}`) },
			wantName: "Alice T", wantUIHits: 0},
		{name: "userinfo of another subject",
			userinfo:   func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"sub":"mallory","name":"M"}`) },
			want:       "invalid_userinfo",
			wantUIHits: 1},
		{name: "userinfo that is not JSON",
			userinfo:   func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `<html>`) },
			want:       "invalid_userinfo",
			wantUIHits: 1},
		{name: "userinfo down",
			userinfo:   func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) },
			want:       "idp_unavailable",
			wantUIHits: 1},
		{name: "wrong nonce", tok: tokenCase{nonce: func(string) string { return "attacker-nonce" }}, want: "invalid_id_token"},
		{name: "signed by a foreign key", tok: tokenCase{key: otherKey}, want: "invalid_id_token"},
		{name: "HS256 with the client secret", tok: tokenCase{key: []byte("s3cret-s3cret-s3cret-s3cret-s3cret!!")}, want: "invalid_id_token"},
		{name: "bad at_hash", tok: tokenCase{atHash: "AAAAAAAAAAAAAAAAAAAAAA"}, want: "invalid_id_token"},
		{name: "no id_token", tok: tokenCase{noIDToken: true}, want: "invalid_id_token"},
		{name: "code refused", tok: tokenCase{status: 400, body: `{"error":"invalid_grant"}`}, want: "token_exchange_failed"},
		{name: "token endpoint down", tok: tokenCase{status: 502, body: `bad gateway`}, want: "idp_unavailable"},
		{name: "iss advertised and missing", issParam: true, want: "invalid_iss"},
		{name: "iss advertised and given", issParam: true, iss: "ISSUER", tok: tokenCase{claims: map[string]any{"name": "A", "email": "a@x"}}, wantName: "A"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeProvider(t)
			f.userinfo = tc.userinfo
			if tc.issParam {
				f.extra = map[string]any{"authorization_response_iss_parameter_supported": true}
			}
			var challenge, nonce string
			var verifierOK bool
			f.answer = func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
				verifierOK = base64.RawURLEncoding.EncodeToString(sum[:]) == challenge && r.PostForm.Get("code") == "the-code"
				if tc.tok.status != 0 {
					tokenJSON(w, tc.tok.status, tc.tok.body)
					return
				}
				resp := map[string]any{"access_token": "at-1", "token_type": "Bearer", "expires_in": 60, "refresh_token": "rt-1"}
				if !tc.tok.noIDToken {
					now := time.Now()
					claims := map[string]any{"iss": f.srv.URL, "sub": "alice", "aud": "spa", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nonce": nonce}
					if tc.tok.nonce != nil {
						claims["nonce"] = tc.tok.nonce(nonce)
					}
					if tc.tok.atHash != "" {
						claims["at_hash"] = tc.tok.atHash
					}
					for k, v := range tc.tok.claims {
						claims[k] = v
					}
					resp["id_token"] = signWith(t, tc.tok.key, claimsJSON(t, claims))
				}
				b, _ := json.Marshal(resp)
				tokenJSON(w, 200, string(b))
			}
			a, _ := newTestAgent(t, f.srv.URL)

			// Login: PKCE S256, state and nonce of at least 128 bits, one login cookie.
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://app.test/auth/login?return_to=%2Fnext%3Fa%3D1", nil))
			if rec.Code != http.StatusFound {
				t.Fatalf("login = %d %s", rec.Code, rec.Body)
			}
			auth, _ := url.Parse(rec.Header().Get("Location"))
			q := auth.Query()
			challenge, nonce = q.Get("code_challenge"), q.Get("nonce")
			state := q.Get("state")
			if q.Get("code_challenge_method") != "S256" || len(state) < 22 || len(nonce) < 22 || challenge == "" {
				t.Fatalf("authorization request = %s: want S256 PKCE and >= 128-bit state and nonce", auth)
			}
			var login *http.Cookie
			for _, c := range rec.Result().Cookies() {
				if strings.HasPrefix(c.Name, "__Host-Http-th-login-") && c.MaxAge > 0 {
					login = c
				}
			}
			if login == nil || login.SameSite != http.SameSiteLaxMode || login.MaxAge != 600 {
				t.Fatalf("login cookie = %+v, want SameSite=Lax and 10 minutes", login)
			}

			cb := url.Values{"state": {state}, "code": {"the-code"}}
			if tc.iss != "" {
				cb.Set("iss", f.srv.URL)
			}
			req := httptest.NewRequest(http.MethodGet, "https://app.test/auth/callback?"+cb.Encode(), nil)
			req.AddCookie(&http.Cookie{Name: login.Name, Value: login.Value})
			rec = httptest.NewRecorder()
			a.ServeHTTP(rec, req)

			loc := rec.Header().Get("Location")
			var sessionCookies []*http.Cookie
			var loginDeleted bool
			for _, c := range rec.Result().Cookies() {
				switch {
				case c.Name == login.Name:
					loginDeleted = c.MaxAge < 0
				case c.MaxAge > 0:
					sessionCookies = append(sessionCookies, c)
				}
			}
			if !loginDeleted {
				t.Errorf("callback did not delete the login cookie")
			}
			if got := f.userinfoCalls.Load(); got != tc.wantUIHits {
				t.Errorf("userinfo calls = %d, want %d", got, tc.wantUIHits)
			}
			if tc.want != "" {
				if loc != "/?auth_error="+tc.want || len(sessionCookies) != 0 {
					t.Fatalf("callback = %d to %q with %d session cookies, want /?auth_error=%s and none", rec.Code, loc, len(sessionCookies), tc.want)
				}
				return
			}
			if loc != "/next?a=1" || !verifierOK {
				t.Fatalf("callback = %d to %q (PKCE verifier ok: %v), want /next?a=1", rec.Code, loc, verifierOK)
			}
			req = httptest.NewRequest(http.MethodGet, "https://app.test/auth/session", nil)
			for _, c := range sessionCookies {
				if c.Path == "/" {
					req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
				}
			}
			rec = httptest.NewRecorder()
			a.ServeHTTP(rec, req)
			var sess map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &sess)
			if sess["authenticated"] != true || sess["name"] != tc.wantName {
				t.Errorf("/auth/session = %s, want name %q", rec.Body, tc.wantName)
			}
		})
	}
}

// signWith signs payload with an RSA key (RS256, testKey when nil) or an HMAC secret (HS256).
func signWith(t *testing.T, key any, payload string) string {
	t.Helper()
	switch k := key.(type) {
	case nil:
		return signJSON(t, testKey, payload)
	case *rsa.PrivateKey:
		return signJSON(t, k, payload)
	case []byte:
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: k}, nil)
		if err != nil {
			t.Fatal(err)
		}
		jws, err := signer.Sign([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		s, _ := jws.CompactSerialize()
		return s
	}
	t.Fatalf("signWith: unknown key %T", key)
	return ""
}
