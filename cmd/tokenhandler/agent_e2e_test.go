package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/session"
)

var chunkSuffix = regexp.MustCompile(`\.[0-3]$`)

// cookiesByName groups the cookies a response sets (deletions left out) by base name
// (chunk suffixes removed).
func cookiesByName(resp *http.Response) map[string][]*http.Cookie {
	m := map[string][]*http.Cookie{}
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			continue
		}
		name := chunkSuffix.ReplaceAllString(c.Name, "")
		m[name] = append(m[name], c)
	}
	return m
}

// spendDirectly refreshes rt at the provider's token endpoint without tokenhandler.
func spendDirectly(t *testing.T, p *idptest.Provider, rt string) error {
	t.Helper()
	tokenURL, _ := p.Discovery(t)["token_endpoint"].(string)
	cfg := &oauth2.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInHeader}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	return err
}

// TestAgentFlow runs login -> session -> userinfo -> claims -> refresh -> logout
// against each real provider (oidc-provider included) and checks the cookie table and
// that no secret leaks.
func TestAgentFlow(t *testing.T) {
	for _, kind := range idptest.AllKinds() {
		t.Run(kind, func(t *testing.T) {
			s := startStack(t, stackOptions{kind: kind})
			c := idptest.NewClient(t)
			cb := s.idp.Authorize(t, c, s.url+"/auth/login?return_to="+url.QueryEscape("/after?x=1#frag"), s.url+"/auth/callback")
			code := cb.Query().Get("code")

			resp, _ := s.do(c, http.MethodGet, cb.RequestURI(), nil)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/after?x=1" {
				t.Fatalf("callback = %d to %q, want 302 to /after?x=1", resp.StatusCode, resp.Header.Get("Location"))
			}
			checkCookieTable(t, resp, s.cfg.Session.Lifetime)
			sizes := map[string]int{}
			for name, cs := range cookiesByName(resp) {
				for _, ck := range cs {
					if ck.Path == "/" || ck.Path == "/auth/refresh" {
						sizes[name] += len(ck.Name) + len(ck.Value)
					}
				}
			}
			t.Logf("%s cookie sizes (name+value bytes, all pieces): %v", kind, sizes)

			resp, body := s.do(c, http.MethodGet, "/auth/session", nil)
			sess := decodeJSON(t, body)
			if resp.StatusCode != 200 || sess["authenticated"] != true {
				t.Fatalf("/auth/session = %d %s, want authenticated", resp.StatusCode, body)
			}
			if s.idp.Subject != "" && sess["sub"] != s.idp.Subject {
				t.Errorf("/auth/session sub = %v, want %s", sess["sub"], s.idp.Subject)
			}
			if sess["email"] != s.idp.Email || sess["name"] != s.idp.Name {
				t.Errorf("/auth/session email, name = %v, %v, want %s, %s", sess["email"], sess["name"], s.idp.Email, s.idp.Name)
			}
			for _, k := range []string{"access_token_expires_at", "session_expires_at"} {
				if _, err := time.Parse(time.RFC3339, sess[k].(string)); err != nil {
					t.Errorf("/auth/session %s = %v: %v", k, sess[k], err)
				}
			}
			for _, h := range []string{"Cache-Control", "X-Frame-Options", "Content-Security-Policy"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("/auth/session lacks %s", h)
				}
			}

			resp, body = s.do(c, http.MethodGet, "/auth/userinfo", nil)
			if resp.StatusCode != 200 || decodeJSON(t, body)["sub"] != sess["sub"] {
				t.Errorf("/auth/userinfo = %d %s, want sub %v", resp.StatusCode, body, sess["sub"])
			}
			resp, body = s.do(c, http.MethodGet, "/auth/claims", nil)
			if claims := decodeJSON(t, body); resp.StatusCode != 200 || claims["iss"] != s.idp.Issuer || claims["sub"] != sess["sub"] {
				t.Errorf("/auth/claims = %d %s", resp.StatusCode, body)
			}

			before, err := s.session(c, "/auth/refresh")
			if err != nil {
				t.Fatalf("opening the session's cookies: %v", err)
			}
			calls := s.idp.TokenCalls()
			resp, _ = s.do(c, http.MethodPost, "/auth/refresh", nil)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("POST /auth/refresh = %d, want 204", resp.StatusCode)
			}
			if got := s.idp.TokenCalls() - calls; got != 1 {
				t.Errorf("token-endpoint calls for one refresh = %d, want 1", got)
			}
			after, err := s.session(c, "/auth/refresh")
			if err != nil {
				t.Fatalf("opening the refreshed session: %v", err)
			}
			if after.RefreshToken == before.RefreshToken || after.AccessToken == before.AccessToken {
				t.Errorf("refresh did not rotate the tokens")
			}
			if after.ID != before.ID || !after.Expiry.Equal(before.Expiry) {
				t.Errorf("refresh changed the session id or extended the lifetime")
			}
			for _, rc := range cookiesByName(resp)["__Secure-th-rt"] {
				if rc.Path == "/" {
					t.Errorf("refresh cookie set on /")
				}
			}

			resp, body = s.do(c, http.MethodPost, "/auth/logout", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("POST /auth/logout = %d %s", resp.StatusCode, body)
			}
			logoutURL, _ := decodeJSON(t, body)["logout_url"].(string)
			disc := s.idp.Discovery(t)
			if end, _ := disc["end_session_endpoint"].(string); end != "" {
				u, err := url.Parse(logoutURL)
				if err != nil || !strings.HasPrefix(logoutURL, end) || u.Query().Get("id_token_hint") != after.IDToken ||
					u.Query().Get("post_logout_redirect_uri") != s.cfg.OIDC.PostLogoutRedirectURL {
					t.Errorf("logout_url = %q, want %s with id_token_hint and post_logout_redirect_uri", logoutURL, end)
				}
			} else if logoutURL != s.cfg.OIDC.PostLogoutRedirectURL {
				t.Errorf("logout_url = %q, want the post-logout URL", logoutURL)
			}
			deleted := map[string]int{}
			for _, ck := range resp.Cookies() {
				if ck.MaxAge < 0 {
					deleted[chunkSuffix.ReplaceAllString(ck.Name, "")]++
				}
			}
			if deleted["__Host-Http-th-at"] == 0 || deleted["__Host-Http-th-id"] == 0 || deleted["__Secure-th-rt"] < 3 {
				t.Errorf("logout deletions = %v, want the access, ID and every refresh-cookie path", deleted)
			}
			if _, body := s.do(c, http.MethodGet, "/auth/session", nil); decodeJSON(t, body)["authenticated"] != false {
				t.Errorf("after logout /auth/session = %s", body)
			}
			if rev, _ := disc["revocation_endpoint"].(string); rev != "" {
				if err := spendDirectly(t, s.idp, after.RefreshToken); err == nil {
					t.Errorf("the refresh token still works after logout: revocation did not happen")
				}
			} else {
				t.Logf("%s has no revocation_endpoint: skipping the revoked-refresh-token check", kind)
			}

			secrets := map[string]string{
				"authorization code": code, "client secret": s.idp.ClientSecret,
				"first access token": before.AccessToken, "second access token": after.AccessToken,
				"first refresh token": before.RefreshToken, "second refresh token": after.RefreshToken,
				"ID token": after.IDToken,
			}
			for _, ck := range c.Jar.Cookies(mustURL(s.url + "/auth/refresh")) {
				secrets["cookie "+ck.Name] = ck.Value
			}
			s.assertNoLeak(secrets, after.IDToken)
		})
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// checkCookieTable checks the session cookies of a successful callback against
// DESIGN.md's table.
func checkCookieTable(t *testing.T, resp *http.Response, lifetime time.Duration) {
	t.Helper()
	idptest.CheckSetCookies(t, resp.Header)
	byName := cookiesByName(resp)
	for _, name := range []string{"__Host-Http-th-at", "__Host-Http-th-id"} {
		cs := byName[name]
		if len(cs) == 0 {
			t.Errorf("callback did not set %s", name)
		}
		for _, c := range cs {
			if c.Path != "/" || c.SameSite != http.SameSiteStrictMode || !c.HttpOnly || !c.Secure || c.Domain != "" {
				t.Errorf("%s: Path=%q SameSite=%v HttpOnly=%v Secure=%v Domain=%q", c.Name, c.Path, c.SameSite, c.HttpOnly, c.Secure, c.Domain)
			}
			if d := time.Duration(c.MaxAge) * time.Second; d > lifetime || d < lifetime-10*time.Second {
				t.Errorf("%s Max-Age = %v, want the remaining lifetime %v", c.Name, d, lifetime)
			}
		}
	}
	paths := map[string]bool{}
	for _, c := range byName["__Secure-th-rt"] {
		paths[c.Path] = true
		if c.SameSite != http.SameSiteStrictMode || !c.HttpOnly || !c.Secure || c.Domain != "" || c.MaxAge <= 0 {
			t.Errorf("%s on %s: SameSite=%v HttpOnly=%v Secure=%v MaxAge=%d", c.Name, c.Path, c.SameSite, c.HttpOnly, c.Secure, c.MaxAge)
		}
	}
	for _, p := range []string{"/auth/refresh", "/auth/logout", "/auth/userinfo"} {
		if !paths[p] {
			t.Errorf("refresh cookie not set on %s (paths %v)", p, paths)
		}
	}
	if paths["/"] {
		t.Errorf("refresh cookie set on /")
	}
	var loginDeleted bool
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, "__Host-Http-th-login-") {
			loginDeleted = loginDeleted || c.MaxAge < 0
		}
	}
	if !loginDeleted {
		t.Errorf("callback did not delete the login cookie")
	}
}

// TestOldRefreshTokenRefused proves, in a session of its own, that the provider refuses
// a refresh token that tokenhandler has rotated away (on Hydra this revokes the family).
func TestOldRefreshTokenRefused(t *testing.T) {
	for _, kind := range idptest.AllKinds() {
		t.Run(kind, func(t *testing.T) {
			s := startStack(t, stackOptions{kind: kind})
			c := s.signIn("/")
			old, err := s.session(c, "/auth/refresh")
			if err != nil {
				t.Fatal(err)
			}
			if resp, _ := s.do(c, http.MethodPost, "/auth/refresh", nil); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("POST /auth/refresh = %d, want 204", resp.StatusCode)
			}
			if err := spendDirectly(t, s.idp, old.RefreshToken); err == nil {
				t.Fatalf("the provider accepted the rotated-away refresh token")
			}
		})
	}
}

// TestCallbackRefusals covers the callback's negative cases against a real provider.
func TestCallbackRefusals(t *testing.T) {
	s := startStack(t, stackOptions{kind: "hydra"})
	login := s.url + "/auth/login?return_to=/"
	cbPrefix := s.url + "/auth/callback"

	expect := func(t *testing.T, c *http.Client, rawQuery, code string) {
		t.Helper()
		resp, body := s.do(c, http.MethodGet, "/auth/callback?"+rawQuery, nil)
		want := "/?auth_error=" + code
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
			t.Fatalf("callback?%s = %d to %q, want 302 to %q (%s)", rawQuery, resp.StatusCode, resp.Header.Get("Location"), want, body)
		}
		for _, ck := range resp.Cookies() {
			if !strings.Contains(ck.Name, "-login-") && ck.MaxAge >= 0 {
				t.Errorf("failed callback set cookie %s", ck.Name)
			}
		}
		if strings.Contains(resp.Header.Get("Location"), "evil") {
			t.Errorf("error_description reflected")
		}
	}
	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}

	t.Run("missing state", func(t *testing.T) {
		expect(t, idptest.NewClient(t), q("code", "x"), "invalid_state")
	})
	t.Run("wrong state", func(t *testing.T) {
		c := idptest.NewClient(t)
		cb := s.idp.Authorize(t, c, login, cbPrefix)
		expect(t, c, q("state", cb.Query().Get("state")+"x", "code", cb.Query().Get("code")), "invalid_state")
	})
	t.Run("duplicated state", func(t *testing.T) {
		c := idptest.NewClient(t)
		cb := s.idp.Authorize(t, c, login, cbPrefix)
		st := cb.Query().Get("state")
		expect(t, c, q("state", st, "state", st, "code", cb.Query().Get("code")), "invalid_state")
	})
	t.Run("login cookie of another attempt", func(t *testing.T) {
		a, b := idptest.NewClient(t), idptest.NewClient(t)
		cbA := s.idp.Authorize(t, a, login, cbPrefix)
		_ = s.idp.Authorize(t, b, login, cbPrefix) // b holds a login cookie of its own
		expect(t, b, cbA.RawQuery, "invalid_state")
	})
	t.Run("replayed callback", func(t *testing.T) {
		c := idptest.NewClient(t)
		cb := s.idp.Authorize(t, c, login, cbPrefix)
		if resp, _ := s.do(c, http.MethodGet, cb.RequestURI(), nil); resp.Header.Get("Location") != "/" {
			t.Fatalf("first callback = %q, want /", resp.Header.Get("Location"))
		}
		expect(t, c, cb.RawQuery, "invalid_state") // its login cookie is gone
	})
	t.Run("replayed code", func(t *testing.T) {
		c := idptest.NewClient(t)
		cb1 := s.idp.Authorize(t, c, login, cbPrefix)
		if resp, _ := s.do(c, http.MethodGet, cb1.RequestURI(), nil); resp.Header.Get("Location") != "/" {
			t.Fatalf("first callback = %q, want /", resp.Header.Get("Location"))
		}
		cb2 := s.idp.Authorize(t, c, login, cbPrefix)
		expect(t, c, q("state", cb2.Query().Get("state"), "code", cb1.Query().Get("code")), "token_exchange_failed")
	})
	t.Run("provider error", func(t *testing.T) {
		c := idptest.NewClient(t)
		cb := s.idp.Authorize(t, c, login, cbPrefix)
		expect(t, c, q("state", cb.Query().Get("state"), "error", "access_denied", "error_description", "evil"), "access_denied")
	})
	t.Run("unknown provider error", func(t *testing.T) {
		c := idptest.NewClient(t)
		cb := s.idp.Authorize(t, c, login, cbPrefix)
		expect(t, c, q("state", cb.Query().Get("state"), "error", "server_error", "error_description", "evil"), "idp_error")
	})
	t.Run("provider error with a wrong iss", func(t *testing.T) {
		c := idptest.NewClient(t)
		cb := s.idp.Authorize(t, c, login, cbPrefix)
		expect(t, c, q("state", cb.Query().Get("state"), "error", "access_denied", "iss", "https://evil.example"), "invalid_iss")
	})
	t.Run("duplicated state deletes both login cookies", func(t *testing.T) {
		c := idptest.NewClient(t)
		cb1 := s.idp.Authorize(t, c, login, cbPrefix)
		cb2 := s.idp.Authorize(t, c, login, cbPrefix)
		resp, _ := s.do(c, http.MethodGet, "/auth/callback?"+q("state", cb1.Query().Get("state"), "state", cb2.Query().Get("state"), "code", "x"), nil)
		var deleted int
		for _, ck := range resp.Cookies() {
			if strings.Contains(ck.Name, "-login-") && ck.MaxAge < 0 {
				deleted++
			}
		}
		if deleted != 2 || resp.Header.Get("Location") != "/?auth_error=invalid_state" {
			t.Errorf("duplicated state = %q with %d login cookies deleted, want invalid_state and 2", resp.Header.Get("Location"), deleted)
		}
	})
	t.Run("wrong iss", func(t *testing.T) {
		c := idptest.NewClient(t)
		cb := s.idp.Authorize(t, c, login, cbPrefix)
		v := cb.Query()
		v.Set("iss", "https://evil.example")
		expect(t, c, v.Encode(), "invalid_iss")
	})
}

// TestHostileRequests covers cookies and headers an attacker controls.
func TestHostileRequests(t *testing.T) {
	s := startStack(t, stackOptions{kind: "hydra"})
	a := s.signIn("/")
	b := s.signIn("/")
	cookiesOf := func(c *http.Client, path string) []*http.Cookie { return c.Jar.Cookies(mustURL(s.url + path)) }
	send := func(method, path string, cookies []*http.Cookie, hdr map[string]string) (*http.Response, map[string]any) {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(method, s.url+path, nil)
		for _, ck := range cookies {
			req.AddCookie(ck)
		}
		if method == http.MethodPost {
			req.Header.Set("X-CSRF", "1")
		}
		for k, v := range hdr {
			if v == "" {
				req.Header.Del(k)
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if body, _ := io.ReadAll(resp.Body); len(body) > 0 {
			m = decodeJSON(t, body)
		}
		return resp, m
	}
	mutate := func(cs []*http.Cookie, name string, f func(string) string) []*http.Cookie {
		var out []*http.Cookie
		for _, c := range cs {
			c2 := *c
			if c2.Name == name {
				c2.Value = f(c2.Value)
			}
			out = append(out, &c2)
		}
		return out
	}

	unauth := func(t *testing.T, cookies []*http.Cookie) {
		t.Helper()
		if _, m := send(http.MethodGet, "/auth/session", cookies, nil); m["authenticated"] != false {
			t.Errorf("/auth/session = %v, want authenticated false", m)
		}
		if resp, m := send(http.MethodGet, "/auth/claims", cookies, nil); resp.StatusCode != 401 || m["error"] != "unauthenticated" {
			t.Errorf("/auth/claims = %d %v, want 401 unauthenticated", resp.StatusCode, m)
		}
	}
	t.Run("intact cookies work", func(t *testing.T) {
		if _, m := send(http.MethodGet, "/auth/session", cookiesOf(a, "/"), nil); m["authenticated"] != true {
			t.Fatalf("/auth/session = %v", m)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		unauth(t, mutate(cookiesOf(a, "/"), "__Host-Http-th-at", func(v string) string {
			b := []byte(v)
			b[len(b)/2] ^= 1
			return string(b)
		}))
	})
	t.Run("truncated", func(t *testing.T) {
		unauth(t, mutate(cookiesOf(a, "/"), "__Host-Http-th-id", func(v string) string { return v[:len(v)-10] }))
	})
	t.Run("garbage", func(t *testing.T) {
		unauth(t, mutate(cookiesOf(a, "/"), "__Host-Http-th-at", func(string) string { return strings.Repeat("A", 3000) }))
	})
	t.Run("sealed under an unknown key", func(t *testing.T) {
		opts := s.cookieOptions()
		kp, _ := session.GenerateKeyPair()
		opts.Keys = []session.KeyPair{kp}
		other, err := session.NewCookieStore(opts)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := s.session(a, "/auth/refresh")
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, s.url, nil)
		cs, err := other.Save(context.Background(), req, sess)
		if err != nil {
			t.Fatal(err)
		}
		var forged []*http.Cookie
		for _, c := range cs {
			if c.Path == "/" {
				forged = append(forged, &http.Cookie{Name: c.Name, Value: c.Value})
			}
		}
		unauth(t, forged)
	})
	t.Run("refresh cookie of another session", func(t *testing.T) {
		var mixed []*http.Cookie
		for _, c := range cookiesOf(a, "/auth/refresh") {
			if !strings.HasPrefix(c.Name, "__Secure-th-rt") {
				mixed = append(mixed, c)
			}
		}
		for _, c := range cookiesOf(b, "/auth/refresh") {
			if strings.HasPrefix(c.Name, "__Secure-th-rt") {
				mixed = append(mixed, c)
			}
		}
		calls := s.idp.TokenCalls()
		resp, m := send(http.MethodPost, "/auth/refresh", mixed, nil)
		if resp.StatusCode != 401 || m["error"] != "unauthenticated" {
			t.Errorf("POST /auth/refresh with a foreign refresh cookie = %d %v, want 401 unauthenticated", resp.StatusCode, m)
		}
		if len(resp.Cookies()) != 0 {
			t.Errorf("a binding failure deleted or set cookies: %v", resp.Cookies())
		}
		if got := s.idp.TokenCalls(); got != calls {
			t.Errorf("a binding failure reached the token endpoint")
		}
	})
	t.Run("missing CSRF header", func(t *testing.T) {
		for _, p := range []string{"/auth/refresh", "/auth/logout"} {
			resp, m := send(http.MethodPost, p, cookiesOf(a, p), map[string]string{"X-CSRF": ""})
			if resp.StatusCode != 403 || m["error"] != "csrf_failed" {
				t.Errorf("POST %s without X-CSRF = %d %v, want 403 csrf_failed", p, resp.StatusCode, m)
			}
		}
	})
	t.Run("foreign origin", func(t *testing.T) {
		resp, m := send(http.MethodPost, "/auth/refresh", cookiesOf(a, "/auth/refresh"), map[string]string{"Origin": "https://evil.example"})
		if resp.StatusCode != 403 || m["error"] != "origin_not_allowed" {
			t.Errorf("POST /auth/refresh from a foreign origin = %d %v, want 403 origin_not_allowed", resp.StatusCode, m)
		}
	})
	t.Run("open redirects", func(t *testing.T) {
		for _, rt := range []string{"//evil.example", "https://evil.example", "/\\evil.example", "/%2fevil.example", "javascript:alert(1)", "/%0d%0aX:1", "/auth/logout", "/api/orders", "/api",
			// Judged as the router sees the path: decoded, and clean.
			"/%61pi/orders", "/x/../api/orders", "/%2E%2E/api/orders", "/a/./b", "/%61uth/logout"} {
			resp, m := send(http.MethodGet, "/auth/login?return_to="+url.QueryEscape(rt), nil, nil)
			if resp.StatusCode != 400 || m["error"] != "bad_request" {
				t.Errorf("/auth/login?return_to=%s = %d, want 400", rt, resp.StatusCode)
			}
		}
	})
}

// TestLoginReplacesPlantedCookies: cookies planted in a browser before it signs in (an
// attacker's own session, say) are replaced by a session with a new id, never reused.
func TestLoginReplacesPlantedCookies(t *testing.T) {
	s := startStack(t, stackOptions{kind: "hydra"})
	attacker := s.signIn("/")
	planted, err := s.session(attacker, "/api/")
	if err != nil {
		t.Fatal(err)
	}
	victim := idptest.NewClient(t)
	// Planted as the cookies were set: the access and ID cookies on /, the refresh
	// cookie on each of its paths.
	for _, p := range []string{"/", "/api/", "/auth/refresh", "/auth/logout", "/auth/userinfo"} {
		for _, ck := range attacker.Jar.Cookies(mustURL(s.url + p)) {
			if (p == "/") != strings.HasPrefix(ck.Name, "__Secure-th-rt") {
				victim.Jar.SetCookies(mustURL(s.url+p), []*http.Cookie{{Name: ck.Name, Value: ck.Value, Path: p, Secure: true, HttpOnly: true}})
			}
		}
	}
	if _, err := s.session(victim, "/api/"); err != nil {
		t.Fatalf("planting failed: the victim does not hold the attacker's session: %v", err)
	}
	resp := s.idp.SignIn(t, victim, s.url+"/auth/login?return_to=/")
	resp.Body.Close()
	got, err := s.session(victim, "/api/")
	if err != nil {
		t.Fatalf("the victim's session after sign-in: %v", err)
	}
	if got.ID == planted.ID || got.RefreshToken == planted.RefreshToken || got.AccessToken == planted.AccessToken {
		t.Errorf("the sign-in reused the planted session (id reused: %v)", got.ID == planted.ID)
	}
}
