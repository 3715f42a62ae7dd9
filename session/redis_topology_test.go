package session_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/redisclient"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/session/sessiontest"
)

// Every Redis deployment the URL can name serves the store, the shared refresh and the
// deny list: a Cluster (where a multi-key script over keys of different hash slots
// would fail with CROSSSLOT, and pub/sub crosses nodes) and Sentinel.
func TestRedisTopologies(t *testing.T) {
	topologies := []struct {
		name  string
		start func(t *testing.T) string
		mode  redisclient.Mode
	}{
		{"cluster", func(t *testing.T) string { return sessiontest.StartRedisCluster(t, 3) }, redisclient.Cluster},
		{"sentinel", func(t *testing.T) string { return sessiontest.StartRedisSentinel(t) }, redisclient.Sentinel},
	}
	for _, top := range topologies {
		t.Run(top.name, func(t *testing.T) {
			url := top.start(t)
			if _, mode, err := redisclient.Parse(redisclient.Options{URL: url}); err != nil || mode != top.mode {
				t.Fatalf("Parse(%s) = %s, %v, want %s", url, mode, err, top.mode)
			}
			t.Run("store", func(t *testing.T) {
				sessiontest.RunStore(t, func(t *testing.T) sessiontest.Harness {
					clk := newClock()
					tr := newTestRedis(t, url, "test:"+session.NewID()[:8]+":")
					return sessiontest.Harness{
						Store:       newRedisStore(t, tr, clk),
						Foreign:     newRedisStore(t, tr, clk),
						ServerSide:  true,
						Origin:      origin,
						RefreshPath: "/api/items",
						OtherPath:   "/auth/session",
						Now:         clk.Now,
						Advance:     clk.Advance,
					}
				})
			})
			t.Run("end sessions", func(t *testing.T) {
				clk := newClock()
				store := newRedisStore(t, newTestRedis(t, url, "test:es:"), clk)
				var reqs []*http.Request
				for range 5 { // spread over the slots
					reqs = append(reqs, saveRedis(t, store, sampleSession(clk.Now(), 10, 10, 10)))
				}
				if n, err := store.EndSessions(ctx, "idp-sid-1", "", clk.Now()); err != nil || n != len(reqs) {
					t.Fatalf("EndSessions = %d, %v, want %d", n, err, len(reqs))
				}
				for i, r := range reqs {
					if _, err := store.Load(ctx, r); err == nil {
						t.Errorf("session %d still loads after EndSessions", i)
					}
				}
			})
			t.Run("shared refresh", func(t *testing.T) {
				prefix := "test:sr:"
				a, _ := replica(t, url, prefix, 0, 0)
				b, _ := replica(t, url, prefix, 0, 0)
				p := newProvider()
				p.release = make(chan struct{})
				var wg sync.WaitGroup
				errs := make([]error, 20)
				for i := range errs {
					c := a
					if i%2 == 1 {
						c = b
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, errs[i] = c.Refresh(context.Background(), "rt-topology", p.fn)
					}()
				}
				<-p.called
				time.Sleep(100 * time.Millisecond)
				close(p.release)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Errorf("Refresh #%d = %v", i, err)
					}
				}
				if n := p.calls.Load(); n != 1 {
					t.Errorf("provider calls = %d, want 1", n)
				}
			})
			t.Run("deny list", func(t *testing.T) {
				clk := newClock()
				a := newDenyList(t, newTestRedis(t, url, "test:dl:"), clk)
				b := newDenyList(t, newTestRedis(t, url, "test:dl:"), clk)
				s := sampleSession(clk.Now(), 10, 10, 10)
				if _, err := a.EndSessions(ctx, s.SID, "", clk.Now()); err != nil {
					t.Fatal(err)
				}
				eventually(t, "the other replica ends the session", func() bool { return b.Ended(s) })
			})
		})
	}
}
