package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/session"
)

// expiringStack is a stack whose access tokens live ttl and are refreshed as soon as
// they are half-way through their life (the effective skew is min(refresh_skew, ttl/2)).
func expiringStack(t *testing.T, kind string, ttl time.Duration, opaque bool) *stack {
	return startStack(t, stackOptions{
		kind: kind,
		idp:  idptest.Options{AccessTokenTTL: ttl, OpaqueAccessTokens: opaque},
		env:  map[string]string{"TH_SESSION_REFRESH_SKEW": "1h"},
	})
}

// apiCall sends one proxied request with exactly the given cookies.
func (s *stack) apiCall(method, path string, cookies []*http.Cookie, body []byte, hdr map[string]string) (*http.Response, []byte) {
	s.t.Helper()
	resp, b, err := s.tryAPICall(method, path, cookies, body, hdr)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, b
}

// tryAPICall is apiCall without the test: for goroutines, which must not call t.Fatal.
func (s *stack) tryAPICall(method, path string, cookies []*http.Cookie, body []byte, hdr map[string]string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if body == nil {
		req.Body = nil
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	req.Header.Set("X-CSRF", "1")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b, nil
}

func (s *stack) cookies(c *http.Client, path string) []*http.Cookie {
	return c.Jar.Cookies(mustURL(s.url + path))
}

// waitUntilRefreshDue waits until the session's access token is due for refresh by the
// proxy's rule (see waitRefreshDue), which the short TTL makes a second or two.
func waitUntilRefreshDue(t *testing.T, s *stack, c *http.Client) {
	t.Helper()
	sess, err := s.session(c, "/api/")
	if err != nil {
		t.Fatal(err)
	}
	waitRefreshDue(t, sess, s.cfg.Session.RefreshSkew)
}

// waitRefreshDue waits until sess's access token is due for refresh by the proxy's own
// rule, Session.NeedsRefresh with the configured skew. The provider's tokens expire by
// the wall clock, and tokenhandler reads that clock: the instant is the event.
func waitRefreshDue(t *testing.T, sess *session.Session, skew time.Duration) {
	t.Helper()
	for !sess.NeedsRefresh(time.Now(), skew) {
		half := sess.AccessExpiry.Sub(sess.AccessIssued) / 2
		waitUntil(t, sess.AccessExpiry.Add(-min(skew, half)))
	}
}

// waitUntil blocks until the wall clock reaches at, or fails the test if it ends first.
func waitUntil(t *testing.T, at time.Time) {
	t.Helper()
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.Context().Done():
		t.Fatalf("the test ended before %s", at.Format(time.RFC3339Nano))
	}
}

// TestConcurrentRefresh: 100 concurrent proxied requests of one session whose access
// token is expiring make exactly one call to the provider's token endpoint, all 100
// reach the upstream with the same new token, and none gets a 401. Requests replayed
// afterwards with the OLD cookies are served from the rotation grace entry.
func TestConcurrentRefresh(t *testing.T) {
	cases := []struct {
		kind   string
		opaque bool
	}{{"hydra", false}, {"hydra", true}, {"dex", false}}
	for _, tc := range cases {
		name := tc.kind
		if tc.opaque {
			name += "-opaque"
		}
		t.Run(name, func(t *testing.T) {
			s := expiringStack(t, tc.kind, 3*time.Second, tc.opaque)
			c := s.signIn("/")
			old, err := s.session(c, "/api/")
			if err != nil {
				t.Fatal(err)
			}
			if tc.opaque && strings.Count(old.AccessToken, ".") == 2 {
				t.Fatalf("Hydra issued a JWT access token in opaque mode")
			}
			oldCookies := s.cookies(c, "/api/")
			waitUntilRefreshDue(t, s, c)
			s.api.reset()
			refreshes := s.idp.RefreshCalls()

			const n = 100
			var wg sync.WaitGroup
			statuses := make([]int, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, _, err := s.tryAPICall(http.MethodGet, fmt.Sprintf("/api/item/%d", i), oldCookies, nil, nil)
					if err != nil {
						t.Errorf("request %d: %v", i, err) // Errorf: Fatal must not run off the test's goroutine
						return
					}
					statuses[i] = resp.StatusCode
				}()
			}
			wg.Wait()
			if got := s.idp.RefreshCalls() - refreshes; got != 1 {
				t.Errorf("token-endpoint refresh calls for %d concurrent requests = %d, want exactly 1", n, got)
			}
			for i, st := range statuses {
				if st != http.StatusOK {
					t.Errorf("request %d = %d, want 200", i, st)
				}
			}
			seen := s.api.requests()
			if len(seen) != n {
				t.Fatalf("upstream saw %d requests, want %d", len(seen), n)
			}
			want := seen[0].Auth
			for _, r := range seen {
				if len(r.Auth) != 1 || r.Auth[0] != want[0] {
					t.Fatalf("upstream saw Authorization %q and %q: not one new token", r.Auth, want)
				}
			}
			if want[0] == "Bearer "+old.AccessToken {
				t.Fatalf("upstream saw the old access token")
			}
			t.Logf("%s: %d concurrent requests, %d token-endpoint refresh call(s)", name, n, s.idp.RefreshCalls()-refreshes)

			// The old cookies again, inside the grace window: the new tokens, no call.
			s.api.reset()
			before := s.idp.TokenCalls()
			resp, body := s.apiCall(http.MethodGet, "/api/again", oldCookies, nil, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("request with the old cookies = %d %s, want 200", resp.StatusCode, body)
			}
			if got := s.api.requests()[0].Auth; len(got) != 1 || got[0] != want[0] {
				t.Errorf("request with the old cookies reached the upstream with %q, want the new token", got)
			}
			if s.idp.TokenCalls() != before {
				t.Errorf("the old cookies made a token-endpoint call (a spent refresh token replayed)")
			}
			var rotated bool
			for _, ck := range resp.Cookies() {
				rotated = rotated || (strings.HasPrefix(ck.Name, "__Secure-th-rt") && ck.MaxAge > 0)
			}
			if !rotated {
				t.Errorf("the response to the old cookies did not carry the new refresh cookie")
			}
		})
	}
}

// TestReactiveRefresh: an upstream 401 makes one refresh and one retry with the
// identical body; a second 401 reaches the client.
func TestReactiveRefresh(t *testing.T) {
	s := startStack(t, stackOptions{kind: "hydra"})
	s.api.respond = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.URL.Path == "/api/once" && n == 1 || r.URL.Path == "/api/always" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
		return false
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	t.Run("retry succeeds", func(t *testing.T) {
		c := s.signIn("/")
		calls := s.idp.RefreshCalls()
		resp, b := s.apiCall(http.MethodPost, "/api/once", s.cookies(c, "/api/"), body, map[string]string{"Content-Type": "application/octet-stream"})
		if resp.StatusCode != 200 {
			t.Fatalf("POST /api/once = %d %s, want 200 after one retry", resp.StatusCode, b)
		}
		if got := s.idp.RefreshCalls() - calls; got != 1 {
			t.Errorf("refresh calls = %d, want 1", got)
		}
		var tries []seenRequest
		for _, r := range s.api.requests() {
			if r.URI == "/api/once" {
				tries = append(tries, r)
			}
		}
		if len(tries) != 2 || !bytes.Equal(tries[0].Body, body) || !bytes.Equal(tries[1].Body, body) {
			t.Fatalf("upstream saw %d tries, want 2 with the identical body", len(tries))
		}
		if tries[0].Auth[0] == tries[1].Auth[0] {
			t.Errorf("the retry carried the same access token")
		}
	})
	t.Run("second 401 reaches the client", func(t *testing.T) {
		c := s.signIn("/")
		calls := s.idp.RefreshCalls()
		resp, _ := s.apiCall(http.MethodGet, "/api/always", s.cookies(c, "/api/"), nil, nil)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("GET /api/always = %d, want the upstream's 401", resp.StatusCode)
		}
		if got := s.idp.RefreshCalls() - calls; got != 1 {
			t.Errorf("refresh calls = %d, want 1", got)
		}
	})
}

// TestProviderFaults: an unreachable provider is a 502 that keeps the session; once it
// is back the next request refreshes; a provider that forgot every grant ends it.
func TestProviderFaults(t *testing.T) {
	for _, kind := range idptest.Kinds() {
		t.Run(kind, func(t *testing.T) {
			s := expiringStack(t, kind, 2*time.Second, false)
			c := s.signIn("/")
			waitUntilRefreshDue(t, s, c)

			s.idp.SetDown(true)
			resp, b := s.apiCall(http.MethodGet, "/api/x", s.cookies(c, "/api/"), nil, nil)
			if resp.StatusCode != http.StatusBadGateway || decodeJSON(t, b)["error"] != "idp_unavailable" {
				t.Fatalf("provider down: %d %s, want 502 idp_unavailable", resp.StatusCode, b)
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("provider down: the response touched cookies: %v", resp.Cookies())
			}
			s.idp.SetDown(false)
			calls := s.idp.RefreshCalls()
			resp, b = s.apiCall(http.MethodGet, "/api/x", s.cookies(c, "/api/"), nil, nil)
			if resp.StatusCode != 200 || s.idp.RefreshCalls()-calls != 1 {
				t.Fatalf("provider back: %d %s with %d refresh calls, want 200 after one refresh", resp.StatusCode, b, s.idp.RefreshCalls()-calls)
			}
			// Keep the browser's view: the refreshed cookies replace the old ones.
			c.Jar.SetCookies(mustURL(s.url+"/api/"), resp.Cookies())

			s.idp.Restart(t)
			waitUntilRefreshDue(t, s, c)
			resp, b = s.apiCall(http.MethodGet, "/api/x", s.cookies(c, "/api/"), nil, nil)
			if resp.StatusCode != http.StatusUnauthorized || decodeJSON(t, b)["error"] != "session_expired" {
				t.Fatalf("provider restarted: %d %s, want 401 session_expired", resp.StatusCode, b)
			}
			var deleted int
			for _, ck := range resp.Cookies() {
				if ck.MaxAge < 0 {
					deleted++
				}
			}
			if deleted < 3 {
				t.Errorf("session_expired deleted %d cookies, want every cookie of the session", deleted)
			}
		})
	}
}

// TestProxyAttacks sends the hostile requests of the proxy's contract through the real
// stack; the upstream records what reaches it.
func TestProxyAttacks(t *testing.T) {
	s := startStack(t, stackOptions{kind: "hydra"})
	c := s.signIn("/")
	sess, err := s.session(c, "/api/")
	if err != nil {
		t.Fatal(err)
	}
	cookies := s.cookies(c, "/api/")

	raw := func(t *testing.T, target string, withCookies bool) int {
		t.Helper()
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var cookie []string
		for _, ck := range cookies {
			cookie = append(cookie, ck.Name+"="+ck.Value)
		}
		req := "GET " + target + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(s.url, "http://") + "\r\nX-CSRF: 1\r\n"
		if withCookies {
			req += "Cookie: " + strings.Join(cookie, "; ") + "\r\n"
		}
		_, _ = io.WriteString(conn, req+"Connection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	t.Run("traversal", func(t *testing.T) {
		s.api.reset()
		for _, p := range []string{"/api/../auth/claims", "/api/%2e%2e/x", "/api/%2E%2e/x", "/api//x", "/api/a;b", "/api/a%2fb", "/api/a%5cb", "/api/a%00b", "/api/./x", "/api/a\\b"} {
			for _, withCookies := range []bool{false, true} {
				if got := raw(t, p, withCookies); got != http.StatusBadRequest {
					t.Errorf("GET %s (cookies %v) = %d, want 400", p, withCookies, got)
				}
			}
		}
		if n := len(s.api.requests()); n != 0 {
			t.Errorf("upstream saw %d traversal requests, want 0", n)
		}
	})
	t.Run("client Authorization and hop-by-hop tricks", func(t *testing.T) {
		s.api.reset()
		resp, _ := s.apiCall(http.MethodGet, "/api/h", append(cookies, &http.Cookie{Name: "other", Value: "1"}), nil, map[string]string{
			"Authorization": "Bearer evil", "Connection": "Authorization, Cookie, X-Forwarded-For",
		})
		if resp.StatusCode != 200 {
			t.Fatalf("GET /api/h = %d", resp.StatusCode)
		}
		r := s.api.requests()[0]
		if len(r.Auth) != 1 || r.Auth[0] != "Bearer "+sess.AccessToken {
			t.Errorf("upstream Authorization = %q, want only our Bearer token", r.Auth)
		}
		if strings.Contains(r.Cookie, "th-") {
			t.Errorf("upstream Cookie = %q carries tokenhandler's cookies", r.Cookie)
		}
		// Without the Connection trick, the client's own cookies pass and ours do not.
		s.api.reset()
		if resp, _ := s.apiCall(http.MethodGet, "/api/c", append(cookies, &http.Cookie{Name: "other", Value: "1"}), nil, nil); resp.StatusCode != 200 {
			t.Fatalf("GET /api/c = %d", resp.StatusCode)
		}
		if r := s.api.requests()[0]; !strings.HasSuffix(r.Cookie, "other=1") || strings.Contains(r.Cookie, "th-") {
			t.Errorf("upstream Cookie = %q, want the client's own cookies (other=1) and none of ours", r.Cookie)
		}
	})
	t.Run("CSRF and Origin", func(t *testing.T) {
		s.api.reset()
		resp, b := s.apiCall(http.MethodGet, "/api/x", cookies, nil, map[string]string{"X-CSRF": ""})
		if resp.StatusCode != 403 || decodeJSON(t, b)["error"] != "csrf_failed" {
			t.Errorf("without X-CSRF = %d %s, want 403 csrf_failed", resp.StatusCode, b)
		}
		resp, b = s.apiCall(http.MethodGet, "/api/x", cookies, nil, map[string]string{"Origin": "https://evil.example"})
		if resp.StatusCode != 403 || decodeJSON(t, b)["error"] != "origin_not_allowed" {
			t.Errorf("foreign Origin = %d %s, want 403 origin_not_allowed", resp.StatusCode, b)
		}
		resp, _ = s.apiCall(http.MethodGet, "/api/ws", cookies, nil, map[string]string{
			"X-CSRF": "", "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
		})
		if resp.StatusCode != 403 {
			t.Errorf("WebSocket handshake without Origin = %d, want 403", resp.StatusCode)
		}
		if n := len(s.api.requests()); n != 0 {
			t.Errorf("upstream saw %d refused requests", n)
		}
	})
	t.Run("no session", func(t *testing.T) {
		s.api.reset()
		resp, b := s.apiCall(http.MethodGet, "/api/x", nil, nil, nil)
		if resp.StatusCode != 401 || decodeJSON(t, b)["error"] != "unauthenticated" || len(s.api.requests()) != 0 {
			t.Errorf("no session = %d %s, want 401 unauthenticated and nothing forwarded", resp.StatusCode, b)
		}
	})
}
