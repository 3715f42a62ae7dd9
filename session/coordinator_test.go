package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestCoordinator(grace time.Duration) (*Coordinator, *fakeClock) {
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	return NewCoordinator(CoordinatorOptions{
		Grace:  grace,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:    clk.Now,
	}), clk
}

// refresher is a fake provider call: it counts calls, can hold them until released, and
// hands out numbered tokens.
type refresher struct {
	calls   atomic.Int32
	called  chan struct{} // closed at the first call, if set
	once    sync.Once
	release chan struct{} // nil: answer at once
	err     error
	ctxErr  chan error // receives ctx.Err() after release, if set
}

func (f *refresher) fn(ctx context.Context) (*Tokens, error) {
	n := f.calls.Add(1)
	if f.called != nil {
		f.once.Do(func() { close(f.called) })
	}
	if f.release != nil {
		<-f.release
	}
	if f.ctxErr != nil {
		f.ctxErr <- ctx.Err()
	}
	if f.err != nil {
		return nil, f.err
	}
	return &Tokens{
		AccessToken:  fmt.Sprintf("at-%d", n),
		AccessIssued: time.Unix(1000, 0),
		AccessExpiry: time.Unix(1300, 0),
		RefreshToken: fmt.Sprintf("rt-%d", n),
		IDToken:      fmt.Sprintf("id-%d", n),
	}, nil
}

func sameTokens(a, b *Tokens) bool {
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken && a.IDToken == b.IDToken &&
		a.AccessIssued.Equal(b.AccessIssued) && a.AccessExpiry.Equal(b.AccessExpiry)
}

func TestCoordinatorOneRefreshForManyCallers(t *testing.T) {
	c, _ := newTestCoordinator(0)
	f := &refresher{release: make(chan struct{})}
	const callers = 100
	var entered sync.WaitGroup
	entered.Add(callers)
	results := make([]*Tokens, callers)
	errs := make([]error, callers)
	var done sync.WaitGroup
	for i := range callers {
		done.Add(1)
		go func() {
			defer done.Done()
			entered.Done()
			results[i], errs[i] = c.Refresh(context.Background(), "rt-0", f.fn)
		}()
	}
	entered.Wait()
	close(f.release)
	done.Wait()
	if got := f.calls.Load(); got != 1 {
		t.Errorf("%d concurrent Refresh calls made %d provider calls, want 1", callers, got)
	}
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("Refresh() #%d = %v, want the tokens", i, errs[i])
		}
		if !sameTokens(results[i], results[0]) || results[i].AccessToken != "at-1" || results[i].RefreshToken != "rt-1" {
			t.Errorf("Refresh() #%d = tokens %s/%s, want at-1/rt-1 like every caller", i, results[i].AccessToken, results[i].RefreshToken)
		}
		if i > 0 && results[i] == results[0] {
			t.Errorf("Refresh() #%d shares its *Tokens with #0, want a copy per caller", i)
		}
	}
}

func TestCoordinatorCallerCancelDoesNotCancelRefresh(t *testing.T) {
	c, _ := newTestCoordinator(0)
	f := &refresher{called: make(chan struct{}), release: make(chan struct{}), ctxErr: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := c.Refresh(ctx, "rt-0", f.fn)
		errc <- err
	}()
	<-f.called // the flight reached the provider
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Refresh() after its caller cancelled = %v, want context.Canceled", err)
	}
	close(f.release)
	if err := <-f.ctxErr; err != nil {
		t.Errorf("the provider call's context ended with %v when its only caller left, want it to go on", err)
	}
	// The result lands in the grace entry: the old token now yields it without a call.
	got, err := c.Refresh(context.Background(), "rt-0", f.fn)
	if err != nil || got.AccessToken != "at-1" {
		t.Fatalf("Refresh(old token) after the detached flight = %v, want at-1", err)
	}
	keys, _ := deriveGraceKeys("rt-0")
	if sealed, _ := c.grace.get(context.Background(), keys.lookup); sealed == nil {
		t.Errorf("no grace entry after the detached flight, want one")
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("provider called %d times, want 1", n)
	}
}

func TestCoordinatorRefreshTimeout(t *testing.T) {
	c := NewCoordinator(CoordinatorOptions{Timeout: 3 * time.Second})
	var deadline time.Time
	var ok bool
	_, err := c.Refresh(context.Background(), "rt", func(ctx context.Context) (*Tokens, error) {
		deadline, ok = ctx.Deadline()
		return &Tokens{AccessToken: "at"}, nil
	})
	if err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	if left := time.Until(deadline); !ok || left > 3*time.Second || left < time.Second {
		t.Errorf("the provider call's deadline is %v away (set: %v), want within the 3s Timeout", left, ok)
	}
}

func TestCoordinatorGrace(t *testing.T) {
	const grace = 60 * time.Second
	c, clk := newTestCoordinator(grace)
	f := &refresher{}
	first, err := c.Refresh(context.Background(), "rt-0", f.fn)
	if err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	clk.Advance(grace - time.Nanosecond)
	again, err := c.Refresh(context.Background(), "rt-0", f.fn)
	if err != nil {
		t.Fatalf("Refresh(old token, within grace) = %v", err)
	}
	if !sameTokens(again, first) || f.calls.Load() != 1 {
		t.Errorf("Refresh(old token, within grace) = %s after %d calls, want %s without a call", again.AccessToken, f.calls.Load(), first.AccessToken)
	}
	// The rotated token is a new key: it refreshes.
	if next, err := c.Refresh(context.Background(), first.RefreshToken, f.fn); err != nil || next.AccessToken != "at-2" {
		t.Errorf("Refresh(rotated token) = %v, want a new refresh (at-2)", err)
	}
	clk.Advance(time.Nanosecond)
	late, err := c.Refresh(context.Background(), "rt-0", f.fn)
	if err != nil {
		t.Fatalf("Refresh(old token, after grace) = %v", err)
	}
	if late.AccessToken != "at-3" || f.calls.Load() != 3 {
		t.Errorf("Refresh(old token, after grace) = %s after %d calls, want a new call (at-3)", late.AccessToken, f.calls.Load())
	}
}

func TestCoordinatorFailureReachesJoinersAndIsNotCached(t *testing.T) {
	c, _ := newTestCoordinator(0)
	denied := fmt.Errorf("oauthagent: refresh: %w", ErrRefreshDenied)
	f := &refresher{called: make(chan struct{}), release: make(chan struct{}), err: denied}
	const callers = 10
	var entered, done sync.WaitGroup
	entered.Add(callers)
	errs := make([]error, callers)
	for i := range callers {
		done.Add(1)
		go func() {
			defer done.Done()
			entered.Done()
			_, errs[i] = c.Refresh(context.Background(), "rt-0", f.fn)
		}()
	}
	entered.Wait()
	<-f.called
	close(f.release)
	done.Wait()
	calls := f.calls.Load()
	for i, err := range errs {
		if !errors.Is(err, ErrRefreshDenied) {
			t.Errorf("Refresh() #%d = %v, want the provider's ErrRefreshDenied", i, err)
		}
	}
	f.err = nil
	f.release = nil
	got, err := c.Refresh(context.Background(), "rt-0", f.fn)
	if err != nil || f.calls.Load() != calls+1 {
		t.Errorf("Refresh() after a failure = %v after %d calls, want a new call that succeeds", err, f.calls.Load())
	}
	if got != nil && got.AccessToken == "" {
		t.Errorf("Refresh() after a failure returned no access token")
	}
}

func TestCoordinatorBadAnswers(t *testing.T) {
	c, _ := newTestCoordinator(0)
	tests := []struct {
		name    string
		rt      string
		fn      func(context.Context) (*Tokens, error)
		wantErr error
	}{
		{"no refresh token", "", func(context.Context) (*Tokens, error) { t.Error("fn called without a refresh token"); return nil, nil }, ErrNoSession},
		{"nil tokens", "rt-a", func(context.Context) (*Tokens, error) { return nil, nil }, ErrIdPUnavailable},
		{"no access token", "rt-b", func(context.Context) (*Tokens, error) { return &Tokens{RefreshToken: "x"}, nil }, ErrIdPUnavailable},
		{"panic", "rt-c", func(context.Context) (*Tokens, error) { panic("boom") }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Refresh(context.Background(), tc.rt, tc.fn)
			if err == nil || got != nil {
				t.Fatalf("Refresh(%s) = (tokens: %v), %v, want an error", tc.name, got != nil, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Refresh(%s) = %v, want %v", tc.name, err, tc.wantErr)
			}
		})
	}
	t.Run("no rotated refresh token keeps the old one", func(t *testing.T) {
		got, err := c.Refresh(context.Background(), "rt-keep", func(context.Context) (*Tokens, error) { return &Tokens{AccessToken: "at"}, nil })
		if err != nil || got.RefreshToken != "rt-keep" {
			t.Errorf("Refresh() without a rotated token = %v, refresh token kept: %v; want the old refresh token", err, got != nil && got.RefreshToken == "rt-keep")
		}
	})
}

func TestGraceEntrySealing(t *testing.T) {
	tokens := &Tokens{AccessToken: "access-secret", RefreshToken: "refresh-new-secret", IDToken: "id-secret", AccessExpiry: time.Unix(2000, 0)}
	keys, err := deriveGraceKeys("refresh-old-secret")
	if err != nil {
		t.Fatalf("deriveGraceKeys() = %v", err)
	}
	sum := sha256.Sum256([]byte("refresh-old-secret"))
	if keys.lookup == hex.EncodeToString(sum[:]) || keys.lookup == hex.EncodeToString(keys.seal) || len(keys.seal) != 32 {
		t.Errorf("grace lookup key equals the flight key or the sealing key, want separate derivations")
	}
	sealed := sealTokens(keys, tokens)
	for _, secret := range []string{"access-secret", "refresh-new-secret", "id-secret", "refresh-old-secret"} {
		if bytes.Contains(sealed, []byte(secret)) {
			t.Errorf("sealed grace entry contains %s in the clear", secret)
		}
	}
	got, err := openTokens(keys, sealed)
	if err != nil || !sameTokens(got, tokens) {
		t.Fatalf("openTokens(sealTokens()) = %v, want the tokens back", err)
	}
	other, _ := deriveGraceKeys("another-token")
	if _, err := openTokens(other, sealed); err == nil {
		t.Errorf("openTokens(keys of another token) = nil error, want an error")
	}
	moved := keys
	moved.lookup = other.lookup // same sealing key, other storage key: refused (additional data)
	if _, err := openTokens(moved, sealed); err == nil {
		t.Errorf("openTokens(entry moved to another key) = nil error, want an error")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for _, bad := range [][]byte{tampered, sealed[:5], nil} {
		if _, err := openTokens(keys, bad); err == nil {
			t.Errorf("openTokens(%d damaged bytes) = nil error, want an error", len(bad))
		}
	}
}

// A grace entry that does not open counts as none: the flight refreshes.
func TestCoordinatorIgnoresDamagedGraceEntry(t *testing.T) {
	c, _ := newTestCoordinator(0)
	keys, _ := deriveGraceKeys("rt-0")
	_ = c.grace.put(context.Background(), keys.lookup, []byte("not a sealed entry"), time.Minute)
	f := &refresher{}
	if got, err := c.Refresh(context.Background(), "rt-0", f.fn); err != nil || got.AccessToken != "at-1" || f.calls.Load() != 1 {
		t.Errorf("Refresh() over a damaged grace entry = %v after %d calls, want a refresh", err, f.calls.Load())
	}
}

func TestMemGraceExpiresAndStaysBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	g := newMemGrace(clk.Now)
	ctx := context.Background()
	for i := range 100 {
		_ = g.put(ctx, fmt.Sprint("k", i), []byte("v"), time.Minute)
	}
	if v, _ := g.get(ctx, "k1"); string(v) != "v" {
		t.Fatalf("get(k1) = %q, want v", v)
	}
	clk.Advance(time.Minute)
	if v, _ := g.get(ctx, "k2"); v != nil {
		t.Errorf("get(k2) after its TTL = %q, want nothing", v)
	}
	_ = g.put(ctx, "new", []byte("v"), time.Minute)
	if n := g.len(); n != 1 {
		t.Errorf("after the TTL and a put the map holds %d entries, want 1 (expired ones swept)", n)
	}
}

// The in-process grace store is bounded in bytes, not entries: large tokens cannot make it
// hold more than its budget, the oldest entries go first, and the newest stays.
func TestMemGraceBoundedInBytes(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	g := newMemGrace(clk.Now)
	ctx := context.Background()
	const budget = 32 << 20 // DefaultGraceMemory
	big := make([]byte, 64<<10)
	for i := range 600 { // 600 x 64 KiB: more than the budget, far fewer than 65536 entries
		_ = g.put(ctx, fmt.Sprint("k", i), big, time.Hour)
	}
	held := 0
	for k, e := range g.m {
		held += len(k) + len(e.sealed)
	}
	if held > budget {
		t.Errorf("the in-process grace store holds %d bytes of entries, want at most %d", held, budget)
	}
	if v, _ := g.get(ctx, "k599"); v == nil {
		t.Errorf("the newest entry was dropped, want the oldest to go first")
	}
	if v, _ := g.get(ctx, "k0"); v != nil {
		t.Errorf("the oldest entry is still there over the budget, want it dropped first")
	}
}

// Forget, given the session's current refresh token, deletes the grace entry of the
// rotation that yielded it: the spent token no longer gets its tokens.
func TestCoordinatorForgetDeletesLastGraceEntry(t *testing.T) {
	c, _ := newTestCoordinator(0)
	ctx := context.Background()
	f := &refresher{}
	got, err := c.Refresh(ctx, "rt-0", f.fn)
	if err != nil || got.RefreshToken != "rt-1" {
		t.Fatalf("Refresh(rt-0) = %v, %v", got, err)
	}
	if _, err := c.Refresh(ctx, "rt-0", f.fn); err != nil || f.calls.Load() != 1 {
		t.Fatalf("Refresh(spent rt-0) = %v after %d calls, want the grace entry", err, f.calls.Load())
	}
	if err := c.Forget(ctx, "rt-1"); err != nil {
		t.Fatalf("Forget(rt-1) = %v", err)
	}
	if _, err := c.Refresh(ctx, "rt-0", f.fn); err != nil || f.calls.Load() != 2 {
		t.Errorf("Refresh(spent rt-0) after Forget(rt-1) = %v after %d calls, want a provider call (no grace entry)", err, f.calls.Load())
	}
	if err := c.Forget(ctx, "never-seen"); err != nil {
		t.Errorf("Forget(unknown token) = %v, want nil", err)
	}
}
