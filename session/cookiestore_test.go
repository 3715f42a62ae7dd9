package session_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/session/sessiontest"
)

var ctx = context.Background()

func TestCookieStoreConformance(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		t.Run(fmt.Sprintf("insecure=%v", insecure), func(t *testing.T) {
			sessiontest.RunStore(t, func(t *testing.T) sessiontest.Harness {
				clk := newClock()
				o := origin
				if insecure {
					o = "http://localhost:8080"
				}
				return sessiontest.Harness{
					Store: newStoreWith(t, session.CookieOptions{Keys: []session.KeyPair{newKey(t)}, Insecure: insecure, Now: clk.Now,
						Logout: &session.Logout{Deny: session.NewLocalDenyList(session.DenyListOptions{Now: clk.Now})}}),
					Origin:      o,
					RefreshPath: "/api/items",
					OtherPath:   "/auth/session",
					Now:         clk.Now,
					Advance:     clk.Advance,
				}
			})
		})
	}
}

// pieces checks the cookies set under name (one path) and returns how many pieces were
// written: 0 for the plain form. Every piece must be NAME.0..NAME.n-1, each within 4000
// bytes of name plus value, and all but the last full.
func pieces(t *testing.T, cookies []*http.Cookie, name, path string) int {
	t.Helper()
	var plain, chunks []*http.Cookie
	for _, c := range set(cookies) {
		switch {
		case c.Path != path:
		case c.Name == name:
			plain = append(plain, c)
		case strings.HasPrefix(c.Name, name+"."):
			chunks = append(chunks, c)
		}
	}
	if len(plain)+len(chunks) == 0 {
		t.Fatalf("Save wrote no %s at %s", name, path)
	}
	if len(plain) > 0 {
		if len(plain) != 1 || len(chunks) != 0 {
			t.Fatalf("Save wrote %d plain and %d chunked %s at %s, want one form", len(plain), len(chunks), name, path)
		}
		if n := len(name) + len(plain[0].Value); n > 4000 {
			t.Errorf("%s is %d bytes, want <= 4000", name, n)
		}
		return 0
	}
	if len(chunks) > 4 {
		t.Errorf("Save wrote %d pieces of %s, want at most 4", len(chunks), name)
	}
	for i, c := range chunks {
		if want := name + "." + strconv.Itoa(i); c.Name != want {
			t.Errorf("piece %d is named %s, want %s", i, c.Name, want)
		}
		if n := len(c.Name) + len(c.Value); n > 4000 {
			t.Errorf("%s is %d bytes, want <= 4000", c.Name, n)
		} else if i < len(chunks)-1 && n != 4000 {
			t.Errorf("%s is %d bytes, want a full 4000 before the last piece", c.Name, n)
		}
	}
	return len(chunks)
}

func TestCookieStoreRoundTrip(t *testing.T) {
	tests := []struct {
		name           string
		at, id, rt     int
		atPieces, rtPc int // 0: plain form; -1: do not care
	}{
		{name: "small", at: 100, id: 300, rt: 40},
		{name: "typical", at: 1200, id: 1000, rt: 100},
		{name: "3KB access token", at: 3000, id: 1000, rt: 100, atPieces: 2},
		{name: "4KB access token", at: 4096, id: 1000, rt: 100, atPieces: 2},
		{name: "4KB refresh token", at: 1200, id: 1000, rt: 4096, rtPc: 2},
		{name: "4KB everything", at: 4096, id: 4096, rt: 4096, atPieces: 2, rtPc: 2},
		{name: "6KB access token", at: 6000, id: 100, rt: 100, atPieces: 3},
		{name: "empty tokens", at: 0, id: 0, rt: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			st := newStore(t, clk, newKey(t))
			names := st.Names()
			want := sampleSession(clk.Now(), tc.at, tc.id, tc.rt)
			cookies, err := st.Save(ctx, requestWith("/auth/callback"), want)
			if err != nil {
				t.Fatalf("Save() = %v", err)
			}
			sessiontest.CheckSetCookies(t, cookies)
			if got := pieces(t, cookies, names.Access, "/"); got != tc.atPieces {
				t.Errorf("access cookie written in %d pieces, want %d", got, tc.atPieces)
			}
			for _, p := range refreshPaths {
				if got := pieces(t, cookies, names.Refresh, p); got != tc.rtPc {
					t.Errorf("refresh cookie at %s written in %d pieces, want %d", p, got, tc.rtPc)
				}
			}
			pieces(t, cookies, names.ID, "/")

			b := sessiontest.NewBrowser(t, origin)
			b.Receive("/auth/callback", cookies)
			got, err := st.Load(ctx, b.Request(http.MethodGet, "/api/items"))
			if err != nil {
				t.Fatalf("Load(/api/items) = %v, want the saved session", err)
			}
			if d := sessiontest.Diff(got, want); d != "" {
				t.Errorf("Load(/api/items): %s", d)
			}
			got, err = st.Load(ctx, b.Request(http.MethodGet, "/auth/session"))
			if err != nil {
				t.Fatalf("Load(/auth/session) = %v, want the saved session", err)
			}
			if got.RefreshToken != "" {
				t.Errorf("Load(/auth/session).RefreshToken is set, want empty: the refresh cookie is not sent to /")
			}
		})
	}
}

func TestCookieStoreSaveTooLarge(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	_, err := st.Save(ctx, requestWith("/"), sampleSession(clk.Now(), 12000, 10, 10))
	if err == nil || errors.Is(err, session.ErrNoSession) {
		t.Errorf("Save(12 KB access token) = %v, want an error that is not ErrNoSession", err)
	}
}

func TestCookieStoreKeyRotation(t *testing.T) {
	clk := newClock()
	oldKey, newK, unknown := newKey(t), newKey(t), newKey(t)
	s := sampleSession(clk.Now(), 4096, 1000, 100) // chunked: one MAC over the pieces
	cookies, err := newStore(t, clk, oldKey).Save(ctx, requestWith("/"), s)
	if err != nil {
		t.Fatalf("Save() = %v", err)
	}
	b := sessiontest.NewBrowser(t, origin)
	b.Receive("/auth/callback", cookies)

	rotated := newStore(t, clk, newK, oldKey)
	got, err := rotated.Load(ctx, b.Request(http.MethodGet, "/api/x"))
	if err != nil {
		t.Fatalf("Load(sealed under the old key, new key first) = %v, want the session", err)
	}
	if d := sessiontest.Diff(got, s); d != "" {
		t.Errorf("Load after rotation: %s", d)
	}
	for _, keys := range [][]session.KeyPair{{unknown}, {newK}} {
		if _, err := newStore(t, clk, keys...).Load(ctx, b.Request(http.MethodGet, "/api/x")); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load(sealed under a key not in the ring) = %v, want ErrNoSession", err)
		}
	}
	// What the rotated store writes is sealed under the new key.
	cookies, err = rotated.Save(ctx, b.Request(http.MethodGet, "/api/x"), got)
	if err != nil {
		t.Fatalf("Save() = %v", err)
	}
	b.Receive("/api/x", cookies)
	if _, err := newStore(t, clk, newK).Load(ctx, b.Request(http.MethodGet, "/api/x")); err != nil {
		t.Errorf("Load(new key only) after a save by the rotated store = %v, want the session", err)
	}
	if _, err := newStore(t, clk, oldKey).Load(ctx, b.Request(http.MethodGet, "/api/x")); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("Load(old key only) after a save by the rotated store = %v, want ErrNoSession", err)
	}
}

// sessionCookies saves s and returns what a browser sends to /api/x afterwards.
func sessionCookies(t testing.TB, st *session.CookieStore, s *session.Session) []*http.Cookie {
	t.Helper()
	cookies, err := st.Save(ctx, requestWith("/"), s)
	if err != nil {
		t.Fatalf("Save() = %v", err)
	}
	b := sessiontest.NewBrowser(t, origin)
	b.Receive("/auth/callback", cookies)
	return b.Cookies("/api/x")
}

func TestCookieStoreLoadRefusesHostileCookies(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	n := st.Names()
	a := sessionCookies(t, st, sampleSession(clk.Now(), 4096, 1000, 100)) // access chunked
	other := sessionCookies(t, st, sampleSession(clk.Now(), 100, 100, 100))
	foreign := sessionCookies(t, newStore(t, clk, newKey(t)), sampleSession(clk.Now(), 100, 100, 100))
	pick := func(list []*http.Cookie, name string) *http.Cookie {
		t.Helper()
		cs := byName(list, name)
		if len(cs) != 1 {
			t.Fatalf("the browser sends %d cookies named %s, want 1", len(cs), name)
		}
		return cs[0]
	}
	with := func(c *http.Cookie, value string) *http.Cookie { return &http.Cookie{Name: c.Name, Value: value} }
	at0, at1 := pick(a, n.Access+".0"), pick(a, n.Access+".1")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}

	tests := []struct {
		name    string
		cookies []*http.Cookie
	}{
		{"no cookies", nil},
		{"only the refresh cookie", byName(a, n.Refresh)},
		{"no access cookie", without(a, at0.Name, at1.Name)},
		{"no ID cookie", without(a, n.ID)},
		{"tampered piece", append(without(a, at1.Name), with(at1, flip(at1.Value, len(at1.Value)/2)))},
		{"tampered ID cookie", append(without(a, n.ID), with(pick(a, n.ID), flip(pick(a, n.ID).Value, 100)))},
		{"truncated", append(without(a, at1.Name), with(at1, at1.Value[:len(at1.Value)-10]))},
		{"missing first piece", without(a, at0.Name)},
		{"missing middle piece", append(without(a, at1.Name), &http.Cookie{Name: n.Access + ".2", Value: at1.Value})},
		{"extra piece", append(slices.Clone(a), &http.Cookie{Name: n.Access + ".2", Value: "QUFBQQ=="})},
		{"piece beyond 4", append(slices.Clone(a), &http.Cookie{Name: n.Access + ".7", Value: "QUFBQQ=="})},
		{"pieces swapped", append(without(a, at0.Name, at1.Name), with(at0, at1.Value), with(at1, at0.Value))},
		{"plain and chunked of different sessions", append(slices.Clone(a), pick(other, n.Access))},
		{"too long", append(without(a, at0.Name, at1.Name), &http.Cookie{Name: n.Access, Value: strings.Repeat("A", 20000)})},
		{"too long in pieces", append(without(a, at0.Name, at1.Name),
			&http.Cookie{Name: n.Access + ".0", Value: strings.Repeat("A", 3990)}, &http.Cookie{Name: n.Access + ".1", Value: strings.Repeat("A", 3990)},
			&http.Cookie{Name: n.Access + ".2", Value: strings.Repeat("A", 3990)}, &http.Cookie{Name: n.Access + ".3", Value: strings.Repeat("A", 3990)})},
		{"garbage", append(without(a, at0.Name, at1.Name), &http.Cookie{Name: n.Access, Value: "garbage"})},
		{"empty value", append(without(a, at0.Name, at1.Name), &http.Cookie{Name: n.Access, Value: ""})},
		{"base64 of nothing", append(without(a, at0.Name, at1.Name), &http.Cookie{Name: n.Access, Value: "fHw="})},
		{"access value under the ID name", append(without(a, n.ID), with(pick(a, n.ID), pick(other, n.Access).Value))},
		{"sealed under a foreign key", append(without(a, n.ID), pick(foreign, n.ID))},
		{"access and ID of different sessions", append(without(a, n.ID), pick(other, n.ID))},
		{"refresh cookie of another session", append(without(a, n.Refresh), pick(other, n.Refresh))},
		{"two refresh cookies of different sessions", append(slices.Clone(a), pick(other, n.Refresh))},
		{"two refresh cookies, the first of another session", append(append(without(a, n.Refresh), pick(other, n.Refresh)), pick(a, n.Refresh))},
		{"two ID cookies of different sessions", append(slices.Clone(a), pick(other, n.ID))},
		{"a second, garbage refresh cookie", append(slices.Clone(a), &http.Cookie{Name: n.Refresh, Value: "x"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.Load(ctx, requestWith("/api/x", tc.cookies...))
			if !errors.Is(err, session.ErrNoSession) || got != nil {
				t.Errorf("Load(%s) = (session: %v), %v, want nil, ErrNoSession", tc.name, got != nil, err)
			}
		})
	}

	t.Run("control: unchanged", func(t *testing.T) {
		if _, err := st.Load(ctx, requestWith("/api/x", a...)); err != nil {
			t.Errorf("Load(unchanged cookies) = %v, want the session", err)
		}
	})
	t.Run("control: pieces in any order", func(t *testing.T) {
		if _, err := st.Load(ctx, requestWith("/api/x", append(without(a, at0.Name), at0)...)); err != nil {
			t.Errorf("Load(pieces out of order in the header) = %v, want the session", err)
		}
	})
}

func TestCookieStoreTwoRefreshCookiesOfOneSession(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	n := st.Names()
	s := sampleSession(clk.Now(), 100, 100, 100)
	first := sessionCookies(t, st, s)
	s2 := *s
	s2.RefreshToken = "rt-second"
	second := sessionCookies(t, st, &s2)
	// The browser sends the cookie of the most specific path first: that one is used.
	cookies := append(without(first, n.Refresh), byName(second, n.Refresh)[0], byName(first, n.Refresh)[0])
	got, err := st.Load(ctx, requestWith("/api/v2/x", cookies...))
	if err != nil {
		t.Fatalf("Load(two refresh cookies of one session) = %v, want the session", err)
	}
	if got.RefreshToken != "rt-second" {
		t.Errorf("Load(two refresh cookies of one session).RefreshToken is the second cookie's, want the first's")
	}
}

func TestCookieStoreExpiry(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	s := sampleSession(clk.Now(), 100, 100, 100)
	s.Expiry = clk.Now().Add(2 * time.Hour)
	cookies := sessionCookies(t, st, s)

	clk.Advance(2*time.Hour - time.Second)
	if _, err := st.Load(ctx, requestWith("/api/x", cookies...)); err != nil {
		t.Fatalf("Load(1s before expiry) = %v, want the session", err)
	}
	clk.Advance(time.Second)
	if _, err := st.Load(ctx, requestWith("/api/x", cookies...)); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("Load(at expiry) = %v, want ErrNoSession", err)
	}
}

func TestCookieStoreMaxAgeIsRemainingLifetime(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	s := sampleSession(clk.Now(), 100, 100, 100)
	s.Expiry = clk.Now().Add(12*time.Hour - 500*time.Millisecond)

	steps := []struct {
		advance time.Duration
		want    int
	}{
		{0, 43200}, // 11h59m59.5s, rounded up
		{2 * time.Hour, 36000},
		{10*time.Hour - 2*time.Second, 2},
		{2 * time.Second, 1}, // past expiry: still a positive Max-Age, Load refuses it
	}
	for _, step := range steps {
		clk.Advance(step.advance)
		cookies, err := st.Save(ctx, requestWith("/"), s)
		if err != nil {
			t.Fatalf("Save() = %v", err)
		}
		for _, c := range set(cookies) {
			if c.MaxAge != step.want {
				t.Errorf("after %v: %s at %s has Max-Age %d, want %d", step.advance, c.Name, c.Path, c.MaxAge, step.want)
			}
		}
	}
}

func TestCookieStoreAttributes(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	n := st.Names()
	if n.Access != "__Host-Http-th-at" || n.Refresh != "__Secure-th-rt" || n.ID != "__Host-Http-th-id" {
		t.Fatalf("Names() = %+v, want the __Host-Http-/__Secure- names", n)
	}
	b := sessiontest.NewBrowser(t, origin)
	big := sampleSession(clk.Now(), 4096, 1000, 4096)
	small := sampleSession(clk.Now(), 100, 100, 100)
	var all []*http.Cookie
	for _, s := range []*session.Session{big, small, big} {
		cookies, err := st.Save(ctx, b.Request(http.MethodGet, "/api/x"), s)
		if err != nil {
			t.Fatalf("Save() = %v", err)
		}
		b.Receive("/api/x", cookies)
		all = append(all, cookies...)
	}
	del, err := st.Delete(ctx, b.Request(http.MethodPost, "/auth/logout"), big)
	if err != nil {
		t.Fatalf("Delete() = %v", err)
	}
	all = append(all, del...)
	sessiontest.CheckSetCookies(t, all)

	for _, c := range all {
		if c.SameSite != http.SameSiteStrictMode || !c.HttpOnly || !c.Secure || c.Domain != "" {
			t.Errorf("%s at %s: SameSite=%v HttpOnly=%v Secure=%v Domain=%q, want Strict, HttpOnly, Secure, no Domain", c.Name, c.Path, c.SameSite, c.HttpOnly, c.Secure, c.Domain)
		}
		isRefresh := strings.HasPrefix(c.Name, n.Refresh)
		switch {
		case isRefresh && !slices.Contains(refreshPaths, c.Path):
			t.Errorf("%s has Path=%q, want one of the refresh paths %q", c.Name, c.Path, refreshPaths)
		case !isRefresh && c.Path != "/":
			t.Errorf("%s has Path=%q, want /", c.Name, c.Path)
		}
	}
	// The refresh cookie is written once per refresh path, never on /.
	cookies, err := st.Save(ctx, requestWith("/"), small)
	if err != nil {
		t.Fatalf("Save() = %v", err)
	}
	var paths []string
	for _, c := range byName(set(cookies), n.Refresh) {
		paths = append(paths, c.Path)
	}
	if !slices.Equal(paths, refreshPaths) {
		t.Errorf("refresh cookie written on %q, want exactly %q", paths, refreshPaths)
	}
}

func TestCookieStoreSaveDeletesStaleForms(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	n := st.Names()
	at := n.Access
	big := sampleSession(clk.Now(), 6000, 100, 100) // access in 3 pieces
	mid := *big
	mid.AccessToken = token("at.", 3000) // 2 pieces
	small := *big
	small.AccessToken = token("at.", 100) // plain

	tests := []struct {
		name        string
		before      *session.Session // what the browser holds
		plant       []*http.Cookie   // added to what the request carries
		after       *session.Session
		wantDeleted []string
		wantKept    []string // names that must not be deleted
	}{
		{name: "chunked to plain", before: big, after: &small, wantDeleted: []string{at + ".0", at + ".1", at + ".2"}, wantKept: []string{at + ".3", at}},
		{name: "plain to chunked", before: &small, after: &mid, wantDeleted: []string{at}, wantKept: []string{at + ".0", at + ".1", at + ".2", at + ".3"}},
		{name: "fewer pieces", before: big, after: &mid, wantDeleted: []string{at + ".2"}, wantKept: []string{at, at + ".3"}},
		{name: "extra piece the request carried", before: &mid, plant: []*http.Cookie{{Name: at + ".3", Value: "QUFB"}}, after: &mid, wantDeleted: []string{at + ".3"}, wantKept: []string{at, at + ".2"}},
		{name: "piece beyond 4 the request carried", before: &small, plant: []*http.Cookie{{Name: at + ".9", Value: "QUFB"}}, after: &small, wantDeleted: []string{at + ".9"}, wantKept: []string{at + ".0"}},
		{name: "nothing carried: no piece deleted", after: &small, wantKept: []string{at + ".0", at + ".1", at + ".2", at + ".3"}},
		{name: "nothing carried, chunked: the base form deleted", after: &mid, wantDeleted: []string{at}, wantKept: []string{at + ".2", at + ".3"}},
		{name: "same form: no deletion", before: &small, after: &small, wantKept: []string{at, at + ".0", at + ".1", at + ".2", at + ".3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := sessiontest.NewBrowser(t, origin)
			if tc.before != nil {
				cookies, err := st.Save(ctx, requestWith("/"), tc.before)
				if err != nil {
					t.Fatalf("Save(before) = %v", err)
				}
				b.Receive("/auth/callback", cookies)
			}
			b.Receive("/", tc.plant) // planted like a stale cookie, Path=/

			cookies, err := st.Save(ctx, b.Request(http.MethodGet, "/api/x"), tc.after)
			if err != nil {
				t.Fatalf("Save(after) = %v", err)
			}
			sessiontest.CheckSetCookies(t, cookies)
			del := deleted(cookies)
			for _, name := range tc.wantDeleted {
				if !del[name+" /"] {
					t.Errorf("Save did not delete %s at /; deleted %v", name, del)
				}
			}
			for _, name := range tc.wantKept {
				if del[name+" /"] {
					t.Errorf("Save deleted %s, which the request did not carry in that form", name)
				}
			}
			b.Receive("/api/x", cookies)
			got, err := st.Load(ctx, b.Request(http.MethodGet, "/api/x"))
			if err != nil {
				t.Fatalf("Load after Save = %v, want the session", err)
			}
			if d := sessiontest.Diff(got, tc.after); d != "" {
				t.Errorf("Load after Save: %s", d)
			}
		})
	}
}

// A new login's cookies arrive on the callback, which carries no SameSite=Strict cookie:
// an older session's base form, or its refresh cookie when the new one has none, must
// not break the new session. (Pieces it did not carry are not deleted: see DESIGN.md,
// "Sealing and chunking". An older session's pieces beyond the new one's, or beside a
// new plain form, are not cleared by the callback.)
func TestCookieStoreNewSessionReplacesOldForms(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	for _, tc := range []struct {
		name     string
		old, new *session.Session
	}{
		{"old plain, new chunked", sampleSession(clk.Now(), 100, 100, 100), sampleSession(clk.Now(), 6000, 4096, 4096)},
		{"new session without a refresh token", sampleSession(clk.Now(), 100, 100, 100), func() *session.Session {
			s := sampleSession(clk.Now(), 100, 100, 100)
			s.RefreshToken = ""
			return s
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := sessiontest.NewBrowser(t, origin)
			old, err := st.Save(ctx, requestWith("/"), tc.old)
			if err != nil {
				t.Fatalf("Save(old) = %v", err)
			}
			b.Receive("/auth/callback", old)
			cookies, err := st.Save(ctx, requestWith("/auth/callback"), tc.new) // carries nothing
			if err != nil {
				t.Fatalf("Save(new) = %v", err)
			}
			sessiontest.CheckSetCookies(t, cookies)
			b.Receive("/auth/callback", cookies)
			for _, path := range append([]string{"/", "/api/v2/x"}, refreshPaths...) {
				got, err := st.Load(ctx, b.Request(http.MethodGet, path))
				if err != nil {
					t.Fatalf("Load(%s) after a new login = %v, want the new session", path, err)
				}
				if got.ID != tc.new.ID {
					t.Errorf("Load(%s) after a new login returned the old session", path)
				}
			}
		})
	}
}

func TestCookieStoreSaveWithoutRefreshToken(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	n := st.Names()
	s := sampleSession(clk.Now(), 100, 100, 100)

	t.Run("same session seen where the refresh cookie is not sent", func(t *testing.T) {
		b := sessiontest.NewBrowser(t, origin)
		cookies, _ := st.Save(ctx, requestWith("/"), s)
		b.Receive("/auth/callback", cookies)
		loaded, err := st.Load(ctx, b.Request(http.MethodGet, "/auth/session"))
		if err != nil || loaded.RefreshToken != "" {
			t.Fatalf("Load(/auth/session) = %v (refresh token set: %v), want the session without its refresh token", err, loaded != nil && loaded.RefreshToken != "")
		}
		cookies, err = st.Save(ctx, b.Request(http.MethodGet, "/auth/session"), loaded)
		if err != nil {
			t.Fatalf("Save() = %v", err)
		}
		for _, c := range cookies {
			if strings.HasPrefix(c.Name, n.Refresh) {
				t.Errorf("Save touched %s at %s, want the refresh cookie left alone", c.Name, c.Path)
			}
		}
		b.Receive("/auth/session", cookies)
		got, err := st.Load(ctx, b.Request(http.MethodGet, "/api/x"))
		if err != nil || got.RefreshToken != s.RefreshToken {
			t.Errorf("Load(/api/x) = %v (refresh token kept: %v), want the session with its refresh token", err, err == nil && got.RefreshToken == s.RefreshToken)
		}
	})
	t.Run("refresh token dropped where the refresh cookie is sent", func(t *testing.T) {
		b := sessiontest.NewBrowser(t, origin)
		cookies, _ := st.Save(ctx, requestWith("/"), s)
		b.Receive("/auth/callback", cookies)
		noRT := *s
		noRT.RefreshToken = ""
		cookies, err := st.Save(ctx, b.Request(http.MethodGet, "/api/x"), &noRT)
		if err != nil {
			t.Fatalf("Save() = %v", err)
		}
		del := deleted(cookies)
		for _, p := range refreshPaths {
			if !del[n.Refresh+" "+p] {
				t.Errorf("Save(no refresh token) did not delete %s at %s", n.Refresh, p)
			}
		}
		b.Receive("/api/x", cookies)
		got, err := st.Load(ctx, b.Request(http.MethodGet, "/api/x"))
		if err != nil || got.RefreshToken != "" {
			t.Errorf("Load(/api/x) = %v (refresh token set: %v), want the session without a refresh token", err, err == nil && got.RefreshToken != "")
		}
	})
}

func TestCookieStoreDeleteClearsEverything(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	n := st.Names()
	b := sessiontest.NewBrowser(t, origin)
	s := sampleSession(clk.Now(), 6000, 6000, 6000)
	cookies, _ := st.Save(ctx, requestWith("/"), s)
	b.Receive("/auth/callback", cookies)

	for _, r := range []*http.Request{requestWith("/auth/logout"), b.Request(http.MethodPost, "/auth/logout")} {
		del, err := st.Delete(ctx, r, nil)
		if err != nil {
			t.Fatalf("Delete() = %v", err)
		}
		sessiontest.CheckSetCookies(t, del)
		if len(set(del)) != 0 {
			t.Errorf("Delete returned %d cookies that set a value, want only deletions", len(set(del)))
		}
		got := deleted(del)
		var want []string
		for _, name := range []string{n.Access, n.ID} {
			want = append(want, name+" /")
			for i := range 4 {
				want = append(want, fmt.Sprintf("%s.%d /", name, i))
			}
		}
		for _, p := range refreshPaths {
			want = append(want, n.Refresh+" "+p)
			for i := range 4 {
				want = append(want, fmt.Sprintf("%s.%d %s", n.Refresh, i, p))
			}
		}
		for _, w := range want {
			if !got[w] {
				t.Errorf("Delete did not delete %s", w)
			}
		}
		if len(got) != len(want) {
			t.Errorf("Delete deleted %d cookies, want %d", len(got), len(want))
		}
	}
	del, _ := st.Delete(ctx, requestWith("/auth/logout"), s)
	b.Receive("/auth/logout", del)
	for _, path := range append([]string{"/", "/api/v2/x"}, refreshPaths...) {
		if left := b.Cookies(path); len(left) != 0 {
			t.Errorf("after Delete the browser sends %d cookies to %s, want none", len(left), path)
		}
	}
}

func TestCookieStoreInsecure(t *testing.T) {
	clk := newClock()
	st := newStoreWith(t, session.CookieOptions{Keys: []session.KeyPair{newKey(t)}, Insecure: true, Now: clk.Now})
	n := st.Names()
	if want := session.NewCookieNames("th", true); n != want || n.Access != "th-at" || n.Refresh != "th-rt" {
		t.Fatalf("Names() = %+v, want %+v", n, want)
	}
	s := sampleSession(clk.Now(), 4096, 100, 100)
	cookies, err := st.Save(ctx, requestWith("/"), s)
	if err != nil {
		t.Fatalf("Save() = %v", err)
	}
	sessiontest.CheckSetCookies(t, cookies)
	for _, c := range cookies {
		if c.Secure {
			t.Errorf("insecure store: %s has Secure, want none", c.Name)
		}
	}
	b := sessiontest.NewBrowser(t, "http://localhost:8080")
	b.Receive("/auth/callback", cookies)
	got, err := st.Load(ctx, b.Request(http.MethodGet, "/api/x"))
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if d := sessiontest.Diff(got, s); d != "" {
		t.Errorf("Load(): %s", d)
	}
	// A secure store does not read the insecure names, and the other way round.
	if _, err := newStore(t, clk, newKey(t)).Load(ctx, b.Request(http.MethodGet, "/api/x")); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("secure store Load(insecure cookies) = %v, want ErrNoSession", err)
	}
}

func TestCookieStorePrefix(t *testing.T) {
	clk := newClock()
	st := newStoreWith(t, session.CookieOptions{Keys: []session.KeyPair{newKey(t)}, Prefix: "app2", Now: clk.Now})
	if got := st.Names().Access; got != "__Host-Http-app2-at" {
		t.Errorf("Names().Access = %q, want __Host-Http-app2-at", got)
	}
	s := sampleSession(clk.Now(), 100, 100, 100)
	if _, err := st.Load(ctx, requestWith("/api/x", sessionCookies(t, st, s)...)); err != nil {
		t.Errorf("Load() = %v, want the session", err)
	}
}

func TestNewCookieStoreRefusesBadOptions(t *testing.T) {
	k := newKey(t)
	tests := []struct {
		name string
		opts session.CookieOptions
	}{
		{"no keys", session.CookieOptions{RefreshPaths: refreshPaths}},
		{"short hash key", session.CookieOptions{Keys: []session.KeyPair{{Hash: k.Hash[:16], Block: k.Block}}, RefreshPaths: refreshPaths}},
		{"short block key", session.CookieOptions{Keys: []session.KeyPair{{Hash: k.Hash, Block: k.Block[:16]}}, RefreshPaths: refreshPaths}},
		{"no refresh paths", session.CookieOptions{Keys: []session.KeyPair{k}}},
		{"refresh path /", session.CookieOptions{Keys: []session.KeyPair{k}, RefreshPaths: []string{"/api/", "/"}}},
		{"relative refresh path", session.CookieOptions{Keys: []session.KeyPair{k}, RefreshPaths: []string{"api/"}}},
		{"refresh path with ;", session.CookieOptions{Keys: []session.KeyPair{k}, RefreshPaths: []string{"/api;x/"}}},
		{"bad prefix", session.CookieOptions{Keys: []session.KeyPair{k}, RefreshPaths: refreshPaths, Prefix: "th;x"}},
		{"negative lifetime", session.CookieOptions{Keys: []session.KeyPair{k}, RefreshPaths: refreshPaths, Lifetime: -time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := session.NewCookieStore(tc.opts); err == nil {
				t.Errorf("NewCookieStore(%s) = nil error, want an error", tc.name)
			}
		})
	}
}

func FuzzOpenCookies(f *testing.F) {
	clk := newClock()
	k := session.KeyPair{Hash: []byte(strings.Repeat("h", 32)), Block: []byte(strings.Repeat("b", 32))}
	st := newStore(f, clk, k)
	for _, s := range []*session.Session{sampleSession(clk.Now(), 100, 100, 100), sampleSession(clk.Now(), 4096, 200, 50)} {
		r := requestWith("/api/x", sessionCookies(f, st, s)...)
		f.Add(r.Header.Get("Cookie"))
	}
	n := st.Names()
	f.Add(n.Access + "=x; " + n.ID + "=y")
	f.Add(n.Access + ".0=QUFB; " + n.Access + ".1=QUFB; " + n.ID + "=fHw=")
	f.Add(n.Access + ".9=; " + n.Refresh + "=a; " + n.Refresh + "=b")
	f.Add("")
	f.Fuzz(func(t *testing.T, header string) {
		r, _ := http.NewRequest(http.MethodGet, origin+"/api/x", nil)
		r.Header.Set("Cookie", header)
		s, err := st.Load(ctx, r)
		switch {
		case err != nil && !errors.Is(err, session.ErrNoSession):
			t.Fatalf("Load(%q) = %v, want nil or ErrNoSession", header, err)
		case err == nil && (s == nil || s.ID == ""):
			t.Fatalf("Load(%q) = (session: %v), nil, want a session with an id", header, s != nil)
		}
	})
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkLoad(b *testing.B) {
	for _, size := range []int{1200, 3000} {
		b.Run(fmt.Sprintf("access=%dB", size), func(b *testing.B) {
			clk := newClock()
			st := newStore(b, clk, newKey(b))
			cookies, err := st.Save(ctx, requestWith("/"), sampleSession(clk.Now(), size, 1000, 100))
			if err != nil {
				b.Fatalf("Save() = %v", err)
			}
			r := requestWith("/api/x", set(cookies)[:0]...)
			for _, c := range set(cookies) {
				if c.Path == "/" || c.Path == "/api/" {
					r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
				}
			}
			if _, err := st.Load(ctx, r); err != nil {
				b.Fatalf("Load() = %v", err)
			}
			b.SetBytes(int64(len(r.Header.Get("Cookie"))))
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := st.Load(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			// On a shared machine wall time per op says more about the neighbours than
			// about Load; the process's CPU time per op (GC included) does not.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// The exact Set-Cookie lines of a save: a first sign-in (the callback carries no session
// cookie) answers the cookies it sets and, when the access token is chunked, the one
// deletion of its base form; a save whose request carried chunks deletes exactly those
// it does not rewrite. No deletion of a piece the request did not send.
func TestCookieStoreSaveSetCookieCounts(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	at := st.Names().Access
	nPaths := len(refreshPaths)
	small := sampleSession(clk.Now(), 100, 100, 100)
	big := sampleSession(clk.Now(), 6000, 100, 100) // access in 3 pieces
	check := func(t *testing.T, cookies []*http.Cookie, wantSet int, wantDeleted ...string) {
		t.Helper()
		sessiontest.CheckSetCookies(t, cookies)
		del := deleted(cookies)
		if got := len(set(cookies)); got != wantSet || len(del) != len(wantDeleted) || len(cookies) != wantSet+len(wantDeleted) {
			t.Errorf("Save answered %d Set-Cookie lines (%d set, deleted %v), want %d set and the deletions %v", len(cookies), got, del, wantSet, wantDeleted)
		}
		for _, d := range wantDeleted {
			if !del[d+" /"] {
				t.Errorf("Save did not delete %s; deleted %v", d, del)
			}
		}
	}

	t.Run("first sign-in", func(t *testing.T) {
		cookies, err := st.Save(ctx, requestWith("/auth/callback"), small)
		if err != nil {
			t.Fatalf("Save = %v", err)
		}
		check(t, cookies, 2+nPaths) // access, ID, the refresh cookie on each path
	})
	t.Run("first sign-in, chunked access token", func(t *testing.T) {
		cookies, err := st.Save(ctx, requestWith("/auth/callback"), big)
		if err != nil {
			t.Fatalf("Save = %v", err)
		}
		check(t, cookies, 3+1+nPaths, at) // 3 pieces, ID, refresh; the base form deleted
	})
	t.Run("request carried chunks", func(t *testing.T) {
		b := sessiontest.NewBrowser(t, origin)
		first, err := st.Save(ctx, requestWith("/auth/callback"), big)
		if err != nil {
			t.Fatalf("Save = %v", err)
		}
		b.Receive("/auth/callback", first)
		cookies, err := st.Save(ctx, b.Request(http.MethodGet, "/api/x"), small)
		if err != nil {
			t.Fatalf("Save = %v", err)
		}
		check(t, cookies, 2+nPaths, at+".0", at+".1", at+".2")
	})
}

// A sign-in clears the old session's cookies at /auth/login (where the SameSite=Strict
// cookies are sent), so that the callback, which cannot see them, leaves no piece of a
// differently chunked old session behind: the cases the callback alone cannot cover.
func TestCookieStoreClearBeforeANewSession(t *testing.T) {
	clk := newClock()
	st := newStore(t, clk, newKey(t))
	for _, tc := range []struct {
		name     string
		old, new *session.Session
	}{
		{name: "old chunked, new plain", old: sampleSession(clk.Now(), 6000, 4096, 100), new: sampleSession(clk.Now(), 100, 100, 100)},
		{name: "old 3 pieces, new 2", old: sampleSession(clk.Now(), 6000, 6000, 100), new: sampleSession(clk.Now(), 3000, 3000, 100)},
		{name: "old plain, new chunked", old: sampleSession(clk.Now(), 100, 100, 100), new: sampleSession(clk.Now(), 6000, 4096, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := sessiontest.NewBrowser(t, origin)
			old, err := st.Save(ctx, requestWith("/"), tc.old)
			if err != nil {
				t.Fatalf("Save(old) = %v", err)
			}
			b.Receive("/auth/callback", old)
			cleared := st.Clear(b.Request(http.MethodGet, "/auth/login"))
			sessiontest.CheckSetCookies(t, cleared)
			if len(set(cleared)) != 0 {
				t.Fatalf("Clear set cookies: %v", set(cleared))
			}
			b.Receive("/auth/login", cleared)
			cookies, err := st.Save(ctx, requestWith("/auth/callback"), tc.new) // carries nothing
			if err != nil {
				t.Fatalf("Save(new) = %v", err)
			}
			b.Receive("/auth/callback", cookies)
			for _, path := range append([]string{"/", "/api/v2/x"}, refreshPaths...) {
				got, err := st.Load(ctx, b.Request(http.MethodGet, path))
				if err != nil || got.ID != tc.new.ID {
					t.Fatalf("Load(%s) after clear and a new login = %v, want the new session", path, err)
				}
			}
		})
	}
	if got := st.Clear(requestWith("/auth/login")); len(got) != 0 {
		t.Errorf("Clear of a request without cookies = %d deletions, want none", len(got))
	}
}
