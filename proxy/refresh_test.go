package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// setCookies returns the response's cookies by name and path ("name path" -> cookie).
func setCookies(w *httptest.ResponseRecorder) map[string]*http.Cookie {
	m := map[string]*http.Cookie{}
	for _, c := range w.Result().Cookies() {
		m[c.Name+" "+c.Path] = c
	}
	return m
}

// wantNewCookies checks that w carries the cookies of a save of the session with access
// token at: the access cookie and the refresh cookie on each of its paths.
func wantNewCookies(t *testing.T, w *httptest.ResponseRecorder, at string) {
	t.Helper()
	got := setCookies(w)
	if c := got[atName+" /"]; c == nil || c.Value != "sess-"+at {
		t.Fatalf("Set-Cookie = %q, want %s=sess-%s", w.Header()["Set-Cookie"], atName, at)
	}
	for _, p := range []string{"/api/", "/auth/refresh"} {
		if got[rtName+" "+p] == nil {
			t.Fatalf("Set-Cookie = %q, want %s on path %s", w.Header()["Set-Cookie"], rtName, p)
		}
	}
	if cc := w.Header().Values("Cache-Control"); !slices.Equal(cc, []string{"no-store"}) {
		t.Fatalf("Cache-Control = %q, want [no-store] on a response that carries new cookies", cc)
	}
}

// wantDeletions checks that w clears every cookie of the session.
func wantDeletions(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	got := setCookies(w)
	for _, k := range []string{atName + " /", idName + " /", rtName + " /api/", rtName + " /auth/refresh"} {
		if c := got[k]; c == nil || c.MaxAge >= 0 {
			t.Fatalf("Set-Cookie = %q, want a deletion of %q", w.Header()["Set-Cookie"], k)
		}
	}
}

func (e *env) refreshLog() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.refreshes)
}

func TestProactiveRefresh(t *testing.T) {
	e := newEnv(t, nil)
	e.setSession(func(s *session.Session) { s.AccessExpiry = e.clock.Now().Add(10 * time.Second) })

	w := e.do(e.req("GET", "/api/x", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET = %d, want 200 (%q)", w.Code, w.Body)
	}
	if got := e.tokens.count(); got != 1 {
		t.Fatalf("refreshes = %d, want 1", got)
	}
	reqs := e.up.requests()
	if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer at-1-new" {
		t.Fatalf("upstream requests = %d, Authorization %q; want 1 with Bearer at-1-new", len(reqs), reqs[0].Header.Get("Authorization"))
	}
	wantNewCookies(t, w, "at-1-new")
	if got := e.refreshLog(); !slices.Equal(got, []string{"proactive/success"}) {
		t.Fatalf("OnRefresh calls = %q, want [proactive/success]", got)
	}

	t.Run("not yet within the skew", func(t *testing.T) {
		e := newEnv(t, nil)
		w := e.do(e.req("GET", "/api/x", nil))
		if w.Code != http.StatusOK || e.tokens.count() != 0 || w.Header()["Set-Cookie"] != nil {
			t.Fatalf("GET = %d, refreshes %d, Set-Cookie %q; want 200, 0, none", w.Code, e.tokens.count(), w.Header()["Set-Cookie"])
		}
	})
	t.Run("expiring, no refresh token", func(t *testing.T) {
		e := newEnv(t, nil)
		e.setSession(func(s *session.Session) {
			s.AccessExpiry = e.clock.Now().Add(10 * time.Second)
			s.RefreshToken = ""
		})
		w := e.do(e.req("GET", "/api/x", nil))
		reqs := e.up.requests()
		if w.Code != http.StatusOK || e.tokens.count() != 0 || len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer at-1" {
			t.Fatalf("GET = %d, refreshes %d, upstream %d; want 200, 0, 1 with the old token", w.Code, e.tokens.count(), len(reqs))
		}
	})
	t.Run("expired, no refresh token", func(t *testing.T) {
		e := newEnv(t, nil)
		e.setSession(func(s *session.Session) {
			s.AccessExpiry = e.clock.Now()
			s.RefreshToken = ""
		})
		wantError(t, e.do(e.req("GET", "/api/x", nil)), http.StatusUnauthorized, web.CodeUnauthenticated)
		if len(e.up.requests()) != 0 || e.tokens.count() != 0 {
			t.Fatalf("upstream requests %d, refreshes %d; want 0 and 0", len(e.up.requests()), e.tokens.count())
		}
	})
	t.Run("a 401 after a proactive refresh is passed on", func(t *testing.T) {
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
		e.setSession(func(s *session.Session) { s.AccessExpiry = e.clock.Now() })
		w := e.do(e.req("GET", "/api/x", nil))
		if w.Code != http.StatusUnauthorized || e.tokens.count() != 1 || len(e.up.requests()) != 1 {
			t.Fatalf("GET = %d, refreshes %d, upstream %d; want 401, 1, 1", w.Code, e.tokens.count(), len(e.up.requests()))
		}
		wantNewCookies(t, w, "at-1-new")
	})
}

// rejectOld answers 401 to the token at-1 (with the challenge given) and 200 "ok" to any other.
func rejectOld(challenge string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer at-1" {
			if challenge != "" {
				w.Header().Set("WWW-Authenticate", challenge)
			}
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "token rejected")
			return
		}
		io.WriteString(w, "ok")
	}
}

func TestReactiveRefresh(t *testing.T) {
	body := bytes.Repeat([]byte("{\"k\":\"\x00\xff€\"}\r\n"), 300)

	t.Run("POST retried once with the same bytes", func(t *testing.T) {
		e := newEnv(t, rejectOld(`Bearer realm="api", error="invalid_token", error_description="expired"`))
		w := e.do(e.req("POST", "/api/x?q=1", bytes.NewReader(body)))
		if w.Code != http.StatusOK || w.Body.String() != "ok" {
			t.Fatalf("POST = %d %q, want 200 ok", w.Code, w.Body)
		}
		reqs := e.up.requests()
		if len(reqs) != 2 {
			t.Fatalf("upstream saw %d requests, want 2", len(reqs))
		}
		for i, r := range reqs {
			if !bytes.Equal(r.Body, body) {
				t.Fatalf("upstream request %d body = %d bytes, want the %d bytes sent", i, len(r.Body), len(body))
			}
			if r.RequestURI != "/api/x?q=1" || r.Method != "POST" {
				t.Fatalf("upstream request %d = %s %s, want POST /api/x?q=1", i, r.Method, r.RequestURI)
			}
		}
		if a, b := reqs[0].Header["Authorization"], reqs[1].Header["Authorization"]; !slices.Equal(a, []string{"Bearer at-1"}) || !slices.Equal(b, []string{"Bearer at-1-new"}) {
			t.Fatalf("Authorization = %q then %q, want [Bearer at-1] then [Bearer at-1-new]", a, b)
		}
		if got := e.tokens.count(); got != 1 {
			t.Fatalf("refreshes = %d, want 1", got)
		}
		wantNewCookies(t, w, "at-1-new")
		if got := e.refreshLog(); !slices.Equal(got, []string{"reactive/success"}) {
			t.Fatalf("OnRefresh calls = %q, want [reactive/success]", got)
		}
		if got := e.upstreams; !slices.Equal(got, []string{"/api/ 200"}) {
			t.Fatalf("OnUpstream calls = %q, want one for the final answer", got)
		}
	})

	t.Run("no challenge, GET", func(t *testing.T) {
		e := newEnv(t, rejectOld(""))
		if w := e.do(e.req("GET", "/api/x", nil)); w.Code != http.StatusOK || e.tokens.count() != 1 || len(e.up.requests()) != 2 {
			t.Fatalf("GET = %d, refreshes %d, upstream %d; want 200, 1, 2", w.Code, e.tokens.count(), len(e.up.requests()))
		}
	})

	t.Run("body of exactly 1 MiB", func(t *testing.T) {
		e := newEnv(t, rejectOld(""))
		big := bytes.Repeat([]byte{'a'}, maxReplayBody)
		w := e.do(e.req("PUT", "/api/x", bytes.NewReader(big)))
		reqs := e.up.requests()
		if w.Code != http.StatusOK || len(reqs) != 2 || !bytes.Equal(reqs[1].Body, big) {
			t.Fatalf("PUT = %d with %d upstream requests, want 200 and 2 with the same body", w.Code, len(reqs))
		}
	})

	t.Run("second 401 passed on", func(t *testing.T) {
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "still no")
		})
		w := e.do(e.req("GET", "/api/x", nil))
		if w.Code != http.StatusUnauthorized || w.Body.String() != "still no" {
			t.Fatalf("GET = %d %q, want the upstream's 401 %q", w.Code, w.Body, "still no")
		}
		if e.tokens.count() != 1 || len(e.up.requests()) != 2 {
			t.Fatalf("refreshes %d, upstream %d; want 1 and 2", e.tokens.count(), len(e.up.requests()))
		}
		if got := w.Header().Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Fatalf("WWW-Authenticate = %q, want the upstream's", got)
		}
		wantNewCookies(t, w, "at-1-new") // the refresh happened; its rotated tokens are kept

		// The same session again within a minute: no refresh, one try.
		e.clock.Advance(59 * time.Second)
		w = e.do(e.req("GET", "/api/x", nil))
		if w.Code != http.StatusUnauthorized || e.tokens.count() != 1 || len(e.up.requests()) != 3 {
			t.Fatalf("within a minute: GET = %d, refreshes %d, upstream %d; want 401, 1, 3", w.Code, e.tokens.count(), len(e.up.requests()))
		}
		if w.Header()["Set-Cookie"] != nil {
			t.Fatalf("within a minute: Set-Cookie = %q, want none", w.Header()["Set-Cookie"])
		}
		// A minute later: refreshed again.
		e.clock.Advance(2 * time.Second)
		e.do(e.req("GET", "/api/x", nil))
		if e.tokens.count() != 2 || len(e.up.requests()) != 5 {
			t.Fatalf("after a minute: refreshes %d, upstream %d; want 2 and 5", e.tokens.count(), len(e.up.requests()))
		}
	})

	notReplayed := []struct {
		name      string
		challenge string
		req       func(e *env) *http.Request
		session   func(s *session.Session)
	}{
		{"chunked body", "", func(e *env) *http.Request {
			r := e.req("POST", "/api/x", bytes.NewReader(body))
			r.ContentLength = -1
			r.TransferEncoding = []string{"chunked"}
			return r
		}, nil},
		{"body over 1 MiB", "", func(e *env) *http.Request {
			return e.req("POST", "/api/x", bytes.NewReader(make([]byte, maxReplayBody+1)))
		}, nil},
		{"insufficient_scope", `Bearer error="insufficient_scope", scope="admin"`, func(e *env) *http.Request {
			return e.req("GET", "/api/x", nil)
		}, nil},
		{"invalid_request", `Bearer error=invalid_request`, func(e *env) *http.Request {
			return e.req("GET", "/api/x", nil)
		}, nil},
		{"no refresh token", "", func(e *env) *http.Request {
			return e.req("GET", "/api/x", nil)
		}, func(s *session.Session) { s.RefreshToken = "" }},
	}
	for _, tc := range notReplayed {
		t.Run("not replayed: "+tc.name, func(t *testing.T) {
			e := newEnv(t, rejectOld(tc.challenge))
			if tc.session != nil {
				e.setSession(tc.session)
			}
			r := tc.req(e)
			w := e.do(r)
			if w.Code != http.StatusUnauthorized || w.Body.String() != "token rejected" {
				t.Fatalf("%s = %d %q, want the upstream's 401", r.Method, w.Code, w.Body)
			}
			if e.tokens.count() != 0 || len(e.up.requests()) != 1 {
				t.Fatalf("refreshes %d, upstream %d; want 0 and 1", e.tokens.count(), len(e.up.requests()))
			}
			if r.Method == "POST" && len(e.up.requests()[0].Body) == 0 {
				t.Fatal("the upstream got no body")
			}
		})
	}
}

func TestRefreshFailures(t *testing.T) {
	denied := fmt.Errorf("fake: %w", session.ErrRefreshDenied)
	down := fmt.Errorf("fake: %w", session.ErrIdPUnavailable)
	tests := []struct {
		name     string
		reactive bool // an upstream 401 triggers it; else the token is expiring
		err      error
		saveErr  error
		status   int
		code     string
		deleted  bool
		outcome  string
	}{
		{"proactive denied", false, denied, nil, http.StatusUnauthorized, web.CodeSessionExpired, true, "proactive/denied"},
		{"proactive IdP down", false, down, nil, http.StatusBadGateway, web.CodeIdPUnavailable, false, "proactive/idp_unavailable"},
		{"proactive unknown error", false, errors.New("fake: boom"), nil, http.StatusBadGateway, web.CodeIdPUnavailable, false, "proactive/idp_unavailable"},
		{"proactive lock store down", false, fmt.Errorf("fake: %w", session.ErrStoreUnavailable), nil, http.StatusServiceUnavailable, web.CodeSessionStoreUnavailable, false, "proactive/store_unavailable"},
		{"proactive save fails", false, nil, fmt.Errorf("fake: %w", session.ErrStoreUnavailable), http.StatusServiceUnavailable, web.CodeSessionStoreUnavailable, false, "proactive/store_unavailable"},
		{"reactive denied", true, denied, nil, http.StatusUnauthorized, web.CodeSessionExpired, true, "reactive/denied"},
		{"reactive IdP down", true, down, nil, http.StatusBadGateway, web.CodeIdPUnavailable, false, "reactive/idp_unavailable"},
		{"reactive save fails", true, nil, errors.New("fake: sealing failed"), http.StatusServiceUnavailable, web.CodeSessionStoreUnavailable, false, "reactive/store_unavailable"},
		// Ended by back-channel logout while it refreshed: unauthenticated, not an outage.
		{"proactive save finds the session ended", false, nil, fmt.Errorf("fake: %w", session.ErrNoSession), http.StatusUnauthorized, web.CodeUnauthenticated, false, "proactive/ended"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, rejectOld(""))
			e.tokens.err = tc.err
			e.store.saveErr = tc.saveErr
			if !tc.reactive {
				e.setSession(func(s *session.Session) { s.AccessExpiry = e.clock.Now().Add(time.Second) })
			}
			w := e.do(e.req("GET", "/api/x", nil))
			wantError(t, w, tc.status, tc.code)
			wantUp := 0
			if tc.reactive {
				wantUp = 1
			}
			if got := len(e.up.requests()); got != wantUp {
				t.Fatalf("upstream saw %d requests, want %d", got, wantUp)
			}
			if _, deletes := e.store.counts(); (deletes == 1) != tc.deleted {
				t.Fatalf("store deletes = %d, want deleted=%t", deletes, tc.deleted)
			}
			if tc.deleted {
				wantDeletions(t, w)
			} else if sc := w.Header()["Set-Cookie"]; sc != nil {
				t.Fatalf("Set-Cookie = %q, want none: the session is kept", sc)
			}
			if got := e.refreshLog(); !slices.Equal(got, []string{tc.outcome}) {
				t.Fatalf("OnRefresh calls = %q, want [%s]", got, tc.outcome)
			}
		})
	}

	t.Run("retry fails after a good refresh: the new cookies still go out", func(t *testing.T) {
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "Bearer at-1" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
		})
		w := e.do(e.req("GET", "/api/x", nil))
		wantError(t, w, http.StatusBadGateway, web.CodeUpstreamUnavailable)
		got := setCookies(w)
		if c := got[atName+" /"]; c == nil || c.Value != "sess-at-1-new" {
			t.Fatalf("Set-Cookie = %q, want the refreshed session's cookies", w.Header()["Set-Cookie"])
		}
	})
}

// slowTokens holds a refresh until released, and fails it if its context ends first.
type slowTokens struct {
	inner   *fakeTokens
	started chan struct{}
	release chan struct{}
}

func (s *slowTokens) Refresh(ctx context.Context, sess *session.Session) (*session.Session, error) {
	close(s.started)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.release:
	}
	return s.inner.Refresh(ctx, sess)
}

// ctxStore records whether Save's context had ended.
type ctxStore struct {
	*fakeStore
	saveCtxErr chan error
}

func (c *ctxStore) Save(ctx context.Context, r *http.Request, s *session.Session) ([]*http.Cookie, error) {
	c.saveCtxErr <- ctx.Err()
	return c.fakeStore.Save(ctx, r, s)
}

// TestRefreshOutlivesTheClient: a client that leaves while its request refreshes does
// not cancel the refresh, and the refreshed session is still saved (with the Redis
// store, that is what keeps the rotated refresh token).
func TestRefreshOutlivesTheClient(t *testing.T) {
	e := newEnv(t, nil)
	e.setSession(func(s *session.Session) { s.AccessExpiry = e.clock.Now().Add(time.Second) })
	slow := &slowTokens{inner: e.tokens, started: make(chan struct{}), release: make(chan struct{})}
	store := &ctxStore{fakeStore: e.store, saveCtxErr: make(chan error, 1)}
	h, err := New(store, slow, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := e.req("GET", "/api/x", nil).WithContext(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}()
	<-slow.started
	cancel() // the browser navigates away
	close(slow.release)
	<-done
	select {
	case err := <-store.saveCtxErr:
		if err != nil {
			t.Errorf("Save ran with an ended context (%v): a Redis store would not have stored the rotated tokens", err)
		}
	default:
		t.Fatal("the refreshed session was never saved after the client left")
	}
	if saves, _ := e.store.counts(); saves != 1 || e.store.saved[0].RefreshToken != "rt-2" {
		t.Errorf("saved %d sessions, want the one with the rotated refresh token", saves)
	}
}
