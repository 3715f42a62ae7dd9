package oauthagent

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

// fakeSessions records what back-channel logout asked for.
type fakeSessions struct {
	mu       sync.Mutex
	seen     map[string]bool
	ended    []string // "sid=... sub=..."
	endErr   error
	released int
}

func (f *fakeSessions) ClaimLogoutToken(_ context.Context, issuer, jti string, ttl time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ttl < 2*logoutTokenMaxAge {
		return false, fmt.Errorf("ttl %v shorter than the window in which iat is accepted", ttl)
	}
	k := issuer + "\x00" + jti
	if f.seen[k] {
		return false, nil
	}
	f.seen[k] = true
	return true, nil
}

func (f *fakeSessions) ReleaseLogoutToken(_ context.Context, issuer, jti string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.seen, issuer+"\x00"+jti)
	f.released++
	return nil
}

func (f *fakeSessions) EndSessions(_ context.Context, sid, sub string, _ time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.endErr != nil {
		return 0, f.endErr
	}
	f.ended = append(f.ended, "sid="+sid+" sub="+sub)
	return 1, nil
}

func newBackchannelAgent(t *testing.T, issuer string, b BackchannelSessions) *Agent {
	t.Helper()
	kp, err := session.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	opts := session.CookieOptions{Keys: []session.KeyPair{kp}, RefreshPaths: []string{"/auth/refresh"}}
	store, err := session.NewCookieStore(opts)
	if err != nil {
		t.Fatal(err)
	}
	logins, err := session.NewLoginJar(session.LoginOptions{Keys: opts.Keys, Prefix: opts.Prefix, Insecure: opts.Insecure, Now: opts.Now})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(store, logins, session.NewCoordinator(session.CoordinatorOptions{}), Options{
		Issuer: issuer, ClientID: "spa", ClientSecret: "s3cret", RedirectURL: "https://app.test/auth/callback",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Backchannel: b,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

func postLogout(a *Agent, body, contentType string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "https://app.test/auth/backchannel-logout", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	return rec
}

const formType = "application/x-www-form-urlencoded"

func logoutForm(token string) string { return url.Values{"logout_token": {token}}.Encode() }

func TestBackchannelLogout(t *testing.T) {
	f := newFakeProvider(t)
	issuer := f.srv.URL
	now := time.Now()
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	event := map[string]any{backchannelEvent: map[string]any{}}
	var n int
	claims := func(edit func(m map[string]any)) map[string]any {
		n++
		m := map[string]any{"iss": issuer, "aud": "spa", "iat": now.Unix(), "jti": fmt.Sprintf("jti-%d", n), "events": event, "sid": "sid-1"}
		if edit != nil {
			edit(m)
		}
		return m
	}
	signed := func(edit func(m map[string]any)) string { return signJSON(t, testKey, claimsJSON(t, claims(edit))) }
	replayed := signed(nil)

	tests := []struct {
		name    string
		body    string
		ctype   string
		want    int
		wantEnd string // the EndSessions call expected on 200
	}{
		{"Hydra's shape: sid, no exp, no sub", logoutForm(replayed), formType, 200, "sid=sid-1 sub="},
		{"Dex's shape: sub and sid and exp", logoutForm(signed(func(m map[string]any) { m["sub"] = "alice"; m["exp"] = now.Add(time.Minute).Unix() })), formType, 200, "sid=sid-1 sub=alice"},
		{"sub only", logoutForm(signed(func(m map[string]any) { delete(m, "sid"); m["sub"] = "alice" })), formType, 200, "sid= sub=alice"},
		{"aud as a list", logoutForm(signed(func(m map[string]any) { m["aud"] = []string{"spa"} })), formType + "; charset=utf-8", 200, "sid=sid-1 sub="},

		{"replayed jti", logoutForm(replayed), formType, 400, ""},
		{"signed by another key", logoutForm(signJSON(t, otherKey, claimsJSON(t, claims(nil)))), formType, 400, ""},
		{"unsigned (alg none)", logoutForm(unsignedJWT(claimsJSON(t, claims(nil)))), formType, 400, ""},
		{"wrong aud", logoutForm(signed(func(m map[string]any) { m["aud"] = "another-client" })), formType, 400, ""},
		{"wrong iss", logoutForm(signed(func(m map[string]any) { m["iss"] = "https://evil.test" })), formType, 400, ""},
		{"iat too old", logoutForm(signed(func(m map[string]any) { m["iat"] = now.Add(-3 * time.Minute).Unix() })), formType, 400, ""},
		{"iat in the future", logoutForm(signed(func(m map[string]any) { m["iat"] = now.Add(3 * time.Minute).Unix() })), formType, 400, ""},
		{"iat missing", logoutForm(signed(func(m map[string]any) { delete(m, "iat") })), formType, 400, ""},
		{"iat a string", logoutForm(signed(func(m map[string]any) { m["iat"] = fmt.Sprint(now.Unix()) })), formType, 400, ""},
		{"exp passed", logoutForm(signed(func(m map[string]any) { m["exp"] = now.Add(-time.Minute).Unix() })), formType, 400, ""},
		{"nonce present", logoutForm(signed(func(m map[string]any) { m["nonce"] = "n" })), formType, 400, ""},
		{"events missing", logoutForm(signed(func(m map[string]any) { delete(m, "events") })), formType, 400, ""},
		{"events without the logout event", logoutForm(signed(func(m map[string]any) { m["events"] = map[string]any{"other": map[string]any{}} })), formType, 400, ""},
		{"logout event not an object", logoutForm(signed(func(m map[string]any) { m["events"] = map[string]any{backchannelEvent: "yes"} })), formType, 400, ""},
		{"events a list", logoutForm(signed(func(m map[string]any) { m["events"] = []string{backchannelEvent} })), formType, 400, ""},
		{"neither sid nor sub", logoutForm(signed(func(m map[string]any) { delete(m, "sid") })), formType, 400, ""},
		{"sid not a string", logoutForm(signed(func(m map[string]any) { m["sid"] = 7 })), formType, 400, ""},
		{"jti missing", logoutForm(signed(func(m map[string]any) { delete(m, "jti") })), formType, 400, ""},
		{"an ID token", logoutForm(signed(func(m map[string]any) {
			delete(m, "events")
			m["sub"], m["nonce"], m["exp"] = "alice", "n", now.Add(time.Hour).Unix()
		})), formType, 400, ""},
		{"no logout_token", "other=1", formType, 400, ""},
		{"two logout_tokens", logoutForm(signed(nil)) + "&" + logoutForm(signed(nil)), formType, 400, ""},
		{"JSON body", `{"logout_token":"` + signed(nil) + `"}`, "application/json", 400, ""},
		{"no content type", logoutForm(signed(nil)), "", 400, ""},
		{"garbage token", logoutForm("not.a.jwt"), formType, 400, ""},
		{"body too large", logoutForm(signed(nil)) + "&pad=" + strings.Repeat("a", maxLogoutBody), formType, 400, ""},
	}
	b := &fakeSessions{seen: map[string]bool{}}
	a := newBackchannelAgent(t, issuer, b)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(b.ended)
			rec := postLogout(a, tc.body, tc.ctype)
			if rec.Code != tc.want {
				t.Fatalf("POST backchannel-logout (%s) = %d %s, want %d", tc.name, rec.Code, rec.Body, tc.want)
			}
			if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "no-store") {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			switch tc.want {
			case 200:
				if len(b.ended) != before+1 || b.ended[len(b.ended)-1] != tc.wantEnd {
					t.Errorf("EndSessions calls = %v, want one more: %s", b.ended[before:], tc.wantEnd)
				}
			case 400:
				if !strings.Contains(rec.Body.String(), `"invalid_request"`) {
					t.Errorf("body = %s, want error invalid_request", rec.Body)
				}
				if len(b.ended) != before {
					t.Errorf("a refused logout token ended sessions: %v", b.ended[before:])
				}
			}
		})
	}
}

func TestBackchannelLogoutRouting(t *testing.T) {
	f := newFakeProvider(t)
	t.Run("not mounted without sessions to end", func(t *testing.T) {
		a := newBackchannelAgent(t, f.srv.URL, nil)
		if rec := postLogout(a, "logout_token=x", formType); rec.Code != http.StatusNotFound {
			t.Errorf("POST backchannel-logout without Backchannel = %d, want 404", rec.Code)
		}
	})
	t.Run("POST only", func(t *testing.T) {
		a := newBackchannelAgent(t, f.srv.URL, &fakeSessions{seen: map[string]bool{}})
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://app.test/auth/backchannel-logout", nil))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != http.MethodPost {
			t.Errorf("GET backchannel-logout = %d Allow %q, want 405 Allow POST", rec.Code, rec.Header().Get("Allow"))
		}
	})
	t.Run("store unavailable: 503, and the provider's retry is accepted", func(t *testing.T) {
		b := &fakeSessions{seen: map[string]bool{}, endErr: fmt.Errorf("redis: %w", session.ErrStoreUnavailable)}
		a := newBackchannelAgent(t, f.srv.URL, b)
		tok := signJSON(t, testKey, claimsJSON(t, map[string]any{"iss": f.srv.URL, "aud": "spa", "iat": time.Now().Unix(),
			"jti": "retry-me", "sid": "s", "events": map[string]any{backchannelEvent: map[string]any{}}}))
		rec := postLogout(a, logoutForm(tok), formType)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "session_store_unavailable") {
			t.Fatalf("POST backchannel-logout with the store down = %d %s, want 503 session_store_unavailable", rec.Code, rec.Body)
		}
		b.endErr = nil
		if rec := postLogout(a, logoutForm(tok), formType); rec.Code != http.StatusOK {
			t.Errorf("the provider's retry = %d %s, want 200", rec.Code, rec.Body)
		}
	})
}

// unsignedJWT is a token with alg "none".
func unsignedJWT(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(payload)) + "."
}

func FuzzCheckLogoutClaims(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	for _, s := range []string{
		`{"iat":1800000000,"jti":"j","sid":"s","events":{"http://schemas.openid.net/event/backchannel-logout":{}}}`,
		`{"iat":1800000000,"exp":1800000060,"jti":"j","sub":"a","events":{"http://schemas.openid.net/event/backchannel-logout":{}}}`,
		`{"iat":"1800000000","jti":1,"sid":null,"events":[]}`,
		`{}`, `null`, `[]`, `{"events":{"http://schemas.openid.net/event/backchannel-logout":null}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		c, err := checkLogoutClaims([]byte(payload), now)
		if err != nil {
			return
		}
		if c.JTI == "" || (c.SID == "" && c.Subject == "") {
			t.Errorf("checkLogoutClaims(%q) accepted a token without jti or without sid and sub", payload)
		}
	})
}

// Finding 4 of the hardening review: forged logout tokens made the provider's key set be
// fetched once per request. Now a flood costs at most one fetch per interval.
func TestBackchannelForgedTokensDoNotRefetchKeys(t *testing.T) {
	f := newFakeProvider(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeSessions{seen: map[string]bool{}}
	a := newBackchannelAgent(t, f.srv.URL, b)
	now := time.Now()
	for i := range 100 {
		claims := map[string]any{"iss": f.srv.URL, "aud": "spa", "iat": now.Unix(), "jti": fmt.Sprintf("forged-%d", i),
			"events": map[string]any{backchannelEvent: map[string]any{}}, "sid": "sid-1"}
		if rec := postLogout(a, logoutForm(signJSON(t, other, claimsJSON(t, claims))), formType); rec.Code != 400 {
			t.Fatalf("forged logout token %d = %d, want 400", i, rec.Code)
		}
	}
	if got := f.jwksCalls.Load(); got > 1 {
		t.Errorf("key-set fetches for 100 forged logout tokens = %d, want at most 1", got)
	}
	if len(b.ended) != 0 {
		t.Errorf("forged tokens ended sessions: %v", b.ended)
	}
}
