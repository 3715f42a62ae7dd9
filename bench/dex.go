//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
)

// The demo users: demoUsers of them, user i signing in as userEmail(i) (0 is alice), all
// with demoPassword (its bcrypt hash, cost 10, is the one e2e/idptest uses). The refresh
// storm needs a user per session: Dex keeps one refresh token per user and client, and
// a new login revokes the previous one.
const (
	demoUsers        = 200
	demoUser         = "alice"
	demoEmail        = "alice@example.com"
	demoPassword     = "alice-password"
	demoPasswordHash = "$2a$10$4nKF60qOw0cOar8NS/uXve2fYfEVkauxhsy1jEOktvgrnV0Dkz02m"
	clientID         = "bench"
)

// dex is a Dex process behind a front reverse proxy in the harness whose URL is the
// issuer, so the harness counts token-endpoint calls whoever makes them (go-oidc
// follows discovery, which names the front).
type dex struct {
	Issuer       string
	ClientSecret string

	proc         *proc
	front        *http.Server
	down         atomic.Bool // the front answers 503 to everything: the provider is "not up yet"
	tokenCalls   atomic.Int64
	refreshCalls atomic.Int64
}

// startDex starts Dex with access (and ID) tokens valid for ttl and one confidential
// client that accepts the given redirect URLs. It returns once discovery answers
// through the front.
func startDex(ctx context.Context, ps *procs, bin, dir string, ttl time.Duration, redirects []string) (*dex, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	frontLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
	if err != nil {
		return nil, err
	}
	d := &dex{Issuer: fmt.Sprintf("http://127.0.0.1:%d/dex", ports[0]), ClientSecret: randomHex(16)}
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
		if r.URL.Path == "/dex/token" {
			d.tokenCalls.Add(1)
			if peekGrantType(r) == "refresh_token" {
				d.refreshCalls.Add(1)
			}
		}
		t0 := time.Now()
		rp.ServeHTTP(w, r)
		if os.Getenv("BENCH_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "bench: dex front: %s %s %s\n", r.Method, r.URL.Path, time.Since(t0))
		}
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.front.Serve(frontLn) }()

	cfg := map[string]any{
		"issuer":  d.Issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": backend.Host},
		"logger":  map[string]any{"level": "warn"},
		"expiry": map[string]any{
			"idTokens":      ttl.String(), // also the access tokens' lifetime
			"refreshTokens": map[string]any{"reuseInterval": "0s"},
		},
		"oauth2": map[string]any{
			"skipApprovalScreen": true,
			"pkce":               map[string]any{"enforce": true},
		},
		"enablePasswordDB": true,
		"staticPasswords":  users(),
		"staticClients": []map[string]any{{
			"id": clientID, "secret": d.ClientSecret, "name": "bench", "redirectURIs": redirects,
		}},
	}
	b, err := json.Marshal(cfg) // JSON is YAML
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, fmt.Sprintf("dex-%d.yaml", ports[0]))
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return nil, err
	}
	// DEX_SESSIONS_ENABLED as in e2e/idptest: without it, this Dex (master) never
	// answers a refresh-token grant (found here: the request hangs until the client's
	// timeout).
	d.proc, err = ps.start("dex", bin, []string{"serve", cfgPath}, []string{"DEX_SESSIONS_ENABLED=true"}, filepath.Join(dir, fmt.Sprintf("dex-%d.log", ports[0])))
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
	d.proc.stop()
	d.front.Close()
}

// users are Dex's static users.
func users() []map[string]any {
	out := make([]map[string]any, demoUsers)
	for i := range out {
		id := demoUser
		if i > 0 {
			id = fmt.Sprintf("user%d", i)
		}
		out[i] = map[string]any{"email": userEmail(i), "hash": demoPasswordHash, "username": id, "userID": id}
	}
	return out
}

func userEmail(i int) string {
	if i == 0 {
		return demoEmail
	}
	return fmt.Sprintf("user%d@example.com", i)
}

// peekGrantType reads grant_type from a form body and puts the body back unchanged.
func peekGrantType(r *http.Request) string {
	if r.Body == nil || r.Body == http.NoBody {
		return ""
	}
	head, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
	form, err := url.ParseQuery(string(head))
	if err != nil {
		return ""
	}
	return form.Get("grant_type")
}

// newBrowser returns a client that keeps cookies as a browser does on loopback (Secure
// cookies are stored and sent over http://127.0.0.1, which browsers treat as a secure
// context) and follows redirects.
func newBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:       loopbackJar{jar},
		Transport: &http.Transport{Proxy: nil},
		Timeout:   30 * time.Second,
	}
}

type loopbackJar struct{ jar *cookiejar.Jar }

func (j loopbackJar) SetCookies(u *url.URL, cs []*http.Cookie) { j.jar.SetCookies(secure(u), cs) }
func (j loopbackJar) Cookies(u *url.URL) []*http.Cookie        { return j.jar.Cookies(secure(u)) }

func secure(u *url.URL) *url.URL {
	if u.Scheme != "http" {
		return u
	}
	s := *u
	s.Scheme = "https"
	return &s
}

var (
	formRe  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRe = regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	attrRe  = regexp.MustCompile(`(?is)([a-z_:][-a-z0-9_:.]*)\s*=\s*"([^"]*)"`)
)

// signIn signs the demo user in with c as a browser would: GET startURL, follow the
// redirects to Dex's login form, post it, follow the redirects back through the relying
// party's callback. It returns the final response's status. user picks the user (see
// userEmail).
func signIn(ctx context.Context, c *http.Client, startURL string, user int) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, startURL, nil)
	res, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: sign in: GET %s: %w", startURL, err)
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	action, values, ok := loginForm(res.Request.URL, body)
	if !ok {
		return 0, fmt.Errorf("bench: sign in: no login form at %s (%s)", res.Request.URL.Redacted(), res.Status)
	}
	values.Set("login", userEmail(user))
	values.Set("password", demoPassword)
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, action, strings.NewReader(values.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err = c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: sign in: POST the login form: %w", err)
	}
	body, _ = io.ReadAll(io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	if os.Getenv("BENCH_DEBUG") != "" {
		for r := res; r != nil && r.Request != nil; r = r.Request.Response {
			fmt.Fprintf(os.Stderr, "bench: sign in: %s %s -> %s\n", r.Request.Method, r.Request.URL.Redacted(), r.Status)
		}
		fmt.Fprintf(os.Stderr, "bench: sign in: posted to %s; final body: %.300s\n", action, body)
	}
	if _, _, again := loginForm(res.Request.URL, body); again {
		return 0, errors.New("bench: sign in: the login form came back: wrong credentials?")
	}
	return res.StatusCode, nil
}

// loginForm finds the POST form with a password field on a page.
func loginForm(page *url.URL, body []byte) (string, url.Values, bool) {
	for _, m := range formRe.FindAllSubmatch(body, -1) {
		attrs := attributes(string(m[1]))
		if !strings.EqualFold(attrs["method"], "post") {
			continue
		}
		values := url.Values{}
		password := false
		for _, in := range inputRe.FindAllSubmatch(m[2], -1) {
			a := attributes(string(in[1]))
			if strings.EqualFold(a["type"], "password") {
				password = true
			}
			if a["name"] != "" {
				values.Set(a["name"], a["value"])
			}
		}
		if !password {
			continue
		}
		action, err := page.Parse(attrs["action"])
		if err != nil {
			continue
		}
		return action.String(), values, true
	}
	return "", nil, false
}

func attributes(s string) map[string]string {
	out := map[string]string{}
	for _, m := range attrRe.FindAllStringSubmatch(s, -1) {
		name := strings.ToLower(m[1])
		if _, ok := out[name]; !ok {
			out[name] = html.UnescapeString(m[2])
		}
	}
	return out
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
