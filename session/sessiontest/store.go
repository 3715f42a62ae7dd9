package sessiontest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

// Harness is one store under test, as RunStore needs it.
type Harness struct {
	Store session.Store
	// Origin is the origin the browser talks to: "https://app.example.com", or an http://
	// one for a store with insecure cookies.
	Origin string
	// RefreshPath is a request path the refresh cookie (if the store has one) is sent on.
	RefreshPath string
	// OtherPath is a request path it is not sent on.
	OtherPath string
	// Now is the store's clock; Advance moves it forward. Both may be nil: the expiry
	// test is then skipped.
	Now     func() time.Time
	Advance func(time.Duration)
	// Foreign is a store of the same kind and options but other keys (another
	// deployment); nil skips the test that its cookies do not open in Store.
	Foreign session.Store
	// ServerSide is set for stores that keep the session on the server.
	ServerSide bool
	// Replica, when set, is the same store at another replica (same keys, the same
	// Redis): a logout at Store must end the session there too. SyncReplica, when set,
	// brings the replica's local state up to date (a deny-list reload) before it is
	// asked, so that the test does not wait on pub/sub.
	Replica     session.Store
	SyncReplica func(t *testing.T)
}

// RunStore is the conformance suite every session.Store runs: what Save stores Load
// returns, on every path, 4 KB tokens included; Delete ends it; a new login replaces the
// session; anything the store did not write (garbage, a tampered cookie, another
// deployment's cookie, cookies of two sessions mixed) is no session, never a mix of two
// sessions; a session past its expiry is no session; every Set-Cookie keeps the cookie
// rules. newHarness is called once per subtest.
//
// It is long on purpose: one t.Run per case, in the order a reader checks a store, each
// sharing the small helpers declared at its top; split apart, the cases would need those
// helpers threaded through a dozen functions for no gain.
func RunStore(t *testing.T, newHarness func(t *testing.T) Harness) {
	ctx := context.Background()
	now := func(h Harness) time.Time {
		if h.Now != nil {
			return h.Now()
		}
		return time.Now()
	}
	save := func(t *testing.T, h Harness, b *Browser, path string, s *session.Session) {
		t.Helper()
		cookies, err := h.Store.Save(ctx, b.Request(http.MethodGet, path), s)
		if err != nil {
			t.Fatalf("Save(%s) = %v, want nil", path, err)
		}
		CheckSetCookies(t, cookies)
		b.Receive(path, cookies)
	}
	load := func(h Harness, b *Browser, path string) (*session.Session, error) {
		return h.Store.Load(ctx, b.Request(http.MethodGet, path))
	}

	t.Run("SaveThenLoad", func(t *testing.T) {
		h := newHarness(t)
		b := NewBrowser(t, h.Origin)
		want := Sample(now(h))
		save(t, h, b, "/auth/callback", want)
		got, err := load(h, b, h.RefreshPath)
		if err != nil {
			t.Fatalf("Load(%s) = %v, want the saved session", h.RefreshPath, err)
		}
		if diff := Diff(got, want); diff != "" {
			t.Errorf("Load(%s) differs from what was saved: %s", h.RefreshPath, diff)
		}
		got, err = load(h, b, h.OtherPath)
		if err != nil {
			t.Fatalf("Load(%s) = %v, want the saved session", h.OtherPath, err)
		}
		if got.RefreshToken != "" && got.RefreshToken != want.RefreshToken {
			t.Errorf("Load(%s).RefreshToken differs from the saved one", h.OtherPath)
		}
		noRT := *want
		noRT.RefreshToken = got.RefreshToken
		if diff := Diff(got, &noRT); diff != "" {
			t.Errorf("Load(%s) differs from what was saved: %s", h.OtherPath, diff)
		}
	})

	t.Run("SaveReplaces", func(t *testing.T) {
		h := newHarness(t)
		b := NewBrowser(t, h.Origin)
		first := Sample(now(h))
		save(t, h, b, "/auth/callback", first)
		second := *first
		second.AccessToken = "access-2-" + strings.Repeat("b", 50)
		second.RefreshToken = "refresh-2"
		second.TokenType = "DPoP" // a bound token keeps its type in every store
		second.AccessIssued = first.AccessIssued.Add(time.Minute)
		second.AccessExpiry = first.AccessExpiry.Add(time.Minute)
		save(t, h, b, h.RefreshPath, &second)
		got, err := load(h, b, h.RefreshPath)
		if err != nil {
			t.Fatalf("Load after a second Save = %v, want the session", err)
		}
		if diff := Diff(got, &second); diff != "" {
			t.Errorf("Load after a second Save: %s", diff)
		}
	})

	t.Run("NoCookies", func(t *testing.T) {
		h := newHarness(t)
		_, err := load(h, NewBrowser(t, h.Origin), h.RefreshPath)
		if !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load(no cookies) = %v, want ErrNoSession", err)
		}
	})

	t.Run("GarbageCookies", func(t *testing.T) {
		h := newHarness(t)
		b := NewBrowser(t, h.Origin)
		save(t, h, b, "/auth/callback", Sample(now(h)))
		for _, c := range b.Cookies(h.RefreshPath) {
			for _, v := range []string{"", "x", "MTIzNDU2Nzg5MA==", c.Value[:len(c.Value)/2], strings.Repeat("A", 5000)} {
				r := b.Request(http.MethodGet, h.RefreshPath)
				r.Header.Del("Cookie")
				for _, o := range b.Cookies(h.RefreshPath) {
					if o.Name == c.Name {
						o = &http.Cookie{Name: o.Name, Value: v}
					}
					r.AddCookie(o)
				}
				if _, err := h.Store.Load(ctx, r); !errors.Is(err, session.ErrNoSession) {
					t.Errorf("Load with cookie %s replaced by %d bytes of garbage = %v, want ErrNoSession", c.Name, len(v), err)
				}
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		h := newHarness(t)
		b := NewBrowser(t, h.Origin)
		s := Sample(now(h))
		save(t, h, b, "/auth/callback", s)
		cookies, err := h.Store.Delete(ctx, b.Request(http.MethodPost, "/auth/logout"), s)
		if err != nil {
			t.Fatalf("Delete = %v, want nil", err)
		}
		CheckSetCookies(t, cookies)
		b.Receive("/auth/logout", cookies)
		for _, path := range []string{h.RefreshPath, h.OtherPath} {
			if _, err := load(h, b, path); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Load(%s) after Delete = %v, want ErrNoSession", path, err)
			}
			if left := b.Cookies(path); len(left) > 0 {
				t.Errorf("after Delete the browser still sends %d cookies to %s, want none", len(left), path)
			}
		}
	})

	t.Run("Expired", func(t *testing.T) {
		h := newHarness(t)
		if h.Advance == nil {
			t.Skip("no clock to advance")
		}
		b := NewBrowser(t, h.Origin)
		s := Sample(now(h))
		s.Expiry = now(h).Add(time.Hour)
		save(t, h, b, "/auth/callback", s)
		h.Advance(time.Hour)
		if _, err := load(h, b, h.RefreshPath); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load at the session's expiry = %v, want ErrNoSession", err)
		}
	})

	t.Run("LargeTokens", func(t *testing.T) {
		h := newHarness(t)
		b := NewBrowser(t, h.Origin)
		want := Sample(now(h))
		want.AccessToken = tokenOf("at.", 4096)
		want.IDToken = tokenOf("id.", 2048)
		want.RefreshToken = tokenOf("rt.", 1024)
		save(t, h, b, "/auth/callback", want)
		got, err := load(h, b, h.RefreshPath)
		if err != nil {
			t.Fatalf("Load(%s) of a session with a 4 KB access token = %v, want it", h.RefreshPath, err)
		}
		if diff := Diff(got, want); diff != "" {
			t.Errorf("Load(%s) of a session with a 4 KB access token: %s", h.RefreshPath, diff)
		}
	})

	t.Run("NoRefreshToken", func(t *testing.T) {
		h := newHarness(t)
		b := NewBrowser(t, h.Origin)
		want := Sample(now(h))
		want.RefreshToken = ""
		want.SID = ""
		save(t, h, b, "/auth/callback", want)
		got, err := load(h, b, h.RefreshPath)
		if err != nil {
			t.Fatalf("Load(%s) of a session without refresh token = %v, want it", h.RefreshPath, err)
		}
		if diff := Diff(got, want); diff != "" {
			t.Errorf("Load(%s) of a session without refresh token: %s", h.RefreshPath, diff)
		}
	})

	t.Run("NewLoginReplacesSession", func(t *testing.T) {
		h := newHarness(t)
		b := NewBrowser(t, h.Origin)
		first := Sample(now(h))
		save(t, h, b, "/auth/callback", first)
		second := Sample(now(h))
		second.Subject = "user-2"
		second.AccessToken = "access-other"
		save(t, h, b, "/auth/callback", second)
		for _, path := range []string{h.RefreshPath, h.OtherPath} {
			got, err := load(h, b, path)
			if err != nil {
				t.Fatalf("Load(%s) after a second login = %v, want the new session", path, err)
			}
			if got.ID != second.ID || got.Subject != "user-2" || got.AccessToken != "access-other" {
				t.Errorf("Load(%s) after a second login = session of %s, want the new session of user-2", path, got.Subject)
			}
		}
	})

	t.Run("TamperedCookies", func(t *testing.T) {
		h := newHarness(t)
		b := NewBrowser(t, h.Origin)
		save(t, h, b, "/auth/callback", Sample(now(h)))
		for _, c := range b.Cookies(h.RefreshPath) {
			for _, pos := range []int{0, len(c.Value) / 2, len(c.Value) - 1} {
				v := []byte(c.Value)
				if v[pos] == 'A' {
					v[pos] = 'B'
				} else {
					v[pos] = 'A'
				}
				r := b.Request(http.MethodGet, h.RefreshPath)
				r.Header.Del("Cookie")
				for _, o := range b.Cookies(h.RefreshPath) {
					if o.Name == c.Name {
						o = &http.Cookie{Name: o.Name, Value: string(v)}
					}
					r.AddCookie(o)
				}
				if _, err := h.Store.Load(ctx, r); !errors.Is(err, session.ErrNoSession) {
					t.Errorf("Load with cookie %s changed at byte %d = %v, want ErrNoSession", c.Name, pos, err)
				}
			}
		}
	})

	t.Run("ForeignCookies", func(t *testing.T) {
		h := newHarness(t)
		if h.Foreign == nil {
			t.Skip("no foreign store")
		}
		b := NewBrowser(t, h.Origin)
		cookies, err := h.Foreign.Save(ctx, b.Request(http.MethodGet, "/auth/callback"), Sample(now(h)))
		if err != nil {
			t.Fatalf("Foreign.Save = %v", err)
		}
		b.Receive("/auth/callback", cookies)
		for _, path := range []string{h.RefreshPath, h.OtherPath} {
			if _, err := load(h, b, path); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Load(%s) of another deployment's cookies = %v, want ErrNoSession", path, err)
			}
		}
	})

	t.Run("MixedSessions", func(t *testing.T) {
		h := newHarness(t)
		a, b := NewBrowser(t, h.Origin), NewBrowser(t, h.Origin)
		sa, sb := Sample(now(h)), Sample(now(h))
		sb.Subject, sb.AccessToken, sb.RefreshToken = "user-2", "access-b", "refresh-b"
		save(t, h, a, "/auth/callback", sa)
		save(t, h, b, "/auth/callback", sb)
		fromA := a.Cookies(h.RefreshPath)
		for _, swap := range fromA {
			r := b.Request(http.MethodGet, h.RefreshPath)
			r.Header.Del("Cookie")
			for _, o := range b.Cookies(h.RefreshPath) {
				if o.Name == swap.Name {
					o = swap
				}
				r.AddCookie(&http.Cookie{Name: o.Name, Value: o.Value})
			}
			got, err := h.Store.Load(ctx, r)
			switch {
			case errors.Is(err, session.ErrNoSession):
			case err != nil:
				t.Errorf("Load(B's cookies with A's %s) = %v, want a session or ErrNoSession", swap.Name, err)
			case Diff(got, sa) != "" && Diff(got, sb) != "":
				t.Errorf("Load(B's cookies with A's %s) = a mix of two sessions (vs A: %s; vs B: %s)", swap.Name, Diff(got, sa), Diff(got, sb))
			}
		}
		// Both copies at once, A's and B's (a planted cookie beside ours): never a mix.
		r := b.Request(http.MethodGet, h.RefreshPath)
		for _, c := range fromA {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		if got, err := h.Store.Load(ctx, r); err == nil && Diff(got, sa) != "" && Diff(got, sb) != "" {
			t.Errorf("Load(A's and B's cookies together) = a mix of two sessions")
		} else if err != nil && !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load(A's and B's cookies together) = %v, want a session or ErrNoSession", err)
		}
	})

	// Logout is final in cookie mode too: cookies copied before Delete are no session,
	// here and at every replica, for every store.
	t.Run("DeleteEndsCopies", func(t *testing.T) {
		h := newHarness(t)
		b := NewBrowser(t, h.Origin)
		s := Sample(now(h))
		save(t, h, b, "/auth/callback", s)
		kept := []*http.Request{b.Request(http.MethodGet, h.RefreshPath), b.Request(http.MethodGet, h.OtherPath)}
		if _, err := h.Store.Load(ctx, kept[0]); err != nil {
			t.Fatalf("Load before Delete = %v, want the session", err)
		}
		if h.Replica != nil {
			if _, err := h.Replica.Load(ctx, kept[0]); err != nil {
				t.Fatalf("another replica: Load before Delete = %v, want the session", err)
			}
		}
		if _, err := h.Store.Delete(ctx, b.Request(http.MethodPost, "/auth/logout"), s); err != nil {
			t.Fatalf("Delete = %v", err)
		}
		for _, r := range kept {
			if _, err := h.Store.Load(ctx, r); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Load(%s, cookies kept from before Delete) = %v, want ErrNoSession", r.URL.Path, err)
			}
		}
		if h.Replica == nil {
			return
		}
		if h.SyncReplica != nil {
			h.SyncReplica(t)
		}
		for _, r := range kept {
			if _, err := h.Replica.Load(ctx, r); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("another replica: Load(%s, cookies kept from before Delete) = %v, want ErrNoSession", r.URL.Path, err)
			}
		}
	})

	t.Run("ConcurrentLoads", func(t *testing.T) {
		h := newHarness(t)
		b := NewBrowser(t, h.Origin)
		want := Sample(now(h))
		save(t, h, b, "/auth/callback", want)
		const n = 20
		errs := make(chan string, n)
		for range n {
			go func() {
				got, err := load(h, b, h.RefreshPath)
				switch {
				case err != nil:
					errs <- err.Error()
				case Diff(got, want) != "":
					errs <- Diff(got, want)
				default:
					errs <- ""
				}
			}()
		}
		for range n {
			if e := <-errs; e != "" {
				t.Errorf("concurrent Load: %s", e)
			}
		}
	})
}

// tokenOf returns a token-like string of n bytes.
func tokenOf(prefix string, n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	b := []byte(prefix)
	for i := len(b); i < n; i++ {
		b = append(b, alphabet[(i*7+len(prefix))%len(alphabet)])
	}
	return string(b[:n])
}

// Sample returns a session that expires 12h after now, with every field set.
func Sample(now time.Time) *session.Session {
	return &session.Session{
		ID:           session.NewID(),
		Subject:      "user-1",
		SID:          "idp-session-1",
		Name:         "Ada Lovelace",
		Email:        "ada@example.com",
		IDToken:      "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2ln",
		AccessToken:  "access-" + strings.Repeat("a", 60),
		AccessIssued: now.Truncate(time.Second),
		AccessExpiry: now.Truncate(time.Second).Add(5 * time.Minute),
		RefreshToken: "refresh-1",
		Expiry:       now.Truncate(time.Second).Add(12 * time.Hour),
	}
}

// Diff describes how got differs from want, field by field ("" when equal; times
// compared with Equal). Token values are never printed, only which field differs.
func Diff(got, want *session.Session) string {
	if got == nil || want == nil {
		if got == want {
			return ""
		}
		return "one session is nil"
	}
	var d []string
	str := func(name, g, w string, secret bool) {
		if g == w {
			return
		}
		if secret {
			d = append(d, name+" differs")
		} else {
			d = append(d, name+" = "+g+", want "+w)
		}
	}
	tm := func(name string, g, w time.Time) {
		if !g.Equal(w) {
			d = append(d, name+" = "+g.String()+", want "+w.String())
		}
	}
	str("ID", got.ID, want.ID, true)
	str("Subject", got.Subject, want.Subject, false)
	str("SID", got.SID, want.SID, false)
	str("Name", got.Name, want.Name, false)
	str("Email", got.Email, want.Email, false)
	str("IDToken", got.IDToken, want.IDToken, true)
	str("AccessToken", got.AccessToken, want.AccessToken, true)
	str("RefreshToken", got.RefreshToken, want.RefreshToken, true)
	str("TokenType", got.TokenType, want.TokenType, false)
	tm("AccessIssued", got.AccessIssued, want.AccessIssued)
	tm("AccessExpiry", got.AccessExpiry, want.AccessExpiry)
	tm("Expiry", got.Expiry, want.Expiry)
	return strings.Join(d, "; ")
}
