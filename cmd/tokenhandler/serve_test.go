package main

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

	"github.com/tokenhandler/tokenhandler/config"
	"github.com/tokenhandler/tokenhandler/session"
)

// TestServeDrainsOnShutdown: a request in flight when serve's context ends (SIGTERM)
// completes; serve then returns and the listener is closed.
func TestServeDrainsOnShutdown(t *testing.T) {
	started := make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	}))
	defer api.Close()

	key, _ := session.GenerateKeyPair()
	env := map[string]string{
		"TH_LISTEN": "127.0.0.1:0", "TH_ADMIN_LISTEN": "127.0.0.1:0", "TH_PUBLIC_URL": "http://127.0.0.1:8080",
		"TH_OIDC_ISSUER": "http://127.0.0.1:1/unreachable", "TH_OIDC_CLIENT_ID": "c", "TH_OIDC_CLIENT_SECRET": "s",
		"TH_COOKIES_KEYS": key.String(), "TH_ROUTES": `[{"path":"/api/","upstream":"` + api.URL + `"}]`,
	}
	cfg, _, err := config.Load("", func(k string) string { return env[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil))) }()

	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "tokenhandler listening" {
				addr, _ = m["addr"].(string)
			}
		}
	}
	if addr == "" {
		t.Fatalf("serve did not start: %s", logs.String())
	}

	// A session minted with the same key: the proxy needs no provider for a fresh token.
	store, err := session.NewCookieStore(session.CookieOptions{Keys: []session.KeyPair{key}, RefreshPaths: []string{"/api/"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cookies, err := store.Save(ctx, httptest.NewRequest("GET", "/", nil), &session.Session{
		ID: session.NewID(), Subject: "alice", IDToken: "h.e.s", AccessToken: "at", AccessIssued: now,
		AccessExpiry: now.Add(time.Hour), RefreshToken: "rt", Expiry: now.Add(2 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/slow", nil)
	req.Header.Set("X-CSRF", "1")
	for _, c := range cookies {
		if c.MaxAge > 0 && (c.Path == "/" || c.Path == "/api/") {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, string(b), nil}
	}()
	<-started
	cancel() // what SIGTERM does through signal.NotifyContext
	r := <-res
	if r.err != nil || r.status != 200 || r.body != "done" {
		t.Fatalf("in-flight request during shutdown = %d %q %v, want 200 done", r.status, r.body, r.err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve() = %v, want nil after a clean shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after shutdown")
	}
	if _, err := http.Get("http://" + addr + "/"); err == nil {
		t.Errorf("the listener still accepts connections after shutdown")
	}
}
