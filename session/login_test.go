package session_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/session/sessiontest"
)

func newJar(t *testing.T, clk *clock, k session.KeyPair) *session.LoginJar {
	t.Helper()
	j, err := session.NewLoginJar(session.LoginOptions{Keys: []session.KeyPair{k}, Now: clk.Now})
	if err != nil {
		t.Fatalf("NewLoginJar() = %v", err)
	}
	return j
}

func newLogin(state string) *session.Login {
	return &session.Login{State: state, Nonce: "nonce-" + state, Verifier: "verifier-" + state + strings.Repeat("v", 40), ReturnTo: "/app?tab=" + state}
}

// start runs Start with what b carries and hands the answer to b.
func start(t *testing.T, j *session.LoginJar, b *sessiontest.Browser, l *session.Login) []*http.Cookie {
	t.Helper()
	cookies, err := j.Start(b.Request(http.MethodGet, "/auth/login"), l)
	if err != nil {
		t.Fatalf("Start(%s) = %v", l.State, err)
	}
	sessiontest.CheckSetCookies(t, cookies)
	b.Receive("/auth/login", cookies)
	return cookies
}

// checkDeletion checks that cookies is exactly the deletion of one login cookie with the
// login cookie's own attributes.
func checkDeletion(t *testing.T, cookies []*http.Cookie, prefix string) {
	t.Helper()
	sessiontest.CheckSetCookies(t, cookies)
	if len(cookies) != 1 {
		t.Fatalf("Finish returned %d cookies, want the one deletion", len(cookies))
	}
	c := cookies[0]
	if !strings.HasPrefix(c.Name, prefix) || c.MaxAge >= 0 || c.Path != "/" || c.SameSite != http.SameSiteLaxMode || !c.Secure || !c.HttpOnly {
		t.Errorf("Finish returned %s (MaxAge %d, Path %q, SameSite %v), want the deletion of the login cookie with its attributes", c.Name, c.MaxAge, c.Path, c.SameSite)
	}
}

func TestLoginJarRoundTrip(t *testing.T) {
	clk := newClock()
	j := newJar(t, clk, newKey(t))
	prefix := session.NewCookieNames("", false).LoginPrefix
	b := sessiontest.NewBrowser(t, origin)
	want := newLogin("state-1")
	cookies := start(t, j, b, want)
	if len(cookies) != 1 {
		t.Fatalf("Start returned %d cookies, want 1", len(cookies))
	}
	c := cookies[0]
	if !strings.HasPrefix(c.Name, prefix) || strings.Contains(c.Name, "state-1") || c.MaxAge != 600 || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Errorf("Start set %s (MaxAge %d, SameSite %v, Path %q), want %s<hash>, Max-Age 600, SameSite=Lax, Path=/", c.Name, c.MaxAge, c.SameSite, c.Path, prefix)
	}
	if !want.Created.Equal(clk.Now()) {
		t.Errorf("Start left Created = %v, want now", want.Created)
	}
	clk.Advance(9 * time.Minute)
	got, del, err := j.Finish(b.Request(http.MethodGet, "/auth/callback"), "state-1")
	if err != nil {
		t.Fatalf("Finish(state-1) = %v, want the login", err)
	}
	if got.State != want.State || got.Nonce != want.Nonce || got.Verifier != want.Verifier || got.ReturnTo != want.ReturnTo || !got.Created.Equal(want.Created) {
		t.Errorf("Finish(state-1) = %+v, want %+v", got, want)
	}
	checkDeletion(t, del, prefix)
	if del[0].Name != c.Name {
		t.Errorf("Finish deletes %s, want the login cookie %s", del[0].Name, c.Name)
	}
}

func TestLoginJarTwoLoginsDoNotClobber(t *testing.T) {
	clk := newClock()
	j := newJar(t, clk, newKey(t))
	b := sessiontest.NewBrowser(t, origin)
	start(t, j, b, newLogin("tab-1"))
	start(t, j, b, newLogin("tab-2"))
	for _, state := range []string{"tab-2", "tab-1"} {
		got, del, err := j.Finish(b.Request(http.MethodGet, "/auth/callback"), state)
		if err != nil {
			t.Fatalf("Finish(%s) = %v, want the login", state, err)
		}
		if got.ReturnTo != "/app?tab="+state {
			t.Errorf("Finish(%s).ReturnTo = %q, want that login's", state, got.ReturnTo)
		}
		b.Receive("/auth/callback", del)
	}
	if left := b.Cookies("/"); len(left) != 0 {
		t.Errorf("after both callbacks the browser holds %d login cookies, want 0", len(left))
	}
}

func TestLoginJarKeepsAtMostFive(t *testing.T) {
	clk := newClock()
	j := newJar(t, clk, newKey(t))
	b := sessiontest.NewBrowser(t, origin)
	states := []string{"s1", "s2", "s3", "s4", "s5"}
	for _, s := range states {
		if cookies := start(t, j, b, newLogin(s)); len(cookies) != 1 {
			t.Errorf("Start(%s) with fewer than 5 logins returned %d cookies, want only the new one", s, len(cookies))
		}
		clk.Advance(time.Second)
	}
	cookies := start(t, j, b, newLogin("s6"))
	if len(deleted(cookies)) != 1 {
		t.Fatalf("the 6th Start deleted %d login cookies, want 1", len(deleted(cookies)))
	}
	if got := len(b.Cookies("/")); got != 5 {
		t.Errorf("after 6 logins the browser holds %d login cookies, want 5", got)
	}
	if _, _, err := j.Finish(b.Request(http.MethodGet, "/auth/callback"), "s1"); !errors.Is(err, session.ErrNoLogin) {
		t.Errorf("Finish(oldest login) = %v, want ErrNoLogin: the 6th login deletes the oldest", err)
	}
	for _, s := range append(states[1:], "s6") {
		if _, _, err := j.Finish(b.Request(http.MethodGet, "/auth/callback"), s); err != nil {
			t.Errorf("Finish(%s) = %v, want the login", s, err)
		}
	}
}

func TestLoginJarStartDeletesBadAndExpiredLogins(t *testing.T) {
	clk := newClock()
	j := newJar(t, clk, newKey(t))
	prefix := session.NewCookieNames("", false).LoginPrefix
	b := sessiontest.NewBrowser(t, origin)
	start(t, j, b, newLogin("old"))
	clk.Advance(11 * time.Minute)
	r := b.Request(http.MethodGet, "/auth/login")
	r.AddCookie(&http.Cookie{Name: prefix + "garbage", Value: "x"})
	cookies, err := j.Start(r, newLogin("new"))
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	sessiontest.CheckSetCookies(t, cookies)
	if got := len(deleted(cookies)); got != 2 {
		t.Errorf("Start deleted %d login cookies, want 2 (the expired one and the garbage one)", got)
	}
}

func TestLoginJarFinishRefuses(t *testing.T) {
	clk := newClock()
	k := newKey(t)
	j := newJar(t, clk, k)
	prefix := session.NewCookieNames("", false).LoginPrefix
	b := sessiontest.NewBrowser(t, origin)
	start(t, j, b, newLogin("a"))
	start(t, j, b, newLogin("b"))
	other := sessiontest.NewBrowser(t, origin)
	start(t, newJar(t, clk, newKey(t)), other, newLogin("a"))

	nameOf := func(br *sessiontest.Browser, state string) *http.Cookie {
		t.Helper()
		for _, c := range br.Cookies("/") {
			if _, _, err := j.Finish(requestWith("/auth/callback", c), state); err == nil {
				return c
			}
		}
		t.Fatalf("no login cookie for %s", state)
		return nil
	}
	ca, cb := nameOf(b, "a"), nameOf(b, "b")

	tests := []struct {
		name    string
		state   string
		cookies []*http.Cookie
		advance time.Duration
	}{
		{"wrong state", "c", []*http.Cookie{ca, cb}, 0},
		{"empty state", "", []*http.Cookie{ca, cb}, 0},
		{"no login cookie", "a", nil, 0},
		{"another login's value under this name", "a", []*http.Cookie{{Name: ca.Name, Value: cb.Value}}, 0},
		{"sealed under a foreign key", "a", other.Cookies("/"), 0},
		{"garbage", "a", []*http.Cookie{{Name: ca.Name, Value: "garbage"}}, 0},
		{"older than 10 minutes", "a", []*http.Cookie{ca}, 10*time.Minute + time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk.Advance(tc.advance)
			defer clk.Advance(-tc.advance)
			got, del, err := j.Finish(requestWith("/auth/callback", tc.cookies...), tc.state)
			if !errors.Is(err, session.ErrNoLogin) || got != nil {
				t.Errorf("Finish(%s) = (login: %v), %v, want nil, ErrNoLogin", tc.name, got != nil, err)
			}
			checkDeletion(t, del, prefix)
		})
	}
}

func TestLoginJarLongReturnTo(t *testing.T) {
	clk := newClock()
	j := newJar(t, clk, newKey(t))
	b := sessiontest.NewBrowser(t, origin)
	l := newLogin(session.NewID())
	l.Nonce, l.Verifier = session.NewID(), session.NewID()
	l.ReturnTo = "/" + strings.Repeat("p", 2047) // the 2 KiB that return_to may hold
	start(t, j, b, l)
	got, _, err := j.Finish(b.Request(http.MethodGet, "/auth/callback"), l.State)
	if err != nil || got.ReturnTo != l.ReturnTo {
		t.Fatalf("Finish(2 KiB return_to) = %v, want the login with its return_to", err)
	}
}

func TestLoginJarInsecure(t *testing.T) {
	clk := newClock()
	j, err := session.NewLoginJar(session.LoginOptions{Keys: []session.KeyPair{newKey(t)}, Insecure: true, Now: clk.Now})
	if err != nil {
		t.Fatalf("NewLoginJar() = %v", err)
	}
	cookies, err := j.Start(requestWith("/auth/login"), newLogin("x"))
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	if c := cookies[0]; c.Secure || !strings.HasPrefix(c.Name, "th-login-") {
		t.Errorf("insecure Start set %s with Secure=%v, want th-login-... without Secure", c.Name, c.Secure)
	}
}

// A request stuffed with forged login cookies gets a bounded answer: the new login
// cookie and a few deletions, not one deletion per forged cookie; the oldest real login
// beyond the limit is among them, and the newest real ones stay.
func TestLoginJarStartBoundsDeletionsOfAFlood(t *testing.T) {
	clk := newClock()
	j := newJar(t, clk, newKey(t))
	prefix := session.NewCookieNames("", false).LoginPrefix
	b := sessiontest.NewBrowser(t, origin)
	for _, s := range []string{"s1", "s2", "s3", "s4", "s5"} {
		start(t, j, b, newLogin(s))
		clk.Advance(time.Second)
	}
	r := b.Request(http.MethodGet, "/auth/login")
	const forged = 2000
	var header strings.Builder
	for i := range forged {
		fmt.Fprintf(&header, "; %sforged%d=x", prefix, i)
	}
	r.Header.Set("Cookie", r.Header.Get("Cookie")+header.String())
	cookies, err := j.Start(r, newLogin("s6"))
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	sessiontest.CheckSetCookies(t, cookies)
	if len(cookies) > 1+2*session.MaxLogins {
		t.Fatalf("Start with %d forged login cookies answered %d Set-Cookie lines, want at most %d", forged, len(cookies), 1+2*session.MaxLogins)
	}
	b.Receive("/auth/login", cookies)
	if _, _, err := j.Finish(b.Request(http.MethodGet, "/auth/callback"), "s1"); !errors.Is(err, session.ErrNoLogin) {
		t.Errorf("Finish(oldest login) = %v, want ErrNoLogin: the new login deletes the oldest even in a flood", err)
	}
	for _, s := range []string{"s2", "s3", "s4", "s5", "s6"} {
		if _, _, err := j.Finish(b.Request(http.MethodGet, "/auth/callback"), s); err != nil {
			t.Errorf("Finish(%s) = %v, want the login", s, err)
		}
	}
}

// BenchmarkLoginJarStartFlood measures Start against a request of n forged login
// cookies: the cost per cookie stays flat as n grows (it was quadratic).
func BenchmarkLoginJarStartFlood(b *testing.B) {
	k, err := session.GenerateKeyPair()
	if err != nil {
		b.Fatal(err)
	}
	j, err := session.NewLoginJar(session.LoginOptions{Keys: []session.KeyPair{k}})
	if err != nil {
		b.Fatal(err)
	}
	prefix := session.NewCookieNames("", false).LoginPrefix
	for _, n := range []int{100, 500, 2500} {
		var header strings.Builder
		for i := range n {
			fmt.Fprintf(&header, "%s%022d=x; ", prefix, i) // names of a real one's length
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r, _ := http.NewRequest(http.MethodGet, "https://app.example.com/auth/login", nil)
			r.Header.Set("Cookie", header.String())
			for b.Loop() {
				if _, err := j.Start(r, &session.Login{State: "s"}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/cookie")
		})
	}
}
