package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// Cookie names of the fakes (the real ones come from session.CookieNames).
const (
	atName = "__Host-Http-th-at"
	idName = "__Host-Http-th-id"
	rtName = "__Secure-th-rt"
)

// ownCookie is the fake session.CookieNames.Owns: a base name or a chunk of one.
func ownCookie(name string) bool {
	base := name
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		base = name[:i]
	}
	return base == atName || base == idName || base == rtName
}

// fakeStore is an in-memory session.Store: the access cookie's value names the session.
type fakeStore struct {
	mu       sync.Mutex
	sessions map[string]*session.Session
	loadErr  error
	saveErr  error
	saved    []*session.Session
	deletes  int
}

func (f *fakeStore) Load(_ context.Context, r *http.Request) (*session.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loadErr != nil {
		return nil, f.loadErr
	}
	c, err := r.Cookie(atName)
	if err != nil {
		return nil, fmt.Errorf("fake: %w", session.ErrNoSession)
	}
	s, ok := f.sessions[c.Value]
	if !ok {
		return nil, fmt.Errorf("fake: %w", session.ErrNoSession)
	}
	cp := *s
	return &cp, nil
}

func (f *fakeStore) Save(_ context.Context, _ *http.Request, s *session.Session) ([]*http.Cookie, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.saveErr != nil {
		return nil, f.saveErr
	}
	f.saved = append(f.saved, s)
	key := "sess-" + s.AccessToken
	cp := *s
	f.sessions[key] = &cp
	return []*http.Cookie{
		{Name: atName, Value: key, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode},
		{Name: rtName, Value: "sealed-rt", Path: "/api/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode},
		{Name: rtName, Value: "sealed-rt", Path: "/auth/refresh", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode},
	}, nil
}

func (f *fakeStore) Delete(_ context.Context, _ *http.Request, _ *session.Session) ([]*http.Cookie, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes++
	del := func(name, path string) *http.Cookie {
		return &http.Cookie{Name: name, Path: path, MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	}
	return []*http.Cookie{del(atName, "/"), del(idName, "/"), del(rtName, "/api/"), del(rtName, "/auth/refresh")}, nil
}

func (f *fakeStore) counts() (saves, deletes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.saved), f.deletes
}

// fakeTokens counts refreshes and hands out "<old>-new" (or next) tokens.
type fakeTokens struct {
	mu    sync.Mutex
	calls int
	err   error
	next  string
	clock *clock
}

func (f *fakeTokens) Refresh(_ context.Context, s *session.Session) (*session.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	ns := *s
	ns.AccessToken = f.next
	if ns.AccessToken == "" {
		ns.AccessToken = s.AccessToken + "-new"
	}
	ns.RefreshToken = "rt-2"
	ns.AccessIssued = f.clock.Now()
	ns.AccessExpiry = ns.AccessIssued.Add(time.Hour)
	return &ns, nil
}

func (f *fakeTokens) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// seen is what an upstream received.
type seen struct {
	Method     string
	RequestURI string // the request-target exactly as it came on the wire
	Host       string
	Header     http.Header
	Body       []byte
}

// upstream is an httptest server that records every request before fn answers it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newUpstream(t testing.TB, fn http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{r.Method, r.RequestURI, r.Host, r.Header.Clone(), body})
		u.mu.Unlock()
		if fn != nil {
			fn(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.reqs)
}

func (u *upstream) url(t testing.TB, path string) *url.URL {
	t.Helper()
	p, err := url.Parse(u.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const publicOrigin = "https://app.example.com"

// env is one Handler in front of one recording upstream, with fakes behind it.
type env struct {
	t      *testing.T
	up     *upstream
	store  *fakeStore
	tokens *fakeTokens
	clock  *clock
	h      *Handler
	opts   Options

	mu        sync.Mutex
	refreshes []string // "trigger/outcome"
	upstreams []string // "route status"
	errors    []string // "status code"
}

// newEnv builds an env whose one route "/api/" goes to an upstream answering with fn. A
// session "c1" (sid-1, access token at-1, refresh token rt-1, an hour left) is in the store.
func newEnv(t *testing.T, fn http.HandlerFunc, mutate ...func(*env, *Options)) *env {
	t.Helper()
	e := &env{t: t, up: newUpstream(t, fn), clock: &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}}
	now := e.clock.Now()
	e.store = &fakeStore{sessions: map[string]*session.Session{
		"c1": {
			ID: "sid-1", Subject: "alice", AccessToken: "at-1", RefreshToken: "rt-1",
			AccessIssued: now.Add(-time.Minute), AccessExpiry: now.Add(time.Hour), Expiry: now.Add(12 * time.Hour),
		},
	}}
	e.tokens = &fakeTokens{clock: e.clock}
	e.opts = Options{
		Routes:      []Route{{Path: "/api/", Upstream: e.up.url(t, "")}},
		RefreshSkew: 30 * time.Second,
		CSRF:        &web.CSRF{PublicOrigin: publicOrigin, AllowedOrigins: []string{"https://admin.example.com"}},
		OwnCookie:   ownCookie,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:         e.clock.Now,
		OnRefresh: func(trigger, outcome string, _ time.Duration) {
			e.mu.Lock()
			e.refreshes = append(e.refreshes, trigger+"/"+outcome)
			e.mu.Unlock()
		},
		OnUpstream: func(route string, status int, _ time.Duration) {
			e.mu.Lock()
			e.upstreams = append(e.upstreams, fmt.Sprint(route, " ", status))
			e.mu.Unlock()
		},
		OnError: func(status int, code string) {
			e.mu.Lock()
			e.errors = append(e.errors, fmt.Sprint(status, " ", code))
			e.mu.Unlock()
		},
	}
	for _, m := range mutate {
		m(e, &e.opts)
	}
	h, err := New(e.store, e.tokens, e.opts)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	e.h = h
	return e
}

// setSession replaces the session behind cookie c1.
func (e *env) setSession(fn func(s *session.Session)) {
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	fn(e.store.sessions["c1"])
}

// req is a request the SPA would send: CSRF header, Host, the session cookie c1.
func (e *env) req(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.Host = "app.example.com"
	r.Header.Set("X-CSRF", "1")
	r.AddCookie(&http.Cookie{Name: atName, Value: "c1"})
	return r
}

func (e *env) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// server runs the Handler behind a real HTTP server.
func (e *env) server() *httptest.Server {
	s := httptest.NewServer(e.h)
	e.t.Cleanup(s.Close)
	return s
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var v struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	return v.Error
}

// wantError checks an error answer of the proxy itself.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d (body %q)", w.Code, status, w.Body)
	}
	if got := errorCode(t, w.Body.Bytes()); got != code {
		t.Fatalf("error code = %q, want %q", got, code)
	}
}

// rawRequest sends text as it is over one TCP connection and reads the response.
func rawRequest(t *testing.T, addr, text string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, text); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", text, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, body
}

func TestTraversalRefused(t *testing.T) {
	e := newEnv(t, nil)
	srv := e.server()
	addr := strings.TrimPrefix(srv.URL, "http://")
	paths := []string{
		"/api/../admin",
		"/api/..",
		"/api/%2e%2e/x",
		"/api/%2E%2e/x",
		"/api/%2e/x",
		"/api/.%2E/x",
		"/api//x",
		"/api/a;b",
		"/api/a;jsessionid=1",
		"/api/%2f",
		"/api/a%2Fb",
		"/api/%5c",
		"/api/%5C..%5C",
		"/api/%00",
		"/api/a%00b",
		"/api/a\\b",
		"/api/..\\x",
		"/api/./x",
		"/api/.",
		"/api/%252e%252e/x",
		"/api/a%0ab",
		"/api/a%09b",
		"/api/a%7fb",
	}
	for _, cookie := range []string{"", "Cookie: " + atName + "=c1\r\n"} {
		for _, p := range paths {
			t.Run(fmt.Sprintf("%s/session=%t", p, cookie != ""), func(t *testing.T) {
				res, body := rawRequest(t, addr, "GET "+p+" HTTP/1.1\r\nHost: app.example.com\r\nX-CSRF: 1\r\n"+cookie+"Connection: close\r\n\r\n")
				if res.StatusCode != http.StatusBadRequest {
					t.Fatalf("GET %s = %d, want 400", p, res.StatusCode)
				}
				if got := errorCode(t, body); got != web.CodeBadRequest {
					t.Fatalf("GET %s: error = %q, want %q", p, got, web.CodeBadRequest)
				}
			})
		}
	}
	if got := e.up.requests(); len(got) != 0 {
		t.Fatalf("upstream saw %d requests (first %q), want none", len(got), got[0].RequestURI)
	}
	if got := e.tokens.count(); got != 0 {
		t.Fatalf("refreshes = %d, want 0", got)
	}
}

func TestRouting(t *testing.T) {
	admin := newUpstream(t, nil)
	svc := newUpstream(t, nil)
	e := newEnv(t, nil, func(e *env, o *Options) {
		o.Routes = append(o.Routes,
			Route{Path: "/api/admin/", Upstream: admin.url(t, "")},
			Route{Path: "/svc/", Upstream: svc.url(t, "/v1/"), StripPrefix: true},
		)
	})
	tests := []struct {
		name   string
		target string
		up     *upstream
		want   string // the request-target the upstream saw
	}{
		{"prefix", "/api/items", e.up, "/api/items"},
		{"longest prefix", "/api/admin/users", admin, "/api/admin/users"},
		{"not a segment prefix", "/api/adminx", e.up, "/api/adminx"},
		{"query kept", "/api/items?b=2&a=1&a=%20x&q=caf%C3%A9&empty=", e.up, "/api/items?b=2&a=1&a=%20x&q=caf%C3%A9&empty="},
		{"escapes kept", "/api/a%20b/caf%C3%A9", e.up, "/api/a%20b/caf%C3%A9"},
		{"trailing slash", "/api/items/", e.up, "/api/items/"},
		{"strip prefix under base path", "/svc/items/7?x=1", svc, "/v1/items/7?x=1"},
		{"strip prefix root", "/svc/", svc, "/v1/"},
		{"strip prefix with escapes", "/svc/a%20b", svc, "/v1/a%20b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tc.up.requests())
			w := e.do(e.req("GET", tc.target, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200 (%q)", tc.target, w.Code, w.Body)
			}
			reqs := tc.up.requests()
			if len(reqs) != before+1 {
				t.Fatalf("GET %s: upstream saw %d new requests, want 1", tc.target, len(reqs)-before)
			}
			if got := reqs[len(reqs)-1].RequestURI; got != tc.want {
				t.Fatalf("GET %s: upstream saw %q, want %q", tc.target, got, tc.want)
			}
			if got, want := reqs[len(reqs)-1].Host, strings.TrimPrefix(tc.up.URL, "http://"); got != want {
				t.Fatalf("GET %s: upstream Host = %q, want %q", tc.target, got, want)
			}
		})
	}

	for _, target := range []string{"/", "/apix", "/api", "/other/api/", "/auth/session"} {
		t.Run("not routed "+target, func(t *testing.T) {
			if e.h.Match(target) {
				t.Fatalf("Match(%q) = true, want false", target)
			}
			wantError(t, e.do(e.req("GET", target, nil)), http.StatusNotFound, web.CodeNotFound)
		})
	}
	if !e.h.Match("/svc/x") || !e.h.Match("/api/admin/") {
		t.Fatalf("Match of a routed path = false, want true")
	}
}

func TestMethods(t *testing.T) {
	ro := newUpstream(t, nil)
	e := newEnv(t, nil, func(e *env, o *Options) {
		o.Routes = append(o.Routes, Route{Path: "/ro/", Upstream: ro.url(t, ""), Methods: []string{"get", "HEAD"}})
	})
	tests := []struct {
		method, target string
		status         int
		allow          string
	}{
		{"GET", "/ro/x", http.StatusOK, ""},
		{"HEAD", "/ro/x", http.StatusOK, ""},
		{"POST", "/ro/x", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"DELETE", "/ro/x", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"get", "/ro/x", http.StatusMethodNotAllowed, "GET, HEAD"}, // methods are case-sensitive
		{"TRACE", "/ro/x", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"TRACE", "/api/x", http.StatusMethodNotAllowed, defaultAllow},
		{"CONNECT", "/api/x", http.StatusMethodNotAllowed, defaultAllow},
		{"PATCH", "/api/x", http.StatusOK, ""},
		{"OPTIONS", "/api/x", http.StatusOK, ""}, // not a preflight: just a method
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			before := len(ro.requests()) + len(e.up.requests())
			w := e.do(e.req(tc.method, tc.target, nil))
			after := len(ro.requests()) + len(e.up.requests())
			if tc.status != http.StatusOK {
				wantError(t, w, tc.status, web.CodeMethodNotAllowed)
				if got := w.Header().Get("Allow"); got != tc.allow {
					t.Fatalf("Allow = %q, want %q", got, tc.allow)
				}
				if after != before {
					t.Fatalf("upstreams saw %d requests, want none", after-before)
				}
				return
			}
			if w.Code != http.StatusOK || after != before+1 {
				t.Fatalf("%s %s = %d with %d upstream requests, want 200 and 1", tc.method, tc.target, w.Code, after-before)
			}
		})
	}
}

func TestAuthorizationReplaced(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name   string
		header map[string][]string
	}{
		{"none", nil},
		{"bearer", map[string][]string{"Authorization": {"Bearer evil"}}},
		{"basic", map[string][]string{"Authorization": {"Basic eDp4"}}},
		{"two", map[string][]string{"Authorization": {"Bearer evil", "Basic eDp4"}}},
		{"hop-by-hop trick", map[string][]string{"Authorization": {"Bearer evil"}, "Connection": {"Authorization, Cookie, X-Forwarded-For, X-CSRF"}}},
		{"hop-by-hop trick lower case", map[string][]string{"Connection": {"authorization"}}},
		{"proxy authorization", map[string][]string{"Proxy-Authorization": {"Basic eDp4"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.req("GET", "/api/me", nil)
			for k, vs := range tc.header {
				r.Header[k] = vs
			}
			if w := e.do(r); w.Code != http.StatusOK {
				t.Fatalf("GET = %d, want 200 (%q)", w.Code, w.Body)
			}
			reqs := e.up.requests()
			got := reqs[len(reqs)-1].Header
			if want := []string{"Bearer at-1"}; !slices.Equal(got["Authorization"], want) {
				t.Fatalf("upstream Authorization = %q, want %q", got["Authorization"], want)
			}
			if v := got.Get("Proxy-Authorization"); v != "" {
				t.Fatalf("upstream Proxy-Authorization = %q, want none", v)
			}
		})
	}
}

func TestOwnCookiesStripped(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name    string
		cookies []string
		want    []string // the upstream's Cookie header; nil: none
	}{
		{"mixed", []string{"theme=dark; " + atName + "=c1; " + rtName + "=x; b=2; " + idName + ".0=y; " + idName + ".1=z"}, []string{"theme=dark; b=2"}},
		{"only ours", []string{atName + "=c1; " + idName + "=y"}, nil},
		{"two headers", []string{"a=1; " + atName + "=c1", "b=2"}, []string{"a=1; b=2"}},
		{"foreign only", []string{"a=1; b=2; " + atName + "=c1"}, []string{"a=1; b=2"}},
		{"odd spacing", []string{"a=1;" + atName + "=c1 ;  b=2"}, []string{"a=1; b=2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.req("GET", "/api/me", nil)
			r.Header["Cookie"] = tc.cookies
			if w := e.do(r); w.Code != http.StatusOK {
				t.Fatalf("GET = %d, want 200 (%q)", w.Code, w.Body)
			}
			reqs := e.up.requests()
			if got := reqs[len(reqs)-1].Header["Cookie"]; !slices.Equal(got, tc.want) {
				t.Fatalf("upstream Cookie = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	e := newEnv(t, nil, func(e *env, o *Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	spoofed := map[string][]string{
		"X-Forwarded-For":   {"6.6.6.6"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-User":  {"admin"},
		"X_forwarded_email": {"admin@example.com"},
		"X-Real-Ip":         {"6.6.6.6"},
		"Forwarded":         {"for=6.6.6.6;proto=https"},
	}
	t.Run("untrusted peer", func(t *testing.T) {
		r := e.req("GET", "/api/x", nil)
		r.RemoteAddr = "192.0.2.7:4444"
		r.Host = "evil.example" // the client's own Host never becomes X-Forwarded-Host
		for k, v := range spoofed {
			r.Header[k] = v
		}
		e.do(r)
		reqs := e.up.requests()
		got := reqs[len(reqs)-1].Header
		// Host and proto are public_url's (https://app.example.com), not the client's
		// Host header or this plain-http connection.
		want := map[string]string{"X-Forwarded-For": "192.0.2.7", "X-Forwarded-Host": "app.example.com", "X-Forwarded-Proto": "https"}
		for k, v := range want {
			if !slices.Equal(got[k], []string{v}) {
				t.Errorf("upstream %s = %q, want [%q]", k, got[k], v)
			}
		}
		for k := range got {
			if forwardingHeader(k) && want[k] == "" {
				t.Errorf("upstream got %s = %q from an untrusted peer", k, got[k])
			}
		}
	})
	t.Run("trusted peer", func(t *testing.T) {
		r := e.req("GET", "/api/x", nil)
		r.RemoteAddr = "10.1.2.3:4444"
		for k, v := range spoofed {
			r.Header[k] = v
		}
		e.do(r)
		reqs := e.up.requests()
		got := reqs[len(reqs)-1].Header
		want := map[string]string{
			"X-Forwarded-For":   "6.6.6.6, 10.1.2.3",
			"X-Forwarded-Host":  "evil.example",
			"X-Forwarded-Proto": "https",
			"X-Forwarded-User":  "admin",
			"Forwarded":         "for=6.6.6.6;proto=https",
		}
		for k, v := range want {
			if !slices.Equal(got[k], []string{v}) {
				t.Errorf("upstream %s = %q, want [%q]", k, got[k], v)
			}
		}
	})
	t.Run("trusted peer without headers", func(t *testing.T) {
		r := e.req("GET", "/api/x", nil)
		r.RemoteAddr = "[::ffff:10.9.9.9]:4444"
		e.do(r)
		reqs := e.up.requests()
		got := reqs[len(reqs)-1].Header
		if v := got.Get("X-Forwarded-For"); v != "::ffff:10.9.9.9" {
			t.Errorf("upstream X-Forwarded-For = %q, want %q", v, "::ffff:10.9.9.9")
		}
		if v := got.Get("X-Forwarded-Host"); v != "app.example.com" {
			t.Errorf("upstream X-Forwarded-Host = %q, want %q", v, "app.example.com")
		}
	})
}

func TestUpstreamSetCookieFiltered(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", atName+"=planted; Path=/; Secure; HttpOnly")
		w.Header().Add("Set-Cookie", "theme=dark; Path=/")
		w.Header().Add("Set-Cookie", rtName+"=; Path=/api/; Max-Age=0")
		w.Header().Add("Set-Cookie", " "+idName+".1=x")
		w.Header().Add("Set-Cookie", "lang=en")
	})
	w := e.do(e.req("GET", "/api/x", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET = %d, want 200", w.Code)
	}
	if got, want := w.Header()["Set-Cookie"], []string{"theme=dark; Path=/", "lang=en"}; !slices.Equal(got, want) {
		t.Fatalf("Set-Cookie = %q, want %q", got, want)
	}

	only := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", atName+"=planted")
	})
	if got := only.do(only.req("GET", "/api/x", nil)).Header()["Set-Cookie"]; got != nil {
		t.Fatalf("Set-Cookie = %q, want none", got)
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name   string
		mutate func(r *http.Request)
		status int
		code   string
	}{
		{"header missing", func(r *http.Request) { r.Header.Del("X-CSRF") }, http.StatusForbidden, web.CodeCSRFFailed},
		{"header wrong", func(r *http.Request) { r.Header.Set("X-CSRF", "0") }, http.StatusForbidden, web.CodeCSRFFailed},
		{"header twice", func(r *http.Request) { r.Header.Add("X-CSRF", "1") }, http.StatusForbidden, web.CodeCSRFFailed},
		{"foreign origin", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, http.StatusForbidden, web.CodeOriginNotAllowed},
		{"null origin", func(r *http.Request) { r.Header.Set("Origin", "null") }, http.StatusForbidden, web.CodeOriginNotAllowed},
		{"no session and no header", func(r *http.Request) { r.Header.Del("X-CSRF"); r.Header.Del("Cookie") }, http.StatusForbidden, web.CodeCSRFFailed},
		{"public origin", func(r *http.Request) { r.Header.Set("Origin", publicOrigin) }, http.StatusOK, ""},
		{"allowed CORS origin", func(r *http.Request) { r.Header.Set("Origin", "https://admin.example.com") }, http.StatusOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.up.requests())
			r := e.req("POST", "/api/x", strings.NewReader("{}"))
			tc.mutate(r)
			w := e.do(r)
			sent := len(e.up.requests()) - before
			if tc.status == http.StatusOK {
				if w.Code != http.StatusOK || sent != 1 {
					t.Fatalf("POST = %d with %d upstream requests, want 200 and 1", w.Code, sent)
				}
				return
			}
			wantError(t, w, tc.status, tc.code)
			if sent != 0 {
				t.Fatalf("upstream saw %d requests, want none", sent)
			}
		})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !slices.Contains(e.errors, "403 csrf_failed") || !slices.Contains(e.errors, "403 origin_not_allowed") {
		t.Fatalf("OnError calls = %q, want 403 csrf_failed and 403 origin_not_allowed among them", e.errors)
	}
}

func TestNoSession(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name    string
		cookie  string
		loadErr error
		status  int
		code    string
	}{
		{"no cookie", "", nil, http.StatusUnauthorized, web.CodeUnauthenticated},
		{"unknown cookie", "nope", nil, http.StatusUnauthorized, web.CodeUnauthenticated},
		{"store error of no kind", "c1", errors.New("fake: bad MAC"), http.StatusUnauthorized, web.CodeUnauthenticated},
		{"store unavailable", "c1", fmt.Errorf("fake: %w", session.ErrStoreUnavailable), http.StatusServiceUnavailable, web.CodeSessionStoreUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.store.mu.Lock()
			e.store.loadErr = tc.loadErr
			e.store.mu.Unlock()
			r := e.req("GET", "/api/x", nil)
			r.Header.Del("Cookie")
			if tc.cookie != "" {
				r.AddCookie(&http.Cookie{Name: atName, Value: tc.cookie})
			}
			w := e.do(r)
			wantError(t, w, tc.status, tc.code)
			if sc := w.Header()["Set-Cookie"]; sc != nil {
				t.Fatalf("Set-Cookie = %q, want none (cookies are kept)", sc)
			}
		})
	}
	if got := e.up.requests(); len(got) != 0 {
		t.Fatalf("upstream saw %d requests, want none", len(got))
	}

	t.Run("past its lifetime", func(t *testing.T) {
		e := newEnv(t, nil)
		e.setSession(func(s *session.Session) { s.Expiry = e.clock.Now() })
		wantError(t, e.do(e.req("GET", "/api/x", nil)), http.StatusUnauthorized, web.CodeUnauthenticated)
		if len(e.up.requests()) != 0 || e.tokens.count() != 0 {
			t.Fatalf("upstream requests = %d, refreshes = %d, want 0 and 0", len(e.up.requests()), e.tokens.count())
		}
	})
}

func TestNew(t *testing.T) {
	up, _ := url.Parse("http://127.0.0.1:9")
	good := func() Options {
		return Options{Routes: []Route{{Path: "/api/", Upstream: up}}, CSRF: &web.CSRF{}, OwnCookie: ownCookie}
	}
	store, tokens := &fakeStore{}, &fakeTokens{}
	if _, err := New(store, tokens, good()); err != nil {
		t.Fatalf("New(good) = %v, want nil", err)
	}
	bad := func(raw string) *url.URL { u, _ := url.Parse(raw); return u }
	tests := []struct {
		name   string
		mutate func(o *Options)
	}{
		{"no CSRF", func(o *Options) { o.CSRF = nil }},
		{"no OwnCookie", func(o *Options) { o.OwnCookie = nil }},
		{"path without trailing slash", func(o *Options) { o.Routes[0].Path = "/api" }},
		{"relative path", func(o *Options) { o.Routes[0].Path = "api/" }},
		{"unclean path", func(o *Options) { o.Routes[0].Path = "/api/../x/" }},
		{"double slash path", func(o *Options) { o.Routes[0].Path = "//api/" }},
		{"duplicate path", func(o *Options) { o.Routes = append(o.Routes, o.Routes[0]) }},
		{"no upstream", func(o *Options) { o.Routes[0].Upstream = nil }},
		{"upstream scheme", func(o *Options) { o.Routes[0].Upstream = bad("ftp://h/") }},
		{"upstream without host", func(o *Options) { o.Routes[0].Upstream = bad("http:///x") }},
		{"upstream user info", func(o *Options) { o.Routes[0].Upstream = bad("http://u:p@h/") }},
		{"upstream query", func(o *Options) { o.Routes[0].Upstream = bad("http://h/?a=1") }},
		{"TRACE allowed", func(o *Options) { o.Routes[0].Methods = []string{"GET", "TRACE"} }},
		{"CONNECT allowed", func(o *Options) { o.Routes[0].Methods = []string{"connect"} }},
		{"bad method", func(o *Options) { o.Routes[0].Methods = []string{"GE T"} }},
		{"negative timeout", func(o *Options) { o.Routes[0].Timeout = -time.Second }},
		{"negative skew", func(o *Options) { o.RefreshSkew = -time.Second }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good()
			tc.mutate(&o)
			if h, err := New(store, tokens, o); err == nil {
				t.Fatalf("New() = %v, nil; want an error", h)
			}
		})
	}
	if _, err := New(nil, nil, good()); err == nil {
		t.Fatal("New(nil, nil, opts) = nil error, want one")
	}
}

func TestRouteOf(t *testing.T) {
	e := newEnv(t, nil, func(_ *env, o *Options) {
		o.Routes = append(o.Routes, Route{Path: "/api/admin/", Upstream: o.Routes[0].Upstream})
	})
	for path, want := range map[string]string{"/api/x": "/api/", "/api/admin/x": "/api/admin/", "/other": ""} {
		got, ok := e.h.RouteOf(path)
		if got != want || ok != (want != "") {
			t.Errorf("RouteOf(%q) = %q, %v, want %q", path, got, ok, want)
		}
	}
}
