package main

import (
	"context"
	"fmt"
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
	"github.com/tokenhandler/tokenhandler/internal/testbench"
	"github.com/tokenhandler/tokenhandler/redisclient"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/session/sessiontest"
)

// cluster is several tokenhandler replicas (each its own newApp on its own loopback
// listener, as separate processes would be) sharing one Redis, one key ring and one
// real provider. The public URL is the first replica's; a browser's cookie jar sends the
// same cookies to every replica (cookies ignore ports), so a test can alternate freely.
type cluster struct {
	t        *testing.T
	idp      *idptest.Provider
	api      *upstream
	store    string // "cookie" or "redis"
	redisURL string
	prefix   string
	key      session.KeyPair
	env      map[string]string
	nodes    []*node
}

// node is one replica.
type node struct {
	url  string
	app  *app
	cfg  *config.Config
	srv  *http.Server
	logs *syncBuffer
	rec  *recorder // every response the replica wrote; rec.served fires on each
	stop func()
}

type clusterOptions struct {
	kind     string
	store    string // "cookie" (with redis.url) or "redis"
	replicas int
	idp      idptest.Options
	env      map[string]string
	redisURL string // "": the shared test Redis
	// backchannelNode is the replica the provider sends logout tokens to.
	backchannelNode int
}

func startCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	if o.redisURL == "" {
		o.redisURL = sessiontest.RedisURL(t)
	}
	if o.replicas == 0 {
		o.replicas = 2
	}
	lns := make([]net.Listener, o.replicas)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	base := "http://" + lns[0].Addr().String()
	o.idp.RedirectURL = base + "/auth/callback"
	o.idp.PostLogoutRedirectURL = base + "/"
	o.idp.BackchannelLogoutURL = "http://" + lns[o.backchannelNode].Addr().String() + "/auth/backchannel-logout"
	idp := idptest.Start(t, o.kind, o.idp)
	key, err := session.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, idp: idp, api: newUpstream(t), store: o.store, redisURL: o.redisURL,
		prefix: sessiontest.KeyPrefix(t, o.redisURL), key: key}
	c.env = map[string]string{
		"TH_PUBLIC_URL":         base,
		"TH_OIDC_ISSUER":        idp.Issuer,
		"TH_OIDC_CLIENT_ID":     idp.ClientID,
		"TH_OIDC_CLIENT_SECRET": idp.ClientSecret,
		"TH_COOKIES_KEYS":       key.Reveal(),
		"TH_ADMIN_LISTEN":       "",
		"TH_ROUTES":             `[{"path":"/api/","upstream":"` + c.api.srv.URL + `","timeout":"5s"}]`,
		"TH_SESSION_STORE":      o.store,
		"TH_REDIS_URL":          o.redisURL,
		"TH_REDIS_KEY_PREFIX":   c.prefix,
	}
	for k, v := range o.env {
		c.env[k] = v
	}
	for _, ln := range lns {
		c.nodes = append(c.nodes, c.startNode(ln))
	}
	return c
}

// startNode runs one more replica on ln (a new listener when nil).
func (c *cluster) startNode(ln net.Listener) *node {
	t := c.t
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	cfg := envConfig(t, c.env)
	logs := &syncBuffer{}
	a, err := newApp(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
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
	n := &node{url: "http://" + ln.Addr().String(), app: a, cfg: cfg, srv: srv, logs: logs, rec: rec}
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			_ = srv.Close()
			a.closeRedis()
		})
	}
	t.Cleanup(func() {
		n.stop()
		for _, r := range rec.all() { // every Set-Cookie against the cookie prefix rules
			idptest.CheckSetCookies(t, r.header)
		}
		if t.Failed() {
			t.Logf("log of replica %s:\n%s", n.url, logs.String())
		}
	})
	return n
}

// signIn signs a new browser in through the first replica.
func (c *cluster) signIn() *http.Client {
	c.t.Helper()
	b := idptest.NewClient(c.t)
	resp := c.idp.SignIn(c.t, b, c.nodes[0].url+"/auth/login?return_to=/")
	resp.Body.Close()
	if got := resp.Request.URL.String(); got != c.nodes[0].url+"/" {
		c.t.Fatalf("after sign-in the browser is at %s, want %s/", got, c.nodes[0].url)
	}
	return b
}

// call sends one request to n with exactly cookies (the CSRF header on anything but
// GET) and returns the status and body.
func (c *cluster) call(n *node, method, path string, cookies []*http.Cookie) (*http.Response, []byte) {
	c.t.Helper()
	resp, body, err := tryCall(n, method, path, cookies)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, body
}

// tryCall is call without the test: for goroutines, which must not call t.Fatal.
func tryCall(n *node, method, path string, cookies []*http.Cookie) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, n.url+path, nil)
	if err != nil {
		return nil, nil, err
	}
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	if method != http.MethodGet || !strings.HasPrefix(path, "/auth/") {
		req.Header.Set("X-CSRF", "1")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s%s: %w", method, n.url, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body, nil
}

func (c *cluster) cookies(b *http.Client, path string) []*http.Cookie {
	return b.Jar.Cookies(mustURL(c.nodes[0].url + path))
}

// authenticated asks n's /auth/session with the browser's cookies.
func (c *cluster) authenticated(n *node, b *http.Client) bool {
	c.t.Helper()
	resp, body := c.call(n, http.MethodGet, "/auth/session", c.cookies(b, "/auth/session"))
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s/auth/session = %d %s", n.url, resp.StatusCode, body)
	}
	return decodeJSON(c.t, body)["authenticated"] == true
}

// inspect opens the browser's session as tokenhandler would, from outside the replicas.
func (c *cluster) inspect(b *http.Client) *session.Session {
	c.t.Helper()
	req := httptest.NewRequest(http.MethodGet, c.nodes[0].url+"/api/x", nil)
	for _, ck := range c.cookies(b, "/api/") {
		req.AddCookie(ck)
	}
	var store session.Store
	switch c.store {
	case "redis":
		client, _, err := redisclient.New(redisclient.Options{URL: c.redisURL})
		if err != nil {
			c.t.Fatal(err)
		}
		defer client.Close()
		r := session.NewRedis(client, session.RedisOptions{KeyPrefix: c.prefix, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		defer r.Close()
		if store, err = session.NewRedisStore(r, session.RedisStoreOptions{Keys: []session.KeyPair{c.key}}); err != nil {
			c.t.Fatal(err)
		}
	default:
		var err error
		store, err = session.NewCookieStore(session.CookieOptions{Keys: []session.KeyPair{c.key}, RefreshPaths: []string{"/api/"}})
		if err != nil {
			c.t.Fatal(err)
		}
	}
	s, err := store.Load(context.Background(), req)
	if err != nil {
		c.t.Fatalf("opening the browser's session: %v", err)
	}
	return s
}

// waitUntilRefreshDue waits until the browser's access token is due for refresh by the
// replicas' rule (see waitRefreshDue).
func (c *cluster) waitUntilRefreshDue(b *http.Client) {
	c.t.Helper()
	waitRefreshDue(c.t, c.inspect(b), c.nodes[0].cfg.Session.RefreshSkew)
}

// TestReplicasRefreshOnce: two replicas share one Redis and the real provider; 100
// concurrent proxied requests of one session whose access token is due for refresh,
// alternating between them, make exactly one token-endpoint call and no 401, with the
// Redis store and with the cookie store plus redis.url; also when the provider is
// slower than the lock's lease (the holder renews it).
func TestReplicasRefreshOnce(t *testing.T) {
	cases := []struct {
		kind, store string
		delay       time.Duration
	}{
		{kind: "hydra", store: "redis"},
		{kind: "hydra", store: "cookie"},
		{kind: "hydra", store: "redis", delay: session.DefaultLease + time.Second},
		{kind: "hydra", store: "cookie", delay: session.DefaultLease + time.Second},
		{kind: "dex", store: "redis"},
	}
	for _, tc := range cases {
		name := tc.kind + "/" + tc.store
		if tc.delay > 0 {
			name += "/slower-than-lease"
		}
		t.Run(name, func(t *testing.T) {
			c := startCluster(t, clusterOptions{
				kind: tc.kind, store: tc.store,
				idp: idptest.Options{AccessTokenTTL: 3 * time.Second},
				env: map[string]string{"TH_SESSION_REFRESH_SKEW": "1h"},
			})
			b := c.signIn()
			old := c.inspect(b)
			oldCookies := c.cookies(b, "/api/")
			c.waitUntilRefreshDue(b)
			c.api.reset()
			c.idp.SetTokenDelay(tc.delay)
			before := c.idp.RefreshCalls()

			const n = 100
			var wg sync.WaitGroup
			statuses := make([]int, n)
			bodies := make([]string, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, body, err := tryCall(c.nodes[i%2], http.MethodGet, fmt.Sprintf("/api/item/%d", i), oldCookies)
					if err != nil {
						t.Errorf("request %d: %v", i, err) // Errorf: Fatal must not run off the test's goroutine
						return
					}
					statuses[i], bodies[i] = resp.StatusCode, string(body)
				}()
			}
			wg.Wait()
			calls := c.idp.RefreshCalls() - before
			t.Logf("%s: %d concurrent requests over %d replicas, %d token-endpoint refresh call(s)", name, n, len(c.nodes), calls)
			if calls != 1 {
				t.Errorf("token-endpoint refresh calls = %d, want exactly 1", calls)
			}
			for i, st := range statuses {
				if st != http.StatusOK {
					t.Errorf("request %d (replica %d) = %d %s, want 200", i, i%2, st, bodies[i])
				}
			}
			seen := c.api.requests()
			if len(seen) != n {
				t.Fatalf("upstream saw %d requests, want %d", len(seen), n)
			}
			for _, r := range seen {
				if len(r.Auth) != 1 || r.Auth[0] != seen[0].Auth[0] || r.Auth[0] == "Bearer "+old.AccessToken {
					t.Fatalf("upstream saw Authorization %q and %q: not one new token", r.Auth, seen[0].Auth)
				}
			}
			if tc.delay > 0 {
				for _, nd := range c.nodes {
					if strings.Contains(nd.logs.String(), "lapsed") {
						t.Errorf("a replica's lease lapsed while the slow provider call was in flight")
					}
				}
			}
		})
	}
}

// TestBackchannelLogoutFromProvider: the provider's own logout (the end-session endpoint
// with the session's ID token, as another application or the user at the provider would
// start it, not tokenhandler's /auth/logout) makes the provider post a logout token to
// the second replica, which ends the session for every replica: /auth/session says
// authenticated:false and the API answers 401. A later sign-in works.
func TestBackchannelLogoutFromProvider(t *testing.T) {
	for _, kind := range idptest.Kinds() {
		for _, store := range []string{"redis", "cookie"} {
			t.Run(kind+"/"+store, func(t *testing.T) {
				c := startCluster(t, clusterOptions{kind: kind, store: store, backchannelNode: 1})
				b := c.signIn()
				s := c.inspect(b)
				t.Logf("%s ID token: sid %q", kind, s.SID)
				for i, n := range c.nodes {
					if !c.authenticated(n, b) {
						t.Fatalf("replica %d: not authenticated after sign-in", i)
					}
				}
				received := func() int {
					return strings.Count(c.nodes[1].logs.String(), `"msg":"back-channel logout"`)
				}
				end, _ := c.idp.Discovery(t)["end_session_endpoint"].(string)
				if end == "" {
					t.Fatalf("%s advertises no end_session_endpoint", kind)
				}
				q := url.Values{"id_token_hint": {s.IDToken}, "post_logout_redirect_uri": {c.nodes[0].url + "/"}, "client_id": {c.idp.ClientID}}
				resp := c.idp.Logout(t, b, end+"?"+q.Encode())
				resp.Body.Close()

				// The provider sends the logout token on its own time: wait for the
				// replica's responses, re-checking its log after each.
				if !waitServed(c.nodes[1].rec, 10*time.Second, func() bool { return received() > 0 }) {
					t.Fatalf("%s sent no back-channel logout to the replica within 10 s", kind)
				}
				for _, line := range strings.Split(c.nodes[1].logs.String(), "\n") {
					if strings.Contains(line, `"back-channel logout`) {
						t.Logf("replica 1: %s", line)
					}
				}
				for i, n := range c.nodes {
					// The other replica learns of the entry through Redis pub/sub, which
					// gives the test no event: poll, with a deadline.
					ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
					_ = testbench.Poll(ctx, 20*time.Millisecond, func(context.Context) (bool, error) { return !c.authenticated(n, b), nil })
					cancel()
					if c.authenticated(n, b) {
						t.Errorf("replica %d: /auth/session still authenticated after back-channel logout", i)
					}
					if resp, body := c.call(n, http.MethodGet, "/api/x", c.cookies(b, "/api/")); resp.StatusCode != http.StatusUnauthorized {
						t.Errorf("replica %d: API call after back-channel logout = %d %s, want 401", i, resp.StatusCode, body)
					}
				}
				// A new sign-in works (the entry ends only the old session).
				b2 := c.signIn()
				for i, n := range c.nodes {
					if !c.authenticated(n, b2) {
						t.Errorf("replica %d: a sign-in after back-channel logout is not authenticated", i)
					}
				}
			})
		}
	}
}

// TestBackchannelLogoutEndpoint: what the endpoint refuses against a running tokenhandler
// (a token signed by a key the provider never had; a replayed or malformed request),
// that it needs no CSRF header, and that it is not mounted without Redis. Every other
// refusal (aud, iss, iat, nonce, events, sid/sub, jti) is tested with a provider of
// our own key in package oauthagent.
func TestBackchannelLogoutEndpoint(t *testing.T) {
	c := startCluster(t, clusterOptions{kind: "hydra", store: "redis", replicas: 1})
	n := c.nodes[0]
	post := func(body string, hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodPost, n.url+"/auth/backchannel-logout", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	forged := forgeLogoutToken(t, c.idp.Issuer, c.idp.ClientID)
	for _, tc := range []struct {
		name string
		body string
		hdr  map[string]string
	}{
		{"signed by a key the provider does not have", "logout_token=" + forged, nil},
		{"cross-site form post with an Origin", "logout_token=" + forged, map[string]string{"Origin": "https://evil.test"}},
		{"no token", "", nil},
		{"garbage", "logout_token=abc", nil},
	} {
		resp, body := post(tc.body, tc.hdr)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"invalid_request"`) {
			t.Errorf("%s: POST backchannel-logout = %d %s, want 400 invalid_request", tc.name, resp.StatusCode, body)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("%s: Cache-Control = %q, want no-store", tc.name, cc)
		}
	}
	// Without Redis the endpoint does not exist.
	plain := startStack(t, stackOptions{kind: "hydra"})
	req, _ := http.NewRequest(http.MethodPost, plain.url+"/auth/backchannel-logout", strings.NewReader("logout_token="+forged))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST backchannel-logout without redis.url = %d, want 404", resp.StatusCode)
	}
}

// forgeLogoutToken returns a well-formed logout token for issuer and aud, signed by a
// fresh key the provider does not know.
func forgeLogoutToken(t *testing.T, issuer, aud string) string {
	t.Helper()
	signer, err := testbench.NewSigner("forged")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.Sign(map[string]any{
		"iss": issuer, "aud": aud, "iat": time.Now().Unix(), "jti": "forged-1", "sid": "any",
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestRedisOutage: Redis stops mid-test. The Redis store answers 503
// session_store_unavailable quickly (no hanging request) and /readyz says not ready;
// once Redis is back, the same session works again by itself. The cookie store with
// redis.url keeps serving and refreshing (coordination falls back to the process, with
// a warning) and returns to Redis by itself.
func TestRedisOutage(t *testing.T) {
	t.Run("redis store", func(t *testing.T) {
		srv := sessiontest.StartRedis(t)
		c := startCluster(t, clusterOptions{kind: "hydra", store: "redis", replicas: 1, redisURL: srv.URL})
		n := c.nodes[0]
		b := c.signIn()
		if !c.authenticated(n, b) {
			t.Fatal("not authenticated after sign-in")
		}
		srv.Stop(t)
		for _, path := range []string{"/auth/session", "/api/x"} {
			start := time.Now()
			resp, body := c.call(n, http.MethodGet, path, c.cookies(b, "/api/"))
			took := time.Since(start)
			t.Logf("GET %s while Redis is down: %d in %v", path, resp.StatusCode, took)
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"session_store_unavailable"`) {
				t.Errorf("GET %s while Redis is down = %d %s, want 503 session_store_unavailable", path, resp.StatusCode, body)
			}
			if took > 5*time.Second {
				t.Errorf("GET %s while Redis is down took %v: it must not hang", path, took)
			}
			for _, ck := range resp.Cookies() {
				if ck.MaxAge < 0 {
					t.Errorf("GET %s while Redis is down deleted cookie %s: a store outage must keep the session", path, ck.Name)
				}
			}
		}
		rec := httptest.NewRecorder()
		n.app.admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("/readyz while Redis is down = %d, want 503", rec.Code)
		}
		rec = httptest.NewRecorder()
		n.app.admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if !strings.Contains(rec.Body.String(), `tokenhandler_redis_errors_total{op="load"}`) {
			t.Errorf("/metrics has no tokenhandler_redis_errors_total{op=\"load\"} after failed loads")
		}
		srv.Start(t)
		// The client's pool meets its dead connections one request at a time, which
		// gives the test no event: poll, with a deadline.
		var resp *http.Response
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_ = testbench.Poll(ctx, 50*time.Millisecond, func(context.Context) (bool, error) {
			resp, _ = c.call(n, http.MethodGet, "/api/x", c.cookies(b, "/api/"))
			return resp.StatusCode == http.StatusOK, nil
		})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("API call after Redis returned = %d, want 200 (the same session)", resp.StatusCode)
		}
		rec = httptest.NewRecorder()
		n.app.admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("/readyz after Redis returned = %d, want 200", rec.Code)
		}
	})
	t.Run("cookie store", func(t *testing.T) {
		srv := sessiontest.StartRedis(t)
		c := startCluster(t, clusterOptions{kind: "hydra", store: "cookie", replicas: 1, redisURL: srv.URL,
			idp: idptest.Options{AccessTokenTTL: 3 * time.Second}, env: map[string]string{"TH_SESSION_REFRESH_SKEW": "1h"}})
		n := c.nodes[0]
		b := c.signIn()
		srv.Stop(t)
		c.waitUntilRefreshDue(b)
		before := c.idp.RefreshCalls()
		// Through the browser's jar, so the refreshed cookies are kept.
		req, _ := http.NewRequest(http.MethodGet, n.url+"/api/during-outage", nil)
		req.Header.Set("X-CSRF", "1")
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		failedBy := time.Now() // coordination's Redis call failed before this
		// No refresh token is spent without the shared lock (another replica could spend
		// it too, and Hydra would revoke the family): 503, cookies kept.
		if resp.StatusCode != http.StatusServiceUnavailable || c.idp.RefreshCalls()-before != 0 {
			t.Errorf("API call needing a refresh while Redis is down = %d after %d refresh calls, want 503 after 0", resp.StatusCode, c.idp.RefreshCalls()-before)
		}
		if !strings.Contains(n.logs.String(), "Redis unreachable") {
			t.Errorf("no warning that Redis is unreachable for refresh coordination")
		}
		srv.Start(t)
		// Coordination retries Redis once its back-off after the failure (session's
		// downBackoff, 1 s) has passed, by the clock: wait for that instant.
		waitUntil(t, failedBy.Add(time.Second))
		c.waitUntilRefreshDue(b)
		req, _ = http.NewRequest(http.MethodGet, n.url+"/api/after-outage", nil)
		req.Header.Set("X-CSRF", "1")
		if resp, err = b.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("API call after Redis returned = %d, want 200", resp.StatusCode)
		}
		if !strings.Contains(n.logs.String(), "reachable again") {
			t.Errorf("coordination did not go back to Redis after it returned")
		}
	})
}

// TestRedisStoreSurvivesRestart: a new tokenhandler process (a new newApp on the same
// Redis and keys) serves the session a previous one created.
func TestRedisStoreSurvivesRestart(t *testing.T) {
	c := startCluster(t, clusterOptions{kind: "hydra", store: "redis", replicas: 1})
	b := c.signIn()
	if !c.authenticated(c.nodes[0], b) {
		t.Fatal("not authenticated after sign-in")
	}
	c.nodes[0].stop()
	again := c.startNode(nil)
	if !c.authenticated(again, b) {
		t.Errorf("after a restart /auth/session is not authenticated")
	}
	if resp, body := c.call(again, http.MethodGet, "/api/x", c.cookies(b, "/api/")); resp.StatusCode != http.StatusOK {
		t.Errorf("after a restart the API call = %d %s, want 200", resp.StatusCode, body)
	}
}
