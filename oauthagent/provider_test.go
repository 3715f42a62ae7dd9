package oauthagent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

// TestBackchannelBaseURL: discovery is fetched from the back-channel base; the endpoints
// tokenhandler calls itself are rewritten to it, while the browser keeps the published
// authorization and end-session endpoints, and the issuer is still checked exactly.
func TestBackchannelBaseURL(t *testing.T) {
	const public = "http://localhost:5556/dex"
	var discoveryPath string
	issuer := public
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		discoveryPath = r.URL.Path
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                 issuer,
			"authorization_endpoint": public + "/auth",
			"token_endpoint":         public + "/token",
			"jwks_uri":               public + "/keys",
			"userinfo_endpoint":      public + "/userinfo",
			"revocation_endpoint":    public + "/revoke",
			"end_session_endpoint":   public + "/logout",
		})
	}))
	defer back.Close()

	o := &Options{Issuer: public, BackchannelBaseURL: back.URL, ClientID: "c", HTTPClient: back.Client()}
	p, err := discover(context.Background(), o)
	if err != nil {
		t.Fatalf("discover() = %v", err)
	}
	if discoveryPath != "/dex/.well-known/openid-configuration" {
		t.Errorf("discovery fetched at %q, want the issuer's path on the back-channel base", discoveryPath)
	}
	for name, got := range map[string]string{
		"token": p.meta.TokenEndpoint, "jwks": p.meta.JWKSURI, "userinfo": p.meta.UserinfoEndpoint,
		"revocation": p.meta.RevocationEndpoint, "oauth2 token": p.oauth2.Endpoint.TokenURL,
	} {
		if !strings.HasPrefix(got, back.URL+"/dex/") {
			t.Errorf("%s endpoint = %q, want it on %s", name, got, back.URL)
		}
	}
	if p.meta.AuthorizationEndpoint != public+"/auth" || p.oauth2.Endpoint.AuthURL != public+"/auth" || p.meta.EndSessionEndpoint != public+"/logout" {
		t.Errorf("browser endpoints = %q, %q, want the public ones", p.meta.AuthorizationEndpoint, p.meta.EndSessionEndpoint)
	}

	issuer = "http://dex:5556/dex" // a provider that reports its internal name
	if _, err := discover(context.Background(), o); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("discover() with a different issuer = %v, want an exact-issuer error", err)
	}
}

// TestRunRetriesDiscovery: while the provider is down the agent is not ready and a login
// is 503 idp_unavailable; once the provider answers, the agent is ready within about a
// second (the backoff is capped at one second).
func TestRunRetriesDiscovery(t *testing.T) {
	f := newFakeProvider(t)
	f.down.Store(true)
	kp, _ := session.GenerateKeyPair()
	opts := session.CookieOptions{Keys: []session.KeyPair{kp}, RefreshPaths: []string{"/auth/refresh"}}
	store, _ := session.NewCookieStore(opts)
	logins, _ := session.NewLoginJar(session.LoginOptions{Keys: opts.Keys, Prefix: opts.Prefix, Insecure: opts.Insecure, Now: opts.Now})
	a, err := New(store, logins, session.NewCoordinator(session.CoordinatorOptions{}), Options{
		Issuer: f.srv.URL, ClientID: "spa", ClientSecret: "s", RedirectURL: "https://app.test/auth/callback",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	time.Sleep(1500 * time.Millisecond) // several attempts, the backoff at its cap
	if a.Ready() {
		t.Fatal("Ready() = true while discovery fails")
	}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://app.test/auth/login", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "idp_unavailable") {
		t.Errorf("login before discovery = %d %s, want 503 idp_unavailable", rec.Code, rec.Body)
	}

	up := time.Now()
	f.down.Store(false)
	select {
	case err := <-done:
		if err != nil || !a.Ready() {
			t.Fatalf("Run() = %v, Ready() = %v", err, a.Ready())
		}
	case <-time.After(3 * time.Second):
		t.Fatal("not ready 3 s after the provider came up")
	}
	t.Logf("ready %v after the provider answered", time.Since(up).Round(time.Millisecond))
}
