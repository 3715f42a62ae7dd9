// Package sessiontest holds test helpers for tokenhandler's sessions: the rules every
// Set-Cookie of tokenhandler keeps (CheckSetCookies), a minimal browser that stores and
// sends cookies by path as a browser does (Browser), the conformance suite that every
// session.Store runs (RunStore), and the Redis the Redis tests need: the shared one
// (RedisURL, KeyPrefix) and ones of a test's own (StartRedis, which the test may stop
// and start; StartRedisCluster; StartRedisSentinel).
package sessiontest

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// CheckSetCookies fails t for every cookie that a browser would ignore or that breaks
// tokenhandler's cookie rules, deletions included: it renders each cookie as the
// Set-Cookie line net/http writes and checks that line.
func CheckSetCookies(t testing.TB, cookies []*http.Cookie) {
	t.Helper()
	for _, c := range cookies {
		line := c.String()
		if line == "" {
			t.Errorf("cookie %q renders no Set-Cookie line (net/http drops it as invalid)", c.Name)
			continue
		}
		CheckSetCookieLine(t, line)
	}
}

// CheckSetCookieHeader applies CheckSetCookieLine to every Set-Cookie line of h.
func CheckSetCookieHeader(t testing.TB, h http.Header) {
	t.Helper()
	for _, line := range h.Values("Set-Cookie") {
		CheckSetCookieLine(t, line)
	}
}

// CheckSetCookieLine checks one Set-Cookie line against the rules browsers apply and the
// ones tokenhandler adds:
//   - a __Host- name (any case) has Secure, Path=/ and no Domain; a __Secure- one has Secure
//     (browsers silently ignore the line otherwise, deletions included);
//   - every cookie is HttpOnly, has an explicit SameSite and no Domain;
//   - a deletion (Max-Age=0 or an Expires in the past) carries the same attributes;
//   - name plus value fit in 4096 bytes.
func CheckSetCookieLine(t testing.TB, line string) {
	t.Helper()
	c, err := http.ParseSetCookie(line)
	if err != nil {
		t.Errorf("Set-Cookie %.60q does not parse: %v", line, err)
		return
	}
	lower := strings.ToLower(c.Name)
	switch {
	case strings.HasPrefix(lower, "__host-"):
		if !c.Secure || c.Path != "/" || c.Domain != "" {
			t.Errorf("Set-Cookie %s: __Host- cookie with Secure=%v Path=%q Domain=%q, want Secure, Path=/, no Domain", c.Name, c.Secure, c.Path, c.Domain)
		}
	case strings.HasPrefix(lower, "__secure-"):
		if !c.Secure {
			t.Errorf("Set-Cookie %s: __Secure- cookie without Secure", c.Name)
		}
	}
	if !c.HttpOnly {
		t.Errorf("Set-Cookie %s: not HttpOnly", c.Name)
	}
	if c.Domain != "" {
		t.Errorf("Set-Cookie %s: Domain=%q, want none", c.Name, c.Domain)
	}
	if c.SameSite == http.SameSiteDefaultMode {
		t.Errorf("Set-Cookie %s: no SameSite", c.Name)
	}
	if c.Path == "" {
		t.Errorf("Set-Cookie %s: no Path", c.Name)
	}
	if n := len(c.Name) + len(c.Value); n > 4096 {
		t.Errorf("Set-Cookie %s: name plus value is %d bytes, want <= 4096", c.Name, n)
	}
	if strings.Contains(line, "Max-Age=0") && c.Value != "" {
		t.Errorf("Set-Cookie %s: deletion with a value", c.Name)
	}
}

// Browser stores cookies from Set-Cookie and sends them back by path, most specific path
// first, as a browser does (it is net/http/cookiejar underneath, which does not enforce
// the __Host-/__Secure- rules: check those with CheckSetCookies).
type Browser struct {
	base *url.URL
	jar  *cookiejar.Jar
}

// NewBrowser returns a browser talking to origin ("https://app.example.com"; an http
// origin drops Secure cookies, as a browser does).
func NewBrowser(t testing.TB, origin string) *Browser {
	t.Helper()
	u, err := url.Parse(origin)
	if err != nil {
		t.Fatalf("NewBrowser(%q): %v", origin, err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("cookiejar.New: %v", err)
	}
	return &Browser{base: u, jar: jar}
}

// Receive stores cookies as if a response to path had set them.
func (b *Browser) Receive(path string, cookies []*http.Cookie) {
	b.jar.SetCookies(b.base.ResolveReference(&url.URL{Path: path}), cookies)
}

// Cookies returns what the browser sends to path.
func (b *Browser) Cookies(path string) []*http.Cookie {
	return b.jar.Cookies(b.base.ResolveReference(&url.URL{Path: path}))
}

// Request returns a request to path carrying the browser's cookies for it.
func (b *Browser) Request(method, path string) *http.Request {
	u := b.base.ResolveReference(&url.URL{Path: path})
	r, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		panic(err)
	}
	for _, c := range b.jar.Cookies(u) {
		r.AddCookie(c)
	}
	return r
}
