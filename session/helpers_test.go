package session_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

// clock is a settable clock for the stores under test. securecookie's own timestamp check
// uses the real clock, so tests start at the real time and only move forward.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

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

var refreshPaths = []string{"/api/", "/auth/refresh", "/auth/logout", "/auth/userinfo"}

const origin = "https://app.example.com"

func newKey(t testing.TB) session.KeyPair {
	t.Helper()
	k, err := session.GenerateKeyPair()
	if err != nil {
		t.Fatalf("GenerateKeyPair() = %v", err)
	}
	return k
}

func newStore(t testing.TB, clk *clock, keys ...session.KeyPair) *session.CookieStore {
	t.Helper()
	return newStoreWith(t, session.CookieOptions{Keys: keys, Now: clk.Now})
}

func newStoreWith(t testing.TB, opts session.CookieOptions) *session.CookieStore {
	t.Helper()
	if opts.RefreshPaths == nil {
		opts.RefreshPaths = refreshPaths
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = 12 * time.Hour
	}
	s, err := session.NewCookieStore(opts)
	if err != nil {
		t.Fatalf("NewCookieStore() = %v", err)
	}
	return s
}

// token returns a token-like string of n bytes (what providers issue: JWT characters).
func token(prefix string, n int) string {
	if n <= len(prefix) {
		return prefix[:n]
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	var b strings.Builder
	b.WriteString(prefix)
	for i := len(prefix); i < n; i++ {
		b.WriteByte(alphabet[(i*7+len(prefix))%len(alphabet)])
	}
	return b.String()
}

func sampleSession(now time.Time, at, id, rt int) *session.Session {
	return &session.Session{
		ID:           session.NewID(),
		Subject:      "user-1",
		SID:          "idp-sid-1",
		Name:         "Ada Lovelace",
		Email:        "ada@example.com",
		IDToken:      token("id.", id),
		AccessToken:  token("at.", at),
		AccessIssued: now,
		AccessExpiry: now.Add(5 * time.Minute),
		RefreshToken: token("rt.", rt),
		Expiry:       now.Add(12 * time.Hour),
	}
}

// set returns the cookies of list that set a value (not deletions).
func set(list []*http.Cookie) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range list {
		if c.MaxAge >= 0 {
			out = append(out, c)
		}
	}
	return out
}

// deleted returns "name path" of every deletion in list.
func deleted(list []*http.Cookie) map[string]bool {
	out := map[string]bool{}
	for _, c := range list {
		if c.MaxAge < 0 {
			out[c.Name+" "+c.Path] = true
		}
	}
	return out
}

// requestWith returns a request to path carrying exactly cookies, in order.
func requestWith(path string, cookies ...*http.Cookie) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, origin+path, nil)
	for _, c := range cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	return r
}

// byName returns the cookies of list named name, in order.
func byName(list []*http.Cookie, name string) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range list {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// without returns list without the cookies named in names.
func without(list []*http.Cookie, names ...string) []*http.Cookie {
	var out []*http.Cookie
outer:
	for _, c := range list {
		for _, n := range names {
			if c.Name == n {
				continue outer
			}
		}
		out = append(out, c)
	}
	return out
}
