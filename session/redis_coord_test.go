package session_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/session/sessiontest"
)

// provider is a fake token endpoint shared by the replicas of a test: it counts calls,
// can hold them until released, and hands out numbered tokens.
type provider struct {
	calls   atomic.Int32
	called  chan struct{} // closed at the first call
	once    sync.Once
	release chan struct{} // nil: answer at once
	delay   time.Duration
	err     error
	during  func() // run inside the call, if set
}

func newProvider() *provider { return &provider{called: make(chan struct{})} }

func (p *provider) fn(ctx context.Context) (*session.Tokens, error) {
	n := p.calls.Add(1)
	p.once.Do(func() { close(p.called) })
	if p.during != nil {
		p.during()
	}
	if p.release != nil {
		<-p.release
	}
	if p.delay > 0 {
		time.Sleep(p.delay)
	}
	if p.err != nil {
		return nil, p.err
	}
	now := time.Now()
	return &session.Tokens{
		AccessToken:  fmt.Sprintf("at-%d", n),
		AccessIssued: now,
		AccessExpiry: now.Add(5 * time.Minute),
		RefreshToken: fmt.Sprintf("rt-%d", n),
	}, nil
}

// replica is one tokenhandler process's Coordinator over the shared Redis.
func replica(t testing.TB, url, prefix string, lease, grace time.Duration) (*session.Coordinator, *testRedis) {
	t.Helper()
	tr := newTestRedis(t, url, prefix)
	return session.NewCoordinator(session.CoordinatorOptions{
		Redis:  tr.r,
		Lease:  lease,
		Grace:  grace,
		Logger: slog.New(slog.NewTextHandler(tr.logs, nil)),
	}), tr
}

func flightKeyOf(rt string) string {
	h := sha256.Sum256([]byte(rt))
	return hex.EncodeToString(h[:])
}

// 100 concurrent refreshes of one refresh token, alternating between two replicas, make
// exactly one provider call, and every caller gets its tokens.
func TestSharedRefreshOneCallAcrossReplicas(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	a, _ := replica(t, url, prefix, 0, 0)
	b, _ := replica(t, url, prefix, 0, 0)
	p := newProvider()
	p.release = make(chan struct{})
	const callers = 100
	var wg sync.WaitGroup
	results := make([]*session.Tokens, callers)
	errs := make([]error, callers)
	for i := range callers {
		c := a
		if i%2 == 1 {
			c = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = c.Refresh(context.Background(), "rt-0", p.fn)
		}()
	}
	<-p.called
	time.Sleep(100 * time.Millisecond) // let the other replica's flight start waiting
	close(p.release)
	wg.Wait()
	if n := p.calls.Load(); n != 1 {
		t.Errorf("%d concurrent refreshes over two replicas made %d provider calls, want 1", callers, n)
	}
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("Refresh #%d = %v", i, errs[i])
		}
		if results[i].AccessToken != "at-1" || results[i].RefreshToken != "rt-1" {
			t.Errorf("Refresh #%d = %s/%s, want at-1/rt-1", i, results[i].AccessToken, results[i].RefreshToken)
		}
	}
}

// A provider slower than the lease: the holder renews it, so the other replica never
// gets the lock; it is woken by the notification and gets the holder's tokens.
func TestSharedRefreshLeaseRenewal(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	const lease = 300 * time.Millisecond
	a, tra := replica(t, url, prefix, lease, 0)
	b, _ := replica(t, url, prefix, lease, 0)
	p := newProvider()
	p.delay = 4 * lease
	done := make(chan *session.Tokens, 1)
	go func() {
		got, err := a.Refresh(context.Background(), "rt-0", p.fn)
		if err != nil {
			t.Errorf("Refresh at the holder = %v", err)
		}
		done <- got
	}()
	<-p.called
	time.Sleep(lease / 2)
	got, err := b.Refresh(context.Background(), "rt-0", p.fn)
	if err != nil {
		t.Fatalf("Refresh at the waiting replica = %v", err)
	}
	held := <-done
	if n := p.calls.Load(); n != 1 {
		t.Errorf("a provider %v slow with a %v lease: %d calls, want 1", p.delay, lease, n)
	}
	if held == nil || got.AccessToken != held.AccessToken || got.RefreshToken != held.RefreshToken {
		t.Errorf("the waiting replica got other tokens than the holder")
	}
	if strings.Contains(tra.logs.String(), "lapsed") {
		t.Errorf("the holder's lease lapsed: %s", tra.logs.String())
	}
}

// A replica that receives the old refresh token after another one spent it gets the
// tokens from the shared grace entry, until the grace period ends.
func TestSharedRefreshGraceAcrossReplicas(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	const grace = 500 * time.Millisecond
	a, _ := replica(t, url, prefix, 0, grace)
	b, _ := replica(t, url, prefix, 0, grace)
	p := newProvider()
	first, err := a.Refresh(context.Background(), "rt-0", p.fn)
	if err != nil {
		t.Fatal(err)
	}
	late, err := b.Refresh(context.Background(), "rt-0", p.fn)
	if err != nil || late.AccessToken != first.AccessToken || p.calls.Load() != 1 {
		t.Fatalf("Refresh(old token) at the other replica = %v after %d calls, want the first refresh's tokens without a call", err, p.calls.Load())
	}
	time.Sleep(grace + 100*time.Millisecond)
	c, _ := replica(t, url, prefix, 0, grace) // no in-process entry either
	if _, err := c.Refresh(context.Background(), "rt-0", p.fn); err != nil || p.calls.Load() != 2 {
		t.Errorf("Refresh(old token) after the grace period = %v after %d calls, want a new call", err, p.calls.Load())
	}
}

// The holder's failure reaches the waiting replica, which does not call the provider.
func TestSharedRefreshFailureReachesOtherReplica(t *testing.T) {
	url := sessiontest.RedisURL(t)
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"denied", fmt.Errorf("oauthagent: refresh: %w", session.ErrRefreshDenied)},
		{"idp unavailable", fmt.Errorf("oauthagent: refresh: %w", session.ErrIdPUnavailable)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := sessiontest.KeyPrefix(t, url)
			a, _ := replica(t, url, prefix, 0, 0)
			b, _ := replica(t, url, prefix, 0, 0)
			p := newProvider()
			p.release = make(chan struct{})
			p.err = tc.err
			errc := make(chan error, 1)
			go func() {
				_, err := a.Refresh(context.Background(), "rt-0", p.fn)
				errc <- err
			}()
			<-p.called
			go func() {
				time.Sleep(200 * time.Millisecond)
				close(p.release)
			}()
			start := time.Now()
			_, err := b.Refresh(context.Background(), "rt-0", p.fn)
			if !errors.Is(err, errors.Unwrap(tc.err)) {
				t.Errorf("Refresh at the waiting replica = %v, want %v", err, errors.Unwrap(tc.err))
			}
			if took := time.Since(start); took > session.DefaultLease {
				t.Errorf("the waiting replica learnt the outcome after %v, want the notification (not the lease's lapse)", took)
			}
			if aerr := <-errc; !errors.Is(aerr, errors.Unwrap(tc.err)) {
				t.Errorf("Refresh at the holder = %v, want %v", aerr, errors.Unwrap(tc.err))
			}
			if n := p.calls.Load(); n != 1 {
				t.Errorf("provider calls = %d, want 1", n)
			}
		})
	}
}

// A lock whose holder died lapses with its lease; the waiter then refreshes. A holder
// whose lock was taken over does not delete the new owner's lock.
func TestSharedRefreshDeadHolderAndForeignLock(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	const lease = 300 * time.Millisecond
	b, trb := replica(t, url, prefix, lease, 0)
	lock := prefix + "refresh:{" + flightKeyOf("rt-0") + "}:lock"
	if err := trb.client.Set(ctx, lock, "a-replica-that-died", lease).Err(); err != nil {
		t.Fatal(err)
	}
	p := newProvider()
	p.during = func() {
		// Meanwhile, someone else owns the lock (as after a lapsed lease).
		trb.client.Set(ctx, lock, "someone-else", time.Minute)
	}
	start := time.Now()
	got, err := b.Refresh(context.Background(), "rt-0", p.fn)
	if err != nil || got.AccessToken != "at-1" {
		t.Fatalf("Refresh behind a dead holder's lock = %v, want a refresh", err)
	}
	if took := time.Since(start); took < lease/2 {
		t.Errorf("Refresh behind a held lock took %v, want it to wait for the lease (%v)", took, lease)
	}
	if v := trb.client.Get(ctx, lock).Val(); v != "someone-else" {
		t.Errorf("after the refresh the lock holds %q, want the other owner's lock left alone", v)
	}
}

// Redis down: no refresh token is spent (another replica, just as cut off, could spend
// it too); the refresh answers ErrStoreUnavailable with a warning, and coordination
// returns to Redis by itself.
func TestSharedRefreshWaitsForRedisAndRecovers(t *testing.T) {
	srv := sessiontest.StartRedis(t)
	prefix := sessiontest.KeyPrefix(t, srv.URL)
	c, tr := replica(t, srv.URL, prefix, 0, 0)
	p := newProvider()
	srv.Stop(t)
	if _, err := c.Refresh(context.Background(), "rt-0", p.fn); !errors.Is(err, session.ErrStoreUnavailable) {
		t.Fatalf("Refresh while Redis is down = %v, want ErrStoreUnavailable", err)
	}
	if n := p.calls.Load(); n != 0 {
		t.Errorf("the provider was called %d times while Redis was down, want 0", n)
	}
	if !strings.Contains(tr.logs.String(), "Redis unreachable") {
		t.Errorf("no warning logged while Redis is down; log:\n%s", tr.logs.String())
	}
	if tr.failures("lock") == 0 {
		t.Errorf("OnError(lock) not called while Redis is down")
	}
	srv.Start(t)
	time.Sleep(1100 * time.Millisecond) // past the back-off after a failure
	if _, err := c.Refresh(context.Background(), "rt-1", p.fn); err != nil {
		t.Fatalf("Refresh after Redis returned = %v", err)
	}
	grace := prefix + "refresh:{" + flightKeyOf("rt-1") + "}:grace"
	if n := tr.client.Exists(ctx, grace).Val(); n != 1 {
		t.Errorf("no shared grace entry after Redis returned: coordination did not go back to Redis")
	}
	if !strings.Contains(tr.logs.String(), "reachable again") {
		t.Errorf("no recovery logged; log:\n%s", tr.logs.String())
	}
}

// A replica that reads the shared grace entry late keeps it only until the entry's
// original deadline, not for a fresh full window.
func TestSharedGraceKeepsOriginalDeadline(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	a, tra := replica(t, url, prefix, 0, time.Minute)
	trb := newTestRedis(t, url, prefix)
	clk := newClock()
	b := session.NewCoordinator(session.CoordinatorOptions{
		Redis:  trb.r,
		Grace:  time.Minute,
		Now:    clk.Now,
		Logger: slog.New(slog.NewTextHandler(trb.logs, nil)),
	})
	p := newProvider()
	if _, err := a.Refresh(ctx, "rt-0", p.fn); err != nil {
		t.Fatalf("A: Refresh = %v", err)
	}
	// B reads the entry late: 10 s of its minute are left.
	graceKey := prefix + "refresh:{" + flightKeyOf("rt-0") + "}:grace"
	if err := tra.client.PExpire(ctx, graceKey, 10*time.Second).Err(); err != nil {
		t.Fatalf("PEXPIRE: %v", err)
	}
	if got, err := b.Refresh(ctx, "rt-0", p.fn); err != nil || got.AccessToken != "at-1" || p.calls.Load() != 1 {
		t.Fatalf("B: Refresh(spent token) = %v after %d calls, want the shared entry's tokens", err, p.calls.Load())
	}
	// The shared entry reaches its deadline (it is gone from Redis); B's own copy with it.
	if err := tra.client.Del(ctx, graceKey).Err(); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	clk.Advance(9 * time.Second)
	if got, err := b.Refresh(ctx, "rt-0", p.fn); err != nil || got.AccessToken != "at-1" || p.calls.Load() != 1 {
		t.Fatalf("B: Refresh(spent token) before the deadline = %v after %d calls, want its copy of the entry", err, p.calls.Load())
	}
	clk.Advance(2 * time.Second)
	if _, err := b.Refresh(ctx, "rt-0", p.fn); err != nil || p.calls.Load() != 2 {
		t.Errorf("B: Refresh(spent token) past the entry's original deadline = %v after %d calls, want a new provider call (the copy gone)", err, p.calls.Load())
	}
}

// Forget at one replica deletes the shared grace entry of the last rotation: another
// replica asked for the spent token calls the provider instead of handing out its tokens.
func TestSharedForgetDeletesGraceEntry(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	a, _ := replica(t, url, prefix, 0, time.Minute)
	b, _ := replica(t, url, prefix, 0, time.Minute)
	c, _ := replica(t, url, prefix, 0, time.Minute)
	p := newProvider()
	got, err := a.Refresh(ctx, "rt-0", p.fn)
	if err != nil {
		t.Fatalf("A: Refresh = %v", err)
	}
	if err := b.Forget(ctx, got.RefreshToken); err != nil {
		t.Fatalf("B: Forget = %v", err)
	}
	if _, err := c.Refresh(ctx, "rt-0", p.fn); err != nil || p.calls.Load() != 2 {
		t.Errorf("C: Refresh(spent token) after Forget = %v after %d calls, want a new provider call (the shared entry gone)", err, p.calls.Load())
	}
}

// Redis dies between the provider's answer and the holder's write of the grace entry (a
// master lost mid-refresh): the holder keeps trying, and once Redis is back the other
// replicas find the entry instead of spending the rotated-away refresh token again.
func TestSharedRefreshResultStoredWhenRedisReturns(t *testing.T) {
	srv := sessiontest.StartRedis(t)
	prefix := sessiontest.KeyPrefix(t, srv.URL)
	a, tra := replica(t, srv.URL, prefix, 0, 0)
	p := newProvider()
	p.during = func() { srv.Stop(t) } // the provider rotates; Redis is gone when it answers
	got, err := a.Refresh(context.Background(), "rt-0", p.fn)
	if err != nil || got.RefreshToken != "rt-1" {
		t.Fatalf("Refresh at the holder = %+v, %v; want its tokens", got, err)
	}
	srv.Start(t)
	grace := prefix + "refresh:{" + flightKeyOf("rt-0") + "}:grace"
	deadline := time.Now().Add(10 * time.Second)
	for tra.client.Exists(ctx, grace).Val() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the grace entry was not stored within 10 s of Redis coming back; log:\n%s", tra.logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling Redis, which has no event to wait on
	}
	b, _ := replica(t, srv.URL, prefix, 0, 0)
	late, err := b.Refresh(context.Background(), "rt-0", p.fn)
	if err != nil || late.RefreshToken != "rt-1" || late.AccessToken != got.AccessToken {
		t.Errorf("another replica with the old refresh token = %+v, %v; want the holder's tokens", late, err)
	}
	if n := p.calls.Load(); n != 1 {
		t.Errorf("%d provider calls, want 1: the spent refresh token was spent again", n)
	}
}
