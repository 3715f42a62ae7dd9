package oauthagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenhandler/tokenhandler/session"
)

// fakeProvider is a hand-written provider for the answers a real one will not give on
// demand: each case sets what the token endpoint says.
type fakeProvider struct {
	srv           *httptest.Server
	tokenCalls    atomic.Int64
	userinfoCalls atomic.Int64
	jwksCalls     atomic.Int64
	answer        func(w http.ResponseWriter, r *http.Request)
	userinfo      func(w http.ResponseWriter, r *http.Request) // nil: no userinfo_endpoint
	extra         map[string]any                               // more discovery metadata
	down          atomic.Bool                                  // answer 503 to everything
	routes        map[string]http.HandlerFunc                  // more endpoints, by path
}

func newFakeProvider(t *testing.T) *fakeProvider {
	f := &fakeProvider{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		u := f.srv.URL
		m := map[string]any{
			"issuer": u, "authorization_endpoint": u + "/auth", "token_endpoint": u + "/token",
			"jwks_uri": u + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
		}
		if f.userinfo != nil {
			m["userinfo_endpoint"] = u + "/userinfo"
		}
		for k, v := range f.extra {
			m[k] = v
		}
		_ = json.NewEncoder(w).Encode(m)
	})
	mux.HandleFunc("/userinfo", func(w http.ResponseWriter, r *http.Request) {
		f.userinfoCalls.Add(1)
		f.userinfo(w, r)
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		f.jwksCalls.Add(1)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: testKey.Public(), Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		f.tokenCalls.Add(1)
		f.answer(w, r)
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if h := f.routes[r.URL.Path]; h != nil {
			h(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func newTestAgent(t *testing.T, issuer string) (*Agent, *session.CookieStore) {
	t.Helper()
	kp, err := session.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	opts := session.CookieOptions{Keys: []session.KeyPair{kp}, RefreshPaths: []string{"/auth/refresh", "/auth/logout", "/auth/userinfo"}, Lifetime: time.Hour}
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
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a, store
}

func tokenJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func TestRefreshOutcomes(t *testing.T) {
	now := time.Now()
	idToken := func(issuer, sub string) string {
		return signJSON(t, testKey, claimsJSON(t, map[string]any{"iss": issuer, "sub": sub, "aud": "spa", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}))
	}
	tests := []struct {
		name   string
		answer func(issuer string) http.HandlerFunc
		want   error // nil: success
	}{
		{"rotated", func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				tokenJSON(w, 200, `{"access_token":"at-2","token_type":"Bearer","expires_in":60,"refresh_token":"rt-2"}`)
			}
		}, nil},
		{"invalid_grant (Hydra)", func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { tokenJSON(w, 400, `{"error":"invalid_grant"}`) }
		}, session.ErrRefreshDenied},
		{"invalid_request (Dex)", func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { tokenJSON(w, 400, `{"error":"invalid_request"}`) }
		}, session.ErrRefreshDenied},
		{"401 unauthorized_client", func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { tokenJSON(w, 401, `{"error":"unauthorized_client"}`) }
		}, session.ErrRefreshDenied},
		{"invalid_client keeps the session", func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { tokenJSON(w, 401, `{"error":"invalid_client"}`) }
		}, session.ErrIdPUnavailable},
		{"400 without an OAuth body", func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { tokenJSON(w, 400, `<html>bad gateway page</html>`) }
		}, session.ErrIdPUnavailable},
		{"5xx", func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { tokenJSON(w, 503, `{"error":"temporarily_unavailable"}`) }
		}, session.ErrIdPUnavailable},
		{"2xx without a token", func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { tokenJSON(w, 200, `{"token_type":"Bearer"}`) }
		}, session.ErrIdPUnavailable},
		{"connection dropped", func(string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				conn, _, _ := w.(http.Hijacker).Hijack()
				_ = conn.Close()
			}
		}, session.ErrIdPUnavailable},
		{"refreshed id token of another subject", func(issuer string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				tokenJSON(w, 200, `{"access_token":"at-2","token_type":"Bearer","expires_in":60,"refresh_token":"rt-2","id_token":"`+idToken(issuer, "mallory")+`"}`)
			}
		}, session.ErrRefreshDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeProvider(t)
			f.answer = tc.answer(f.srv.URL)
			a, store := newTestAgent(t, f.srv.URL)
			old := idToken(f.srv.URL, "alice")
			s := &session.Session{ID: session.NewID(), Subject: "alice", IDToken: old, AccessToken: "at-1",
				AccessIssued: now.Add(-time.Minute), AccessExpiry: now, RefreshToken: "rt-1", Expiry: now.Add(time.Hour)}

			// Through the HTTP endpoint, so the cookies the answer carries are checked too.
			req := httptest.NewRequest(http.MethodPost, "https://app.test/auth/refresh", nil)
			cookies, err := store.Save(context.Background(), req, s)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cookies {
				if c.MaxAge > 0 && (c.Path == "/" || c.Path == "/auth/refresh") {
					req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
				}
			}
			req.Header.Set("X-CSRF", "1")
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, req)

			var deleted, set int
			for _, c := range rec.Result().Cookies() {
				if c.MaxAge < 0 {
					deleted++
				} else {
					set++
				}
			}
			switch {
			case tc.want == nil:
				if rec.Code != http.StatusNoContent || set == 0 {
					t.Fatalf("POST /auth/refresh = %d with %d cookies set, want 204 with new cookies", rec.Code, set)
				}
				ns, err := a.Refresher().Refresh(context.Background(), s) // the grace entry answers now
				if err != nil || ns.RefreshToken != "rt-2" || ns.AccessToken != "at-2" {
					t.Errorf("Refresh with the old token = %+v, %v, want the rotated tokens from the grace entry", ns, err)
				}
			case errors.Is(tc.want, session.ErrRefreshDenied):
				if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `"session_expired"`) || deleted == 0 || set != 0 {
					t.Errorf("POST /auth/refresh = %d %s, %d deleted, %d set; want 401 session_expired with the cookies cleared", rec.Code, rec.Body, deleted, set)
				}
			default:
				if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), `"idp_unavailable"`) || deleted != 0 || set != 0 {
					t.Errorf("POST /auth/refresh = %d %s, %d deleted, %d set; want 502 idp_unavailable with the cookies kept", rec.Code, rec.Body, deleted, set)
				}
			}
			// An explicit auth style: x/oauth2's auto-detection would send a failed
			// request a second time with the other style.
			if got := f.tokenCalls.Load(); got != 1 {
				t.Errorf("token endpoint called %d times, want 1", got)
			}
		})
	}
}

// TestUserinfoWithoutRefreshToken: a session without a refresh token (a provider that
// issues none) uses its access token while it lasts; an expired one is unauthenticated,
// never session_expired, and its cookies stay.
func TestUserinfoWithoutRefreshToken(t *testing.T) {
	f := newFakeProvider(t)
	f.userinfo = func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"sub":"alice"}`) }
	f.answer = func(w http.ResponseWriter, r *http.Request) { tokenJSON(w, 400, `{"error":"invalid_grant"}`) }
	a, store := newTestAgent(t, f.srv.URL)
	now := time.Now()
	for _, tc := range []struct {
		name   string
		expiry time.Time
		status int
	}{
		{"inside the skew, not expired", now.Add(5 * time.Second), 200},
		{"expired", now.Add(-time.Second), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &session.Session{ID: session.NewID(), Subject: "alice", IDToken: "h.e.s", AccessToken: "at-1",
				AccessIssued: now.Add(-time.Hour), AccessExpiry: tc.expiry, Expiry: now.Add(time.Hour)}
			req := httptest.NewRequest(http.MethodGet, "https://app.test/auth/userinfo", nil)
			cookies, err := store.Save(context.Background(), req, s)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cookies {
				if c.MaxAge > 0 && c.Path == "/" {
					req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
				}
			}
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, req)
			if rec.Code != tc.status || strings.Contains(rec.Body.String(), "session_expired") || len(rec.Result().Cookies()) != 0 {
				t.Errorf("/auth/userinfo = %d %s with %d Set-Cookie, want %d and the cookies untouched", rec.Code, rec.Body, len(rec.Result().Cookies()), tc.status)
			}
			if f.tokenCalls.Load() != 0 {
				t.Errorf("a session without a refresh token reached the token endpoint")
			}
		})
	}
}

// Finding 5 of the hardening review: POST /auth/refresh forces at most one refresh per
// session per minute; a client looping on it gets 204 without the token endpoint being
// called again while the access token is fresh.
func TestExplicitRefreshIsRateLimited(t *testing.T) {
	f := newFakeProvider(t)
	var n atomic.Int64
	f.answer = func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		tokenJSON(w, 200, fmt.Sprintf(`{"access_token":"at-%d","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-%d"}`, i+1, i+1))
	}
	a, store := newTestAgent(t, f.srv.URL)
	now := time.Now()
	s := &session.Session{ID: session.NewID(), Subject: "alice", AccessToken: "at-1", AccessIssued: now,
		AccessExpiry: now.Add(time.Hour), RefreshToken: "rt-1", Expiry: now.Add(2 * time.Hour)}
	jar := map[string]string{}
	remember := func(cs []*http.Cookie) {
		for _, c := range cs {
			if c.MaxAge > 0 && (c.Path == "/" || c.Path == "/auth/refresh") {
				jar[c.Name] = c.Value
			}
		}
	}
	cookies, err := store.Save(context.Background(), httptest.NewRequest("GET", "/", nil), s)
	if err != nil {
		t.Fatal(err)
	}
	remember(cookies)
	for i := range 5 {
		req := httptest.NewRequest(http.MethodPost, "https://app.test/auth/refresh", nil)
		req.Header.Set("X-CSRF", "1")
		for k, v := range jar {
			req.AddCookie(&http.Cookie{Name: k, Value: v})
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			t.Fatalf("POST /auth/refresh #%d = %d %s, want 204", i+1, rec.Code, rec.Body)
		}
		remember(rec.Result().Cookies())
	}
	if got := f.tokenCalls.Load(); got != 1 {
		t.Errorf("token endpoint calls for 5 explicit refreshes of a fresh token = %d, want 1", got)
	}
}

// Finding 9 of the hardening review: a provider's 307 would have re-posted a token
// request (with a client_secret_post body) elsewhere. Redirects are not followed: the
// refresh fails as an outage and the redirect's target hears nothing.
func TestProviderRedirectsAreNotFollowed(t *testing.T) {
	var elsewhere atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(evil.Close)
	f := newFakeProvider(t)
	f.answer = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL+"/token", http.StatusTemporaryRedirect)
	}
	a, _ := newTestAgent(t, f.srv.URL)
	now := time.Now()
	s := &session.Session{ID: session.NewID(), Subject: "alice", AccessToken: "at-1", AccessIssued: now.Add(-time.Hour),
		AccessExpiry: now, RefreshToken: "rt-1", Expiry: now.Add(time.Hour)}
	if _, err := a.Refresher().Refresh(context.Background(), s); !errors.Is(err, session.ErrIdPUnavailable) {
		t.Fatalf("Refresh with a redirecting token endpoint = %v, want ErrIdPUnavailable", err)
	}
	if got := elsewhere.Load(); got != 0 {
		t.Fatalf("the redirect's target got %d requests, want 0", got)
	}
}
