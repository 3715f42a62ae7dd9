package session_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenhandler/tokenhandler/redisclient"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/session/sessiontest"
)

// testRedis is one replica's view of a Redis: a client and a session.Redis over it
// with the test's key prefix.
type testRedis struct {
	client redis.UniversalClient
	r      *session.Redis
	prefix string
	logs   *logBuffer

	mu     sync.Mutex
	failed map[string]int // OnError calls by op
}

func (tr *testRedis) failures(op string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.failed[op]
}

// newTestRedis connects to url under prefix (a fresh one from sessiontest.KeyPrefix when
// empty), as tokenhandler does: through redisclient, with its timeouts.
func newTestRedis(t testing.TB, url, prefix string) *testRedis {
	t.Helper()
	if prefix == "" {
		prefix = sessiontest.KeyPrefix(t, url)
	}
	client, _, err := redisclient.New(redisclient.Options{URL: url, MaxRetries: 1})
	if err != nil {
		t.Fatalf("redisclient.New: %v", err)
	}
	tr := &testRedis{client: client, prefix: prefix, logs: &logBuffer{}, failed: map[string]int{}}
	tr.r = session.NewRedis(client, session.RedisOptions{
		KeyPrefix: prefix,
		Logger:    slog.New(slog.NewTextHandler(tr.logs, nil)),
		OnError: func(op string) {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			tr.failed[op]++
		},
	})
	t.Cleanup(func() {
		_ = tr.r.Close()
		_ = client.Close()
	})
	return tr
}

func newRedisStore(t testing.TB, tr *testRedis, clk *clock, keys ...session.KeyPair) *session.RedisStore {
	t.Helper()
	if len(keys) == 0 {
		keys = []session.KeyPair{newKey(t)}
	}
	s, err := session.NewRedisStore(tr.r, session.RedisStoreOptions{Keys: keys, Lifetime: 12 * time.Hour, IdleTimeout: time.Hour, Now: clk.Now})
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	return s
}

func TestRedisStoreConformance(t *testing.T) {
	url := sessiontest.RedisURL(t)
	sessiontest.RunStore(t, func(t *testing.T) sessiontest.Harness {
		clk := newClock()
		tr := newTestRedis(t, url, "")
		key := newKey(t)
		return sessiontest.Harness{
			Store:       newRedisStore(t, tr, clk, key),
			Replica:     newRedisStore(t, newTestRedis(t, url, tr.prefix), clk, key),
			Foreign:     newRedisStore(t, tr, clk),
			ServerSide:  true,
			Origin:      origin,
			RefreshPath: "/api/items",
			OtherPath:   "/auth/session",
			Now:         clk.Now,
			Advance:     clk.Advance,
		}
	})
}

// The cookie store passes the suite with another deployment's cookies too, and with the
// deny list of back-channel logout in front (cookie store + redis.url).
func TestCookieStoreConformanceWithRedis(t *testing.T) {
	t.Run("foreign", func(t *testing.T) {
		sessiontest.RunStore(t, func(t *testing.T) sessiontest.Harness {
			clk := newClock()
			return sessiontest.Harness{
				Store: newStoreWith(t, session.CookieOptions{Keys: []session.KeyPair{newKey(t)}, Now: clk.Now,
					Logout: &session.Logout{Deny: session.NewLocalDenyList(session.DenyListOptions{Now: clk.Now})}}),
				Foreign:     newStore(t, clk, newKey(t)),
				Origin:      origin,
				RefreshPath: "/api/items",
				OtherPath:   "/auth/session",
				Now:         clk.Now,
				Advance:     clk.Advance,
			}
		})
	})
	t.Run("deny list", func(t *testing.T) {
		url := sessiontest.RedisURL(t)
		sessiontest.RunStore(t, func(t *testing.T) sessiontest.Harness {
			clk := newClock()
			tr := newTestRedis(t, url, "")
			deny := session.NewDenyList(tr.r, session.DenyListOptions{Lifetime: 12 * time.Hour, Now: clk.Now})
			// An entry for someone else must not end the sessions under test.
			if _, err := deny.EndSessions(ctx, "another-sid", "", clk.Now()); err != nil {
				t.Fatalf("EndSessions: %v", err)
			}
			key := newKey(t)
			denyB := session.NewDenyList(newTestRedis(t, url, tr.prefix).r, session.DenyListOptions{Lifetime: 12 * time.Hour, Now: clk.Now})
			return sessiontest.Harness{
				Store: newStoreWith(t, session.CookieOptions{Keys: []session.KeyPair{key}, Now: clk.Now, Ended: deny.Ended,
					Logout: &session.Logout{Deny: deny}}),
				Replica: newStoreWith(t, session.CookieOptions{Keys: []session.KeyPair{key}, Now: clk.Now, Ended: denyB.Ended}),
				SyncReplica: func(t *testing.T) {
					if err := denyB.Reload(ctx); err != nil {
						t.Fatalf("replica: Reload = %v", err)
					}
				},
				Foreign:     newStore(t, clk, newKey(t)),
				Origin:      origin,
				RefreshPath: "/api/items",
				OtherPath:   "/auth/session",
				Now:         clk.Now,
				Advance:     clk.Advance,
			}
		})
	})
}

// saveRedis saves s into store as a callback would and returns a request that carries
// the resulting cookie.
func saveRedis(t testing.TB, store session.Store, s *session.Session) *http.Request {
	t.Helper()
	cookies, err := store.Save(ctx, requestWith("/auth/callback"), s)
	if err != nil {
		t.Fatalf("Save = %v", err)
	}
	sessiontest.CheckSetCookies(t, cookies)
	return requestWith("/api/items", set(cookies)...)
}

func redisKeys(t testing.TB, tr *testRedis) []string {
	t.Helper()
	keys, err := tr.client.Keys(ctx, tr.prefix+"*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	return keys
}

// What Redis holds reveals no token, no session id, no per-session key; the cookie
// reveals no token either; and the key ring alone, without the cookie, opens nothing.
func TestRedisStoreRevealsNothing(t *testing.T) {
	url := sessiontest.RedisURL(t)
	tr := newTestRedis(t, url, "")
	clk := newClock()
	key := newKey(t)
	store := newRedisStore(t, tr, clk, key)
	s := sampleSession(clk.Now(), 300, 200, 100)
	req := saveRedis(t, store, s)
	cookie := req.Header.Get("Cookie")
	if !strings.HasPrefix(cookie, "__Host-Http-th-session=") || strings.Count(cookie, "=") < 1 || len(cookie) > 600 {
		t.Errorf("request cookie = %.40q... (%d bytes), want one small __Host-Http-th-session cookie", cookie, len(cookie))
	}
	secrets := map[string]string{"access token": s.AccessToken, "refresh token": s.RefreshToken, "ID token": s.IDToken, "session id": s.ID, "email": s.Email}
	for what, v := range secrets {
		if strings.Contains(cookie, v) {
			t.Errorf("the session cookie contains the %s", what)
		}
	}
	keys := redisKeys(t, tr)
	if len(keys) == 0 {
		t.Fatal("nothing in Redis after Save")
	}
	for _, k := range keys {
		for what, v := range secrets {
			if strings.Contains(k, v) {
				t.Errorf("Redis key %s contains the %s", k, what)
			}
		}
		if typ := tr.client.Type(ctx, k).Val(); typ != "string" {
			continue
		}
		val := tr.client.Get(ctx, k).Val()
		for what, v := range secrets {
			if strings.Contains(val, v) {
				t.Errorf("the value of %s contains the %s", k, what)
			}
		}
	}
	// Another deployment with the same key ring but without this browser's cookie, or
	// with the cookie of another session, cannot read it.
	other := newRedisStore(t, tr, clk, key)
	req2 := saveRedis(t, other, sampleSession(clk.Now(), 50, 50, 50))
	if got, err := store.Load(ctx, req2); err == nil && got.ID == s.ID {
		t.Errorf("another session's cookie opened this session")
	}
	if got, err := store.Load(ctx, req); err != nil || got.AccessToken != s.AccessToken {
		t.Errorf("Load(the session's own cookie) = %v, want the session", err)
	}
}

func pttl(t testing.TB, tr *testRedis, sessionCount int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for _, k := range redisKeys(t, tr) {
		if strings.HasPrefix(k, tr.prefix+"session:") {
			out = append(out, tr.client.PTTL(ctx, k).Val())
		}
	}
	if len(out) != sessionCount {
		t.Fatalf("Redis holds %d sessions, want %d", len(out), sessionCount)
	}
	return out
}

// TTL = min(remaining absolute lifetime, idle timeout), extended on use at most once a
// minute and never beyond the absolute lifetime.
func TestRedisStoreTTL(t *testing.T) {
	url := sessiontest.RedisURL(t)
	t.Run("idle shorter than lifetime", func(t *testing.T) {
		tr := newTestRedis(t, url, "")
		clk := newClock()
		store := newRedisStore(t, tr, clk)
		req := saveRedis(t, store, sampleSession(clk.Now(), 10, 10, 10))
		if got := pttl(t, tr, 1)[0]; got > time.Hour || got < time.Hour-5*time.Second {
			t.Errorf("TTL after Save = %v, want the 1h idle timeout", got)
		}
		k := redisKeys(t, tr)
		name := ""
		for _, x := range k {
			if strings.HasPrefix(x, tr.prefix+"session:") {
				name = x
			}
		}
		// Used 30 s after the last extension: not extended.
		tr.client.PExpire(ctx, name, time.Hour-30*time.Second)
		if _, err := store.Load(ctx, req); err != nil {
			t.Fatalf("Load = %v", err)
		}
		if got := pttl(t, tr, 1)[0]; got > time.Hour-29*time.Second {
			t.Errorf("TTL after a use 30s after the last extension = %v, want it unchanged (at most one extension a minute)", got)
		}
		// Used 61 s after: extended back to the idle timeout.
		tr.client.PExpire(ctx, name, time.Hour-61*time.Second)
		if _, err := store.Load(ctx, req); err != nil {
			t.Fatalf("Load = %v", err)
		}
		if got := pttl(t, tr, 1)[0]; got < time.Hour-5*time.Second {
			t.Errorf("TTL after a use 61s after the last extension = %v, want it back at 1h", got)
		}
	})
	t.Run("lifetime shorter than idle", func(t *testing.T) {
		tr := newTestRedis(t, url, "")
		clk := newClock()
		store := newRedisStore(t, tr, clk)
		s := sampleSession(clk.Now(), 10, 10, 10)
		s.Expiry = clk.Now().Add(20 * time.Minute)
		req := saveRedis(t, store, s)
		if got := pttl(t, tr, 1)[0]; got > 20*time.Minute || got < 20*time.Minute-5*time.Second {
			t.Errorf("TTL of a session 20 min from its end = %v, want 20m", got)
		}
		clk.Advance(5 * time.Minute)
		if _, err := store.Load(ctx, req); err != nil {
			t.Fatalf("Load = %v", err)
		}
		if got := pttl(t, tr, 1)[0]; got > 20*time.Minute {
			t.Errorf("TTL after use = %v, want never beyond the absolute lifetime", got)
		}
	})
	t.Run("idle session is gone", func(t *testing.T) {
		tr := newTestRedis(t, url, "")
		clk := newClock()
		store := newRedisStore(t, tr, clk)
		req := saveRedis(t, store, sampleSession(clk.Now(), 10, 10, 10))
		for _, k := range redisKeys(t, tr) {
			if strings.HasPrefix(k, tr.prefix+"session:") {
				tr.client.PExpire(ctx, k, time.Millisecond)
			}
		}
		time.Sleep(20 * time.Millisecond)
		if _, err := store.Load(ctx, req); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("Load after the idle timeout = %v, want ErrNoSession", err)
		}
	})
}

// A tokenhandler restart (a new store on the same Redis, with the same keys) keeps the
// session.
func TestRedisStoreSurvivesRestart(t *testing.T) {
	url := sessiontest.RedisURL(t)
	tr := newTestRedis(t, url, "")
	clk := newClock()
	key := newKey(t)
	s := sampleSession(clk.Now(), 100, 100, 100)
	req := saveRedis(t, newRedisStore(t, tr, clk, key), s)
	again := newTestRedis(t, url, tr.prefix)
	got, err := newRedisStore(t, again, clk, key).Load(ctx, req)
	if err != nil {
		t.Fatalf("Load by a new process = %v, want the session", err)
	}
	if diff := sessiontest.Diff(got, s); diff != "" {
		t.Errorf("Load by a new process: %s", diff)
	}
}

// Back-channel logout ends sessions by sid or by sub; the others stay.
func TestRedisStoreEndSessions(t *testing.T) {
	url := sessiontest.RedisURL(t)
	tr := newTestRedis(t, url, "")
	clk := newClock()
	store := newRedisStore(t, tr, clk)
	mk := func(sid, sub string) (*session.Session, *http.Request) {
		s := sampleSession(clk.Now(), 10, 10, 10)
		s.SID, s.Subject = sid, sub
		return s, saveRedis(t, store, s)
	}
	_, a := mk("sid-1", "alice")
	_, a2 := mk("sid-1", "alice") // a second RP session of the same provider session
	_, b := mk("sid-2", "alice")
	_, c := mk("sid-3", "bob")
	alive := func(name string, r *http.Request, want bool) {
		t.Helper()
		_, err := store.Load(ctx, r)
		switch {
		case want && err != nil:
			t.Errorf("session %s: Load = %v, want it alive", name, err)
		case !want && !errors.Is(err, session.ErrNoSession):
			t.Errorf("session %s: Load = %v, want ErrNoSession", name, err)
		}
	}
	n, err := store.EndSessions(ctx, "sid-1", "", clk.Now())
	if err != nil || n != 2 {
		t.Fatalf("EndSessions(sid-1) = %d, %v, want 2 sessions ended", n, err)
	}
	alive("a", a, false)
	alive("a2", a2, false)
	alive("b", b, true)
	alive("c", c, true)
	if n, err := store.EndSessions(ctx, "", "alice", clk.Now()); err != nil || n != 1 {
		t.Fatalf("EndSessions(sub alice) = %d, %v, want 1 session ended", n, err)
	}
	alive("b", b, false)
	alive("c", c, true)
	// A later sign-in of alice works.
	_, d := mk("sid-4", "alice")
	alive("d", d, true)
	if _, err := store.EndSessions(ctx, "", "", clk.Now()); err == nil {
		t.Errorf("EndSessions without sid or sub = nil error, want an error")
	}
}

// A refresh that finishes after the session was ended cannot bring it back.
func TestRedisStoreSaveDoesNotResurrect(t *testing.T) {
	url := sessiontest.RedisURL(t)
	tr := newTestRedis(t, url, "")
	clk := newClock()
	store := newRedisStore(t, tr, clk)
	s := sampleSession(clk.Now(), 10, 10, 10)
	req := saveRedis(t, store, s)
	if _, err := store.EndSessions(ctx, s.SID, "", clk.Now()); err != nil {
		t.Fatal(err)
	}
	refreshed := *s
	refreshed.AccessToken = "new-access"
	if _, err := store.Save(ctx, req, &refreshed); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("Save of an ended session = %v, want ErrNoSession", err)
	}
	if _, err := store.Load(ctx, req); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("Load after Save of an ended session = %v, want ErrNoSession", err)
	}
}

// Logout deletes the session from Redis and from the indexes.
func TestRedisStoreDeleteRemovesEverything(t *testing.T) {
	url := sessiontest.RedisURL(t)
	tr := newTestRedis(t, url, "")
	clk := newClock()
	store := newRedisStore(t, tr, clk)
	s := sampleSession(clk.Now(), 10, 10, 10)
	req := saveRedis(t, store, s)
	del, err := store.Delete(ctx, req, s)
	if err != nil {
		t.Fatalf("Delete = %v", err)
	}
	sessiontest.CheckSetCookies(t, del)
	if len(del) != 1 || del[0].Name != store.Names().Session || del[0].MaxAge >= 0 {
		t.Errorf("Delete returned %d cookies, want the deletion of %s", len(del), store.Names().Session)
	}
	for _, k := range redisKeys(t, tr) {
		if strings.HasPrefix(k, tr.prefix+"session:") {
			t.Errorf("Redis still holds %s after Delete", k)
		}
		if strings.HasPrefix(k, tr.prefix+"sid:") || strings.HasPrefix(k, tr.prefix+"sub:") {
			if n := tr.client.ZCard(ctx, k).Val(); n != 0 {
				t.Errorf("index %s still has %d members after Delete", k, n)
			}
		}
	}
	// Delete without a loaded session (nil) deletes what the cookie names.
	req = saveRedis(t, store, sampleSession(clk.Now(), 10, 10, 10))
	if _, err := store.Delete(ctx, req, nil); err != nil {
		t.Fatalf("Delete(nil) = %v", err)
	}
	if _, err := store.Load(ctx, req); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("Load after Delete(nil) = %v, want ErrNoSession", err)
	}
}

// Redis down: Load, Save and Delete fail with ErrStoreUnavailable within the operation
// timeout (Delete still clears the cookie, and does not delete the session); when Redis
// is back, the store works again by itself.
func TestRedisStoreOutage(t *testing.T) {
	srv := sessiontest.StartRedis(t)
	tr := newTestRedis(t, srv.URL, "")
	clk := newClock()
	key := newKey(t)
	store := newRedisStore(t, tr, clk, key)
	s := sampleSession(clk.Now(), 10, 10, 10)
	req := saveRedis(t, store, s)
	if _, err := store.Load(ctx, req); err != nil {
		t.Fatalf("Load before the outage = %v", err)
	}
	srv.Stop(t)

	start := time.Now()
	_, err := store.Load(ctx, req)
	took := time.Since(start)
	if !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("Load while Redis is down = %v, want ErrStoreUnavailable", err)
	}
	t.Logf("Load while Redis is down failed in %v", took)
	if took > 5*time.Second {
		t.Errorf("Load while Redis is down took %v: it must not hang", took)
	}
	if _, err := store.Save(ctx, requestWith("/auth/callback"), sampleSession(clk.Now(), 1, 1, 1)); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Errorf("Save while Redis is down = %v, want ErrStoreUnavailable", err)
	}
	del, err := store.Delete(ctx, req, s)
	if !errors.Is(err, session.ErrStoreUnavailable) || len(del) != 1 || del[0].MaxAge >= 0 {
		t.Errorf("Delete while Redis is down = %d cookies, %v; want the cookie's deletion and ErrStoreUnavailable", len(del), err)
	}
	for _, op := range []string{"load", "save", "delete"} {
		if tr.failures(op) == 0 {
			t.Errorf("OnError(%q) not called for the failed %s", op, op)
		}
	}

	srv.Start(t)
	// Redis is back (with its data): the same session loads again, without a restart of
	// the store.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = store.Load(ctx, req)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Load after Redis returned = %v, want the session", err)
	}
	req = saveRedis(t, store, sampleSession(clk.Now(), 10, 10, 10))
	if _, err := store.Load(ctx, req); err != nil {
		t.Errorf("Load of a new session after Redis returned = %v", err)
	}
}

func TestNewRedisStoreRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		r    *session.Redis
		opts session.RedisStoreOptions
	}{
		{"no redis", nil, session.RedisStoreOptions{Keys: []session.KeyPair{newKey(t)}}},
		{"no keys", &session.Redis{}, session.RedisStoreOptions{}},
		{"bad prefix", &session.Redis{}, session.RedisStoreOptions{Keys: []session.KeyPair{newKey(t)}, Prefix: "a b"}},
		{"negative idle", &session.Redis{}, session.RedisStoreOptions{Keys: []session.KeyPair{newKey(t)}, IdleTimeout: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := session.NewRedisStore(tc.r, tc.opts); err == nil {
				t.Errorf("NewRedisStore(%s) = nil error, want an error", tc.name)
			}
		})
	}
}

// BenchmarkRedisStoreLoad is the cost of reading a session on every request: opening the
// cookie, one round trip to a local Redis, opening the sealed session.
func BenchmarkRedisStoreLoad(b *testing.B) {
	url := sessiontest.RedisURL(b)
	tr := newTestRedis(b, url, "")
	clk := newClock()
	store := newRedisStore(b, tr, clk)
	s := sampleSession(clk.Now(), 1200, 1000, 100)
	req := saveRedis(b, store, s)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := store.Load(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisStoreLoadParallel is the same under concurrent requests.
func BenchmarkRedisStoreLoadParallel(b *testing.B) {
	url := sessiontest.RedisURL(b)
	tr := newTestRedis(b, url, "")
	clk := newClock()
	store := newRedisStore(b, tr, clk)
	req := saveRedis(b, store, sampleSession(clk.Now(), 1200, 1000, 100))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := store.Load(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// logBuffer collects log output written from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A Redis that accepts connections and never answers (a hung server, a black hole): the
// store gives up within its operation timeout instead of holding the request.
func TestRedisStoreHungRedis(t *testing.T) {
	url := sessiontest.RedisURL(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c) // read everything, answer nothing
			}()
		}
	}()
	clk := newClock()
	key := newKey(t)
	// A cookie of a session that a working Redis has, under the same key ring.
	req := saveRedis(t, newRedisStore(t, newTestRedis(t, url, ""), clk, key), sampleSession(clk.Now(), 10, 10, 10))
	hung := newRedisStore(t, newTestRedis(t, "redis://"+ln.Addr().String(), "test:"), clk, key)
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"Load", func() error { _, err := hung.Load(ctx, req); return err }},
		{"Save", func() error { _, err := hung.Save(ctx, req, sampleSession(clk.Now(), 1, 1, 1)); return err }},
	} {
		start := time.Now()
		err := op.do()
		took := time.Since(start)
		t.Logf("%s against a hung Redis failed in %v", op.name, took)
		if !errors.Is(err, session.ErrStoreUnavailable) {
			t.Errorf("%s against a hung Redis = %v, want ErrStoreUnavailable", op.name, err)
		}
		if took > 3*session.DefaultRedisTimeout {
			t.Errorf("%s against a hung Redis took %v: it must give up within the operation timeout (%v)", op.name, took, session.DefaultRedisTimeout)
		}
	}
}
