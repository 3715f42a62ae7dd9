package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/config"
	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/session"
)

// stack is tokenhandler in-process on a loopback listener, in front of a real provider
// started by the harness, with every response and log line recorded so that tests can
// look for leaked secrets.
type stack struct {
	t    testing.TB
	idp  *idptest.Provider
	api  *upstream // the API behind the route /api/
	app  *app
	cfg  *config.Config
	url  string // http://127.0.0.1:PORT, the public URL
	logs *syncBuffer
	rec  *recorder
}

type stackOptions struct {
	kind string
	idp  idptest.Options
	env  map[string]string // extra TH_* settings
	// idpEnv, when set, gives more TH_* settings once the provider runs (its URLs).
	idpEnv func(*idptest.Provider) map[string]string
}

func startStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	o.idp.RedirectURL = base + "/auth/callback"
	if o.idp.PostLogoutRedirectURL == "" {
		o.idp.PostLogoutRedirectURL = base + "/"
	}
	idp := idptest.Start(t, o.kind, o.idp)
	api := newUpstream(t)

	key, err := session.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"TH_PUBLIC_URL":         base,
		"TH_OIDC_ISSUER":        idp.Issuer,
		"TH_OIDC_CLIENT_ID":     idp.ClientID,
		"TH_OIDC_CLIENT_SECRET": idp.ClientSecret,
		"TH_COOKIES_KEYS":       key.Reveal(),
		"TH_ADMIN_LISTEN":       "",
		"TH_ROUTES":             `[{"path":"/api/","upstream":"` + api.srv.URL + `","timeout":"5s"}]`,
	}
	for k, v := range o.env {
		env[k] = v
	}
	if o.idpEnv != nil {
		for k, v := range o.idpEnv(idp) {
			env[k] = v
		}
	}
	cfg := envConfig(t, env)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := newApp(cfg, logger)
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.agent.Discover(ctx); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	rec := &recorder{}
	srv := &http.Server{Handler: rec.wrap(a.public), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: maxHeaderBytes}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		// Every Set-Cookie of every response, deletions included, against the
		// __Host-/__Secure- rules that Go's cookiejar does not enforce.
		for _, r := range rec.all() {
			idptest.CheckSetCookies(t, r.header)
		}
		if t.Failed() {
			t.Logf("tokenhandler log:\n%s", logs.String())
		}
	})
	return &stack{t: t, idp: idp, api: api, app: a, cfg: cfg, url: base, logs: logs, rec: rec}
}

// envConfig is the validated configuration that exactly these TH_* variables give; an
// error or a warning (an unknown TH_ variable) fails the test.
func envConfig(t testing.TB, env map[string]string) *config.Config {
	t.Helper()
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	cfg, warnings, err := config.Load("", func(k string) string { return env[k] }, environ)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("config.Load = %v, warnings %v", err, warnings)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return cfg
}

// signIn runs a whole login for a fresh browser-like client and returns it.
func (s *stack) signIn(returnTo string) *http.Client {
	s.t.Helper()
	c := idptest.NewClient(s.t)
	resp := s.idp.SignIn(s.t, c, s.url+"/auth/login?return_to="+url.QueryEscape(returnTo))
	resp.Body.Close()
	if got := resp.Request.URL.String(); got != s.url+returnTo {
		s.t.Fatalf("after sign-in the browser is at %s, want %s", got, s.url+returnTo)
	}
	return c
}

// do sends a request with the client's cookies, the CSRF header on anything but GET.
func (s *stack) do(c *http.Client, method, path string, hdr map[string]string) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if method != http.MethodGet {
		req.Header.Set("X-CSRF", "1")
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	noFollow := *c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// session opens the session the client's cookies carry on path, as tokenhandler would.
func (s *stack) session(c *http.Client, path string) (*session.Session, error) {
	s.t.Helper()
	u, _ := url.Parse(s.url + path)
	req := httptest.NewRequest(http.MethodGet, s.url+path, nil)
	for _, ck := range c.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	store, err := session.NewCookieStore(s.cookieOptions())
	if err != nil {
		s.t.Fatal(err)
	}
	return store.Load(context.Background(), req)
}

func (s *stack) cookieOptions() session.CookieOptions {
	kp, err := session.ParseKeyPair(string(s.cfg.Cookies.Keys[0]))
	if err != nil {
		s.t.Fatal(err)
	}
	paths := []string{"/auth/refresh", "/auth/logout", "/auth/userinfo"}
	for _, r := range s.cfg.Routes {
		paths = append(paths, r.Path)
	}
	return session.CookieOptions{Keys: []session.KeyPair{kp}, Prefix: s.cfg.Cookies.Prefix, RefreshPaths: paths, Lifetime: s.cfg.Session.Lifetime}
}

// assertNoLeak fails when any of secrets appears in a response tokenhandler wrote
// (bodies, headers, Location) or in its log. Set-Cookie headers carry sealed values by
// design and are left out; allowInLogoutURL lists the ID tokens that may appear as
// id_token_hint inside a logout_url.
func (s *stack) assertNoLeak(secrets map[string]string, allowInLogoutURL ...string) {
	s.t.Helper()
	logs := s.logs.String()
	for what, v := range secrets {
		if len(v) < 8 {
			continue
		}
		if strings.Contains(logs, v) {
			s.t.Errorf("the log contains the %s", what)
		}
		for _, r := range s.rec.all() {
			text := r.text()
			for _, ok := range allowInLogoutURL {
				if ok == v {
					text = strings.ReplaceAll(text, "id_token_hint="+url.QueryEscape(v), "")
				}
			}
			if strings.Contains(text, v) {
				s.t.Errorf("a response to %s contains the %s", r.path, what)
			}
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder keeps every response tokenhandler writes. One mutex guards all of it, since
// a test may read while a handler still writes.
type recorder struct {
	mu     sync.Mutex
	resp   []*recorded
	served chan struct{} // closed (and replaced) each time a handler returns; see next
}

// next returns a channel that is closed when the next handler returns.
func (r *recorder) next() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.served == nil {
		r.served = make(chan struct{})
	}
	return r.served
}

// waitServed waits until cond holds, checking it now and after each response r records,
// for at most timeout. It reports whether cond held.
func waitServed(r *recorder, timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		next := r.next() // before the check, so no response slips between the two
		if cond() {
			return true
		}
		select {
		case <-next:
		case <-deadline.C:
			return cond()
		}
	}
}

type recorded struct {
	path   string
	header http.Header // set when the handler returns
	body   bytes.Buffer
}

func (r *recorded) text() string {
	h := r.header.Clone()
	h.Del("Set-Cookie")
	var b strings.Builder
	_ = h.Write(&b)
	b.Write(r.body.Bytes())
	return b.String()
}

func (r *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := &recorded{path: req.URL.Path}
		r.mu.Lock()
		r.resp = append(r.resp, rec)
		r.mu.Unlock()
		h.ServeHTTP(&teeWriter{ResponseWriter: w, r: r, rec: rec}, req)
		r.mu.Lock()
		rec.header = w.Header().Clone()
		if r.served != nil {
			close(r.served)
			r.served = nil
		}
		r.mu.Unlock()
	})
}

// all returns a snapshot of the responses whose handlers have returned.
func (r *recorder) all() []*recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*recorded
	for _, rec := range r.resp {
		if rec.header == nil {
			continue
		}
		cp := &recorded{path: rec.path, header: rec.header.Clone()}
		cp.body.Write(rec.body.Bytes())
		out = append(out, cp)
	}
	return out
}

type teeWriter struct {
	http.ResponseWriter
	r   *recorder
	rec *recorded
}

func (t *teeWriter) Write(p []byte) (int, error) {
	t.r.mu.Lock()
	t.rec.body.Write(p)
	t.r.mu.Unlock()
	return t.ResponseWriter.Write(p)
}

func (t *teeWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (t *teeWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return m
}

// upstream is the API behind tokenhandler in the tests: it records exactly what it
// received and answers 200 with a small JSON body unless respond says otherwise.
type upstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	seen    []seenRequest
	respond func(w http.ResponseWriter, r *http.Request, n int) bool // n counts requests to r's path; true: answered
}

type seenRequest struct {
	Method, URI string
	Auth        []string
	Cookie      string
	Body        []byte
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{r.Method, r.RequestURI, r.Header.Values("Authorization"), r.Header.Get("Cookie"), body})
		n := 0
		for _, s := range u.seen {
			if s.URI == r.RequestURI {
				n++
			}
		}
		respond := u.respond
		u.mu.Unlock()
		if respond != nil && respond(w, r, n) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

func (u *upstream) reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seen = nil
}
