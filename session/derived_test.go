package session_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/session/sessiontest"
)

// deriver counts its calls and answers token-N, valid for an hour.
type deriver struct {
	calls   atomic.Int64
	release chan struct{} // nil: answer at once
	started chan struct{} // closed by the first call when set
	err     error
}

func (d *deriver) fn(context.Context) (*session.DerivedToken, error) {
	n := d.calls.Add(1)
	if n == 1 && d.started != nil {
		close(d.started)
	}
	if d.release != nil {
		<-d.release
	}
	if d.err != nil {
		return nil, d.err
	}
	now := time.Now()
	return &session.DerivedToken{Token: "derived-" + string(rune('0'+n)) + strings.Repeat("x", 40), Issued: now, Expiry: now.Add(time.Hour)}, nil
}

func TestDerivedOneFlightAndCache(t *testing.T) {
	c := session.NewCoordinator(session.CoordinatorOptions{})
	p := &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}}
	d := &deriver{release: make(chan struct{}), started: make(chan struct{})}
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	headers := make([]string, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, _, err := c.Derived(ctx, "at-1", p, 30*time.Second, exp, d.fn)
			if err != nil {
				t.Errorf("Derived = %v", err)
			}
			headers[i] = h
		}()
	}
	<-d.started // the flight runs; callers that arrive later join it or hit the cache
	close(d.release)
	wg.Wait()
	if n := d.calls.Load(); n != 1 {
		t.Errorf("50 concurrent Derived made %d derivations, want 1", n)
	}
	for _, h := range headers {
		if h != headers[0] || !strings.HasPrefix(h, "Bearer derived-1") {
			t.Fatalf("headers differ: %q vs %q", h, headers[0])
		}
	}
	if _, hit, _ := c.Derived(ctx, "at-1", p, 30*time.Second, exp, d.fn); !hit || d.calls.Load() != 1 {
		t.Errorf("a later Derived: hit %v, calls %d, want a cache hit", hit, d.calls.Load())
	}
	// Another access token (a refreshed session) or another policy: a new derivation.
	d2 := &deriver{}
	if _, hit, _ := c.Derived(ctx, "at-2", p, 30*time.Second, exp, d2.fn); hit || d2.calls.Load() != 1 {
		t.Errorf("new access token: hit %v, calls %d, want a derivation", hit, d2.calls.Load())
	}
	other := &session.TokenPolicy{Via: "exchange", Audience: []string{"billing"}}
	if _, hit, _ := c.Derived(ctx, "at-1", other, 30*time.Second, exp, d2.fn); hit || d2.calls.Load() != 2 {
		t.Errorf("another policy: hit %v, want a derivation", hit)
	}
	// Dropped (upstream 401, logout): derived again.
	c.DropDerived(ctx, "at-1", p)
	if _, hit, _ := c.Derived(ctx, "at-1", p, 30*time.Second, exp, d2.fn); hit {
		t.Errorf("after DropDerived: a cache hit, want a derivation")
	}
	c.DropDerived(ctx, "at-1", nil)
	if _, hit, _ := c.Derived(ctx, "at-1", other, 30*time.Second, exp, d2.fn); hit {
		t.Errorf("after DropDerived(all): a cache hit, want a derivation")
	}
	// Errors reach the caller and are not remembered.
	bad := &deriver{err: session.ErrTokenUnavailable}
	if _, _, err := c.Derived(ctx, "at-3", p, 0, exp, bad.fn); !errors.Is(err, session.ErrTokenUnavailable) {
		t.Errorf("Derived(failing) = %v, want ErrTokenUnavailable", err)
	}
	if _, _, err := c.Derived(ctx, "at-3", p, 0, exp, d2.fn); err != nil {
		t.Errorf("Derived after a failure = %v, want a new derivation", err)
	}
}

func TestDerivedExpiresBeforeTheToken(t *testing.T) {
	clk := newClock()
	c := session.NewCoordinator(session.CoordinatorOptions{Now: clk.Now})
	p := &session.TokenPolicy{Via: "exchange"}
	var calls int
	fn := func(context.Context) (*session.DerivedToken, error) {
		calls++
		return &session.DerivedToken{Token: "t", Issued: clk.Now(), Expiry: clk.Now().Add(10 * time.Minute)}, nil
	}
	ctx := context.Background()
	c.Derived(ctx, "at", p, 30*time.Second, time.Time{}, fn)
	clk.Advance(10*time.Minute - 31*time.Second)
	c.Derived(ctx, "at", p, 30*time.Second, time.Time{}, fn)
	if calls != 1 {
		t.Fatalf("before expiry less skew: %d derivations, want 1", calls)
	}
	clk.Advance(time.Second)
	c.Derived(ctx, "at", p, 30*time.Second, time.Time{}, fn)
	if calls != 2 {
		t.Errorf("at expiry less skew: %d derivations, want 2", calls)
	}
}

// With Redis, a derived token is shared by the replicas, sealed: the second replica does
// not derive, Redis holds no token in the clear, and a drop removes the shared entry.
func TestDerivedSharedAcrossReplicas(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	a, tr := replica(t, url, prefix, 0, 0)
	b, _ := replica(t, url, prefix, 0, 0)
	p := &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}}
	d := &deriver{}
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	ha, _, err := a.Derived(ctx, "at-shared", p, 30*time.Second, exp, d.fn)
	if err != nil {
		t.Fatal(err)
	}
	hb, _, err := b.Derived(ctx, "at-shared", p, 30*time.Second, exp, d.fn)
	if err != nil || hb != ha || d.calls.Load() != 1 {
		t.Fatalf("replica b: %q, %v, %d derivations; want a's token and 1 derivation", hb, err, d.calls.Load())
	}
	keys, _ := tr.client.Keys(ctx, prefix+"*").Result()
	found := false
	for _, k := range keys {
		v, _ := tr.client.Get(ctx, k).Result()
		if strings.Contains(v, "derived-") || strings.Contains(k, "at-shared") {
			t.Errorf("Redis key %s holds the token or the access token in the clear", k)
		}
		found = found || strings.Contains(k, "derived:")
	}
	if !found {
		t.Errorf("no shared derived entry in Redis: %v", keys)
	}
	a.DropDerived(ctx, "at-shared", p)
	b.DropDerived(ctx, "at-shared", p)
	if _, hit, _ := b.Derived(ctx, "at-shared", p, 30*time.Second, exp, d.fn); hit || d.calls.Load() != 2 {
		t.Errorf("after a drop: %d derivations, want 2", d.calls.Load())
	}
}

// A via refresh derivation's tokens are marked For its policy, and the mark survives the
// rotation grace entry: a late caller with the old refresh token learns that the access
// token is a route's, not the session's (oauthagent then spends the rotated one again).
func TestGraceEntryKeepsFor(t *testing.T) {
	c := session.NewCoordinator(session.CoordinatorOptions{})
	ctx := context.Background()
	first, err := c.Refresh(ctx, "rt-0", func(context.Context) (*session.Tokens, error) {
		return &session.Tokens{AccessToken: "route-at", RefreshToken: "rt-1", For: "policy-key"}, nil
	})
	if err != nil || first.For != "policy-key" {
		t.Fatalf("Refresh = %+v, %v", first, err)
	}
	late, err := c.Refresh(ctx, "rt-0", func(context.Context) (*session.Tokens, error) {
		t.Error("the grace entry should have answered")
		return nil, session.ErrIdPUnavailable
	})
	if err != nil || late.For != "policy-key" || late.AccessToken != "route-at" || late.RefreshToken != "rt-1" {
		t.Errorf("from the grace entry = %+v, %v, want the route's tokens marked For policy-key", late, err)
	}
	plain, _ := c.Refresh(ctx, "rt-1", func(context.Context) (*session.Tokens, error) {
		return &session.Tokens{AccessToken: "session-at", RefreshToken: "rt-2"}, nil
	})
	if again, _ := c.Refresh(ctx, "rt-1", nil); again == nil || again.For != "" || plain.For != "" {
		t.Errorf("a session refresh's grace entry = %+v, want no For", again)
	}
}

// Three replicas asked at once for one (session, policy) derive once between them: the
// others wait on the Redis lock and read the holder's entry.
func TestDerivedOneDerivationAcrossReplicas(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	replicas := make([]*session.Coordinator, 3)
	for i := range replicas {
		replicas[i], _ = replica(t, url, prefix, 0, 0)
	}
	p := &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}}
	d := &deriver{release: make(chan struct{}), started: make(chan struct{})}
	exp := time.Now().Add(time.Hour)
	const callers = 30
	var wg sync.WaitGroup
	headers := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			headers[i], _, errs[i] = replicas[i%3].Derived(context.Background(), "at-once", p, 30*time.Second, exp, d.fn)
		}()
	}
	<-d.started
	time.Sleep(100 * time.Millisecond) // let the other replicas' flights start waiting
	close(d.release)
	wg.Wait()
	if n := d.calls.Load(); n != 1 {
		t.Errorf("%d concurrent requests over 3 replicas made %d derivations, want 1", callers, n)
	}
	for i := range callers {
		if errs[i] != nil || headers[i] != headers[0] || !strings.HasPrefix(headers[0], "Bearer derived-1") {
			t.Errorf("caller %d: %q, %v; want %q", i, headers[i], errs[i], headers[0])
		}
	}
}

// A replica waiting on another's derivation gets that derivation's error class without
// deriving itself: a policy the provider refuses is refused once, not once per replica.
func TestDerivedWaiterGetsTheHoldersError(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	a, _ := replica(t, url, prefix, 0, 0)
	b, _ := replica(t, url, prefix, 0, 0)
	p := &session.TokenPolicy{Via: "exchange", Audience: []string{"nope"}}
	d := &deriver{release: make(chan struct{}), started: make(chan struct{}), err: fmt.Errorf("provider said invalid_target: %w", session.ErrTokenUnavailable)}
	exp := time.Now().Add(time.Hour)
	errA := make(chan error, 1)
	go func() {
		_, _, err := a.Derived(context.Background(), "at-refused", p, 30*time.Second, exp, d.fn)
		errA <- err
	}()
	<-d.started
	errB := make(chan error, 1)
	go func() {
		_, _, err := b.Derived(context.Background(), "at-refused", p, 30*time.Second, exp, d.fn)
		errB <- err
	}()
	time.Sleep(100 * time.Millisecond) // let b's flight start waiting
	close(d.release)
	if err := <-errA; !errors.Is(err, session.ErrTokenUnavailable) {
		t.Errorf("holder: %v, want ErrTokenUnavailable", err)
	}
	if err := <-errB; !errors.Is(err, session.ErrTokenUnavailable) {
		t.Errorf("waiter: %v, want ErrTokenUnavailable", err)
	}
	if n := d.calls.Load(); n != 1 {
		t.Errorf("%d derivations, want 1 (the waiter must not ask the provider again)", n)
	}
}

// Redis down: a derivation spends nothing, so the replica derives on its own rather than
// failing the request.
func TestDerivedWithoutRedisDerivesHere(t *testing.T) {
	srv := sessiontest.StartRedis(t)
	prefix := sessiontest.KeyPrefix(t, srv.URL)
	c, _ := replica(t, srv.URL, prefix, 0, 0)
	srv.Stop(t)
	d := &deriver{}
	p := &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}}
	h, _, err := c.Derived(context.Background(), "at-down", p, 30*time.Second, time.Now().Add(time.Hour), d.fn)
	if err != nil || !strings.HasPrefix(h, "Bearer derived-1") || d.calls.Load() != 1 {
		t.Errorf("Derived with Redis down = %q, %v (%d derivations); want the token of one derivation here", h, err, d.calls.Load())
	}
}
