//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// The demo users: demoUsers of them, user i signing in as userEmail(i) (0 is alice), all
// with testbench.DemoPassword. The refresh storm needs a user per session: Dex keeps one
// refresh token per user and client, and a new login revokes the previous one.
const (
	demoUsers = 200
	demoUser  = "alice"
	demoEmail = "alice@example.com"
	clientID  = "bench"
)

// dex is a Dex process behind a front reverse proxy in the harness whose URL is the
// issuer, so the harness counts token-endpoint calls whoever makes them (go-oidc
// follows discovery, which names the front).
type dex struct {
	Issuer       string
	ClientSecret string

	proc         *testbench.Process
	front        *http.Server
	down         atomic.Bool // the front answers 503 to everything: the provider is "not up yet"
	tokenCalls   atomic.Int64
	refreshCalls atomic.Int64

	mu         sync.Mutex
	refreshLat []time.Duration // each refresh call's time at the front: request in to answer out
}

// refreshLatencies returns the latency of every refresh call so far, in order.
func (d *dex) refreshLatencies() []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.refreshLat)
}

// startDex starts Dex with access (and ID) tokens valid for ttl and one confidential
// client that accepts the given redirect URLs. It returns once discovery answers
// through the front.
func startDex(ctx context.Context, ps *procs, bin, dir string, ttl time.Duration, redirects []string) (*dex, error) {
	ports, err := testbench.FreePorts(2)
	if err != nil {
		return nil, err
	}
	frontLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
	if err != nil {
		return nil, err
	}
	d := &dex{Issuer: fmt.Sprintf("http://127.0.0.1:%d/dex", ports[0]), ClientSecret: testbench.RandomHex(16)}
	backend := &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(backend)
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256},
		// While Dex starts, the readiness poll gets 502s: nothing worth a log line.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	d.front = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		refresh := false
		if r.URL.Path == "/dex/token" {
			d.tokenCalls.Add(1)
			if refresh = testbench.PeekGrantType(r) == "refresh_token"; refresh {
				d.refreshCalls.Add(1)
			}
		}
		t0 := time.Now()
		rp.ServeHTTP(w, r)
		if refresh {
			lat := time.Since(t0)
			d.mu.Lock()
			d.refreshLat = append(d.refreshLat, lat)
			d.mu.Unlock()
		}
		if os.Getenv("BENCH_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "bench: dex front: %s %s %s\n", r.Method, r.URL.Path, time.Since(t0))
		}
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.front.Serve(frontLn) }()

	cfg := testbench.Dex{
		Issuer:     d.Issuer,
		Listen:     backend.Host,
		LogLevel:   "warn",
		IDTokenTTL: ttl, // also the access tokens' lifetime
		Users:      users(),
		Clients:    []testbench.DexClient{{ID: clientID, Secret: d.ClientSecret, Name: "bench", RedirectURIs: redirects}},
	}
	cfgPath := filepath.Join(dir, fmt.Sprintf("dex-%d.yaml", ports[0]))
	if err := testbench.WriteConfig(cfgPath, cfg.Config()); err != nil {
		d.front.Close()
		return nil, err
	}
	d.proc, err = ps.start("dex", bin, []string{"serve", cfgPath}, []string{testbench.DexEnv}, filepath.Join(dir, fmt.Sprintf("dex-%d.log", ports[0])))
	if err != nil {
		d.front.Close()
		return nil, err
	}
	if _, err := waitHTTP(ctx, d.proc, d.Issuer+"/.well-known/openid-configuration", http.StatusOK, 30*time.Second); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

func (d *dex) stop() {
	d.proc.Stop(stopGrace)
	d.front.Close()
}

// users are Dex's static users.
func users() []testbench.DexUser {
	out := make([]testbench.DexUser, demoUsers)
	for i := range out {
		id := demoUser
		if i > 0 {
			id = fmt.Sprintf("user%d", i)
		}
		out[i] = testbench.DexUser{ID: id, Email: userEmail(i)}
	}
	return out
}

func userEmail(i int) string {
	if i == 0 {
		return demoEmail
	}
	return fmt.Sprintf("user%d@example.com", i)
}

// newBrowser returns a client that keeps cookies as a browser does on loopback (Secure
// cookies are stored and sent over http://127.0.0.1, which browsers treat as a secure
// context) and follows redirects.
func newBrowser() *http.Client {
	jar, _ := testbench.NewJar() // cookiejar.New(nil) does not fail
	return &http.Client{Jar: jar, Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second}
}

// signIn signs user (see userEmail) in with c as a browser would: GET startURL, follow
// the redirects to Dex's login form, post it, follow the redirects back through the
// relying party's callback. It returns the final response's status.
func signIn(ctx context.Context, c *http.Client, startURL string, user int) (int, error) {
	res, err := testbench.SignIn(ctx, c, startURL, testbench.Flow{Username: userEmail(user), Password: testbench.DemoPassword})
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer res.Response.Body.Close()
	if os.Getenv("BENCH_DEBUG") != "" {
		for r := res.Response; r != nil && r.Request != nil; r = r.Request.Response {
			fmt.Fprintf(os.Stderr, "bench: sign in: %s %s -> %s\n", r.Request.Method, r.Request.URL.Redacted(), r.Status)
		}
	}
	if !res.Posted {
		return 0, fmt.Errorf("bench: sign in: no login form at %s (%s)", res.Response.Request.URL.Redacted(), res.Response.Status)
	}
	return res.Response.StatusCode, nil
}

// cookieHeader is the Cookie header c's jar sends to u.
func cookieHeader(c *http.Client, u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return ""
	}
	var parts []string
	for _, ck := range c.Jar.Cookies(pu) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return strings.Join(parts, "; ")
}
