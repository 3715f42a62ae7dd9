package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/config"
	"github.com/tokenhandler/tokenhandler/internal/testbench"
	"github.com/tokenhandler/tokenhandler/oauthagent"
	"github.com/tokenhandler/tokenhandler/session"
)

// TestServeDrainsOnShutdown: a request in flight when serve's context ends (SIGTERM)
// completes; serve then returns and the listener is closed.
func TestServeDrainsOnShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release // held until serve is shutting down
		_, _ = io.WriteString(w, "done")
	}))
	defer api.Close()

	key, _ := session.GenerateKeyPair()
	env := map[string]string{
		"TH_LISTEN": "127.0.0.1:0", "TH_ADMIN_LISTEN": "127.0.0.1:0", "TH_PUBLIC_URL": "http://127.0.0.1:8080",
		"TH_OIDC_ISSUER": "http://127.0.0.1:1/unreachable", "TH_OIDC_CLIENT_ID": "c", "TH_OIDC_CLIENT_SECRET": "s",
		"TH_COOKIES_KEYS": key.Reveal(), "TH_ROUTES": `[{"path":"/api/","upstream":"` + api.URL + `"}]`,
	}
	cfg := envConfig(t, env)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	addrs := make(chan listenAddrs, 1)
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil)), func(a listenAddrs) { addrs <- a })
	}()
	listening := waitListening(t, addrs, done, logs)
	addr := listening.Public.String()

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
	// The admin listener: alive, not ready (the issuer is unreachable), metrics served.
	admin := listening.Admin.String()
	if resp, err := http.Get("http://" + addr + "/auth/session"); err == nil {
		resp.Body.Close()
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/metrics": 200} {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET admin %s = %d, want %d", path, resp.StatusCode, want)
		}
		if want := `tokenhandler_http_requests_total{route="auth",status="200"} 1`; path == "/metrics" && !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cancel() // what SIGTERM does through signal.NotifyContext
	// Shutdown closes the listener first, then waits for the request in flight: no
	// event tells the test it has begun, so poll for the refused connection.
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	if err := testbench.Poll(pctx, 10*time.Millisecond, func(context.Context) (bool, error) {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err != nil, nil
	}); err != nil {
		t.Fatalf("the listener still accepts connections after cancel: %v", err)
	}
	close(release)
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

// TestServeTLS: with tls.cert_file and tls.key_file, the public listener speaks HTTPS.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)

	kp, _ := session.GenerateKeyPair()
	env := map[string]string{
		"TH_LISTEN": "127.0.0.1:0", "TH_ADMIN_LISTEN": "", "TH_PUBLIC_URL": "https://127.0.0.1:8443",
		"TH_OIDC_ISSUER": "http://127.0.0.1:1/unreachable", "TH_OIDC_CLIENT_ID": "c", "TH_OIDC_CLIENT_SECRET": "s",
		"TH_COOKIES_KEYS": kp.Reveal(), "TH_TLS_CERT_FILE": certFile, "TH_TLS_KEY_FILE": keyFile,
	}
	cfg := envConfig(t, env)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	addrs := make(chan listenAddrs, 1)
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil)), func(a listenAddrs) { addrs <- a })
	}()
	listening := waitListening(t, addrs, done, logs)
	defer func() { cancel(); <-done }()
	addr := listening.Public.String()

	pool := x509.NewCertPool()
	pool.AddCert(mustParseCert(t, der))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + addr + "/auth/session")
	if err != nil {
		t.Fatalf("HTTPS request: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.TLS == nil || !strings.Contains(string(b), `"authenticated":false`) {
		t.Errorf("GET https://.../auth/session = %d %s (TLS %v)", resp.StatusCode, b, resp.TLS != nil)
	}
	// Go's TLS server answers plain HTTP with 400 "client sent an HTTP request to an
	// HTTPS server": never the endpoint itself.
	if plain, err := http.Get("http://" + addr + "/auth/session"); err == nil {
		plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP reached /auth/session on the TLS listener")
		}
	}
}

func mustParseCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitListening returns the addresses serve reports once it listens, or fails the test
// with serve's error and log if it returns first.
func waitListening(t *testing.T, addrs <-chan listenAddrs, done <-chan error, logs *syncBuffer) listenAddrs {
	t.Helper()
	select {
	case a := <-addrs:
		return a
	case err := <-done:
		t.Fatalf("serve() = %v before it listened; log:\n%s", err, logs.String())
	}
	return listenAddrs{}
}

// testApp builds tokenhandler from TH_* settings, without a reachable provider.
func testApp(t *testing.T, extra map[string]string) *app {
	t.Helper()
	kp, _ := session.GenerateKeyPair()
	env := map[string]string{
		"TH_PUBLIC_URL": "https://app.example", "TH_OIDC_ISSUER": "http://127.0.0.1:1/unreachable",
		"TH_OIDC_CLIENT_ID": "c", "TH_OIDC_CLIENT_SECRET": "s", "TH_COOKIES_KEYS": kp.Reveal(), "TH_ADMIN_LISTEN": "",
	}
	for k, v := range extra {
		env[k] = v
	}
	a, err := newApp(envConfig(t, env), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.closeRedis)
	return a
}

// TestAuthAnswersAreNeverCachedOrFramed: every answer under the auth prefix carries the
// security headers, the 400 for an unclean path and a CORS preflight included.
func TestAuthAnswersAreNeverCachedOrFramed(t *testing.T) {
	a := testApp(t, map[string]string{"TH_CORS_ALLOWED_ORIGINS": "https://admin.example"})
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
	}{
		{"session", "GET", "/auth/session", nil, 200},
		{"unknown", "GET", "/auth/nope", nil, 404},
		{"wrong method", "GET", "/auth/logout", nil, 405},
		{"unclean path", "GET", "/auth/%2e%2e/session", nil, 400},
		{"CORS preflight", "OPTIONS", "/auth/refresh", map[string]string{"Origin": "https://admin.example", "Access-Control-Request-Method": "POST"}, 204},
		{"login before discovery", "GET", "/auth/login", nil, 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "https://app.example"+tc.path, nil)
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			a.public.ServeHTTP(rec, r)
			if rec.Code != tc.status {
				t.Fatalf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.status)
			}
			for k, want := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"} {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s %s: %s = %q, want %q", tc.method, tc.path, k, got, want)
				}
			}
		})
	}
}

// TestServerLimits: header and idle timeouts from server.*, a 64 KiB header cap, and no
// write or whole-read timeout, which would cut streams and slow uploads.
func TestServerLimits(t *testing.T) {
	cfg := config.Default()
	cfg.Server.ReadHeaderTimeout, cfg.Server.IdleTimeout = 7*time.Second, 77*time.Second
	s := newServer(http.NotFoundHandler(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if s.ReadHeaderTimeout != 7*time.Second || s.IdleTimeout != 77*time.Second || s.MaxHeaderBytes != 64<<10 || s.WriteTimeout != 0 || s.ReadTimeout != 0 {
		t.Errorf("newServer: ReadHeaderTimeout=%v IdleTimeout=%v MaxHeaderBytes=%d WriteTimeout=%v ReadTimeout=%v",
			s.ReadHeaderTimeout, s.IdleTimeout, s.MaxHeaderBytes, s.WriteTimeout, s.ReadTimeout)
	}

}

// TestServeStopsOnUnfitProvider: with oidc.par required, a provider whose discovery
// offers no PAR endpoint stops serve with the reason, instead of a retry loop.
func TestServeStopsOnUnfitProvider(t *testing.T) {
	var idp *httptest.Server
	idp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"issuer":"`+idp.URL+`","authorization_endpoint":"`+idp.URL+`/auth","token_endpoint":"`+idp.URL+`/token","jwks_uri":"`+idp.URL+`/jwks"}`)
	}))
	defer idp.Close()
	key, _ := session.GenerateKeyPair()
	cfg := envConfig(t, map[string]string{
		"TH_LISTEN": "127.0.0.1:0", "TH_ADMIN_LISTEN": "", "TH_PUBLIC_URL": "http://127.0.0.1:8080",
		"TH_OIDC_ISSUER": idp.URL, "TH_OIDC_CLIENT_ID": "c", "TH_OIDC_CLIENT_SECRET": "s",
		"TH_OIDC_PAR": "required", "TH_COOKIES_KEYS": key.Reveal(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil) }()
	select {
	case err := <-done:
		if !errors.Is(err, oauthagent.ErrProviderUnfit) {
			t.Fatalf("serve = %v, want ErrProviderUnfit", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve kept running against a provider without PAR while oidc.par is required")
	}
}
