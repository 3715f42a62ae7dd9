package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
)

// Tokens is what a refresh yields. It never reaches a log: LogValue reports expiries only.
type Tokens struct {
	AccessToken string
	// TokenType is the access token's token_type as the session keeps it ("" Bearer,
	// "DPoP" bound).
	TokenType    string
	AccessIssued time.Time
	AccessExpiry time.Time
	// RefreshToken is the rotated refresh token, or the old one when the provider returned
	// none.
	RefreshToken string
	// IDToken is "" when the provider returned none.
	IDToken string
	// For is "" for the session's own tokens, or the TokenPolicy.Key of the route whose
	// token AccessToken is (a via refresh derivation spent the refresh token): then only
	// RefreshToken belongs to the session.
	For string
}

// LogValue implements slog.LogValuer: tokens log as their expiry, never their value.
func (t *Tokens) LogValue() slog.Value {
	if t == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.Time("access_expiry", t.AccessExpiry),
		slog.Bool("rotated_refresh_token", t.RefreshToken != ""),
		slog.Bool("id_token", t.IDToken != ""),
	)
}

// CoordinatorOptions configure a Coordinator.
type CoordinatorOptions struct {
	// Grace is session.rotation_grace: how long the tokens a refresh yielded are handed to
	// requests that still carry the old refresh token. Zero means 60s.
	Grace time.Duration
	// Timeout bounds one refresh (session.refresh_timeout). Zero means 10s.
	Timeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Redis, when set, shares the coordination with every replica that uses the same
	// Redis and key prefix: the lease lock, the "done" notification and the rotation
	// grace entry live there. While Redis cannot be reached, coordination falls back to
	// this process (with a logged warning) and returns to Redis by itself. nil: this
	// process only.
	Redis *Redis
	// Lease is the Redis lock's lease, renewed every Lease/3 while the provider call is
	// in flight; a replica that dies holding it blocks the others for at most Lease.
	// Zero means DefaultLease.
	Lease time.Duration
	// GraceMemory bounds this process's grace entries in bytes (the oldest go first).
	// Zero means DefaultGraceMemory.
	GraceMemory int
	// DerivedMemory bounds this process's cache of derived tokens in bytes. Zero means
	// DefaultDerivedMemory.
	DerivedMemory int
}

// Defaults of CoordinatorOptions.
const (
	DefaultRotationGrace  = 60 * time.Second
	DefaultRefreshTimeout = 10 * time.Second
	DefaultLease          = 3 * time.Second
)

// Coordinator makes sure that one refresh token is spent at most once, however many
// requests need fresh tokens at the same time, and that requests still holding a spent
// refresh token get what its refresh yielded (the rotation grace entry).
//
// A refresh, once started, is never cancelled by its callers: it runs detached, bounded
// only by Timeout, and stores its result even if every caller has gone, or the rotated
// refresh token would be lost and the next request would replay a spent one.
type Coordinator struct {
	grace   graceStore
	shared  *sharedRefresh // nil without Redis
	flights singleflight.Group
	ttl     time.Duration
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	derived  derivedCache
	dflights singleflight.Group
}

// NewCoordinator returns a Coordinator for one process, shared with other replicas
// through opts.Redis when it is set.
func NewCoordinator(opts CoordinatorOptions) *Coordinator {
	c := &Coordinator{ttl: opts.Grace, timeout: opts.Timeout, log: opts.Logger}
	if c.ttl <= 0 {
		c.ttl = DefaultRotationGrace
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRefreshTimeout
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	c.now = now
	c.derived.maxBytes = opts.DerivedMemory
	if c.derived.maxBytes <= 0 {
		c.derived.maxBytes = DefaultDerivedMemory
	}
	mg := newMemGrace(now)
	if opts.GraceMemory > 0 {
		mg.maxBytes = opts.GraceMemory
	}
	c.grace = mg
	if opts.Redis != nil {
		lease := opts.Lease
		if lease <= 0 {
			lease = DefaultLease
		}
		c.shared = &sharedRefresh{r: opts.Redis, lease: lease, grace: c.ttl, log: c.log}
	}
	return c
}

// Refresh returns the tokens that replace refreshToken, spending it at most once however
// many callers ask concurrently. fn is the one provider call; its errors reach every
// caller waiting on that call unchanged (they are not remembered: a later call tries
// again). In order: (1) a grace entry for refreshToken answers at once; (2) otherwise the
// caller joins the refresh in flight for refreshToken or starts it; (3) with Redis, the
// flight reads the shared grace entry and takes the lease lock in one round trip, or,
// when another replica holds the lock, waits for its "done" notification or the lease's
// lapse and looks again; (4) the lock's holder calls fn, renewing the lease every
// Lease/3, writes the grace entry, notifies, and releases the lock if it is still its
// own. A caller whose ctx ends gets ctx's error while the flight goes on.
//
// A waiter told that the holder's call failed gets ErrRefreshDenied or
// ErrIdPUnavailable like the holder's own callers, without calling the provider.
//
// Each caller gets its own copy of the tokens.
func (c *Coordinator) Refresh(ctx context.Context, refreshToken string, fn func(ctx context.Context) (*Tokens, error)) (*Tokens, error) {
	if refreshToken == "" {
		return nil, fmt.Errorf("session: refresh: %w: no refresh token", ErrNoSession)
	}
	keys, err := deriveGraceKeys(refreshToken)
	if err != nil {
		return nil, err
	}
	if t := c.fromGrace(ctx, keys); t != nil {
		return t, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("session: refresh: %w", err) // gone already: spend nothing
	}
	ch := c.flights.DoChan(flightKey(refreshToken), func() (any, error) {
		// One caller giving up must not cancel the refresh: it runs on its own.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		return c.spend(fctx, refreshToken, keys, fn)
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("session: refresh: %w", ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		t := *res.Val.(*Tokens)
		return &t, nil
	}
}

// spend runs inside the flight: it re-checks the grace entry (a flight that just ended
// may have spent the token), then spends it through Redis when configured, otherwise in
// this process.
//
// With Redis configured but unreachable, it spends nothing and answers
// ErrStoreUnavailable (503, cookies kept): spending the token in this process alone
// would let another replica, just as cut off, spend the same token, and a provider
// with strict rotation (Hydra) answers such a replay by revoking the whole token
// family, which signs the user out. e2e/drill's Sentinel failover drill saw exactly
// that. Refreshes go on once Redis answers again (after downBackoff).
func (c *Coordinator) spend(ctx context.Context, refreshToken string, keys entryKeys, fn func(context.Context) (*Tokens, error)) (*Tokens, error) {
	if t := c.fromGrace(ctx, keys); t != nil {
		return t, nil
	}
	flight := flightKey(refreshToken)
	call := func(ctx context.Context) (*Tokens, error) { return c.call(ctx, refreshToken, fn) }
	if c.shared != nil {
		t, ttl, err := c.shared.spend(ctx, flight, keys, call)
		switch {
		case errors.Is(err, errSharedUnavailable):
			return nil, fmt.Errorf("session: refresh: %w: %w", ErrStoreUnavailable, err)
		case err == nil:
			c.remember(ctx, flight, keys, t, ttl)
		}
		return t, err
	}
	t, err := call(ctx)
	if err != nil {
		return nil, err
	}
	c.remember(ctx, flight, keys, t, c.ttl)
	return t, nil
}

// Forget deletes the grace entry of the rotation that yielded refreshToken (the session's
// current refresh token), here and, with Redis, at every replica: after a logout, a copy
// of the session's older cookies must not get its tokens. Nothing to forget is no error;
// errors wrap ErrStoreUnavailable.
func (c *Coordinator) Forget(ctx context.Context, refreshToken string) error {
	if refreshToken == "" {
		return nil
	}
	link, err := graceLink(refreshToken)
	if err != nil {
		return err
	}
	if v, err := c.grace.get(ctx, link); err == nil && v != nil {
		if _, lookup, ok := strings.Cut(string(v), " "); ok {
			_ = c.grace.del(ctx, lookup)
		}
		_ = c.grace.del(ctx, link)
	}
	if c.shared != nil {
		return c.shared.forget(ctx, link)
	}
	return nil
}

// call makes the one provider call and checks its answer.
func (c *Coordinator) call(ctx context.Context, refreshToken string, fn func(context.Context) (*Tokens, error)) (t *Tokens, err error) {
	defer func() {
		// A panic in fn would otherwise crash the process from singleflight's goroutine.
		if p := recover(); p != nil {
			c.log.ErrorContext(ctx, "session: refresh panicked", "panic_type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
			t, err = nil, errors.New("session: refresh: panic in the refresh function")
		}
	}()
	got, err := fn(ctx)
	if err != nil {
		return nil, err
	}
	if got == nil || got.AccessToken == "" {
		return nil, fmt.Errorf("session: refresh: %w: no access token in the answer", ErrIdPUnavailable)
	}
	t = new(Tokens)
	*t = *got
	if t.RefreshToken == "" {
		t.RefreshToken = refreshToken
	}
	return t, nil
}

// remember writes the in-process grace entry for keys and its link from the new refresh
// token (see graceLink), kept for ttl: the full grace after this process's own refresh,
// what is left of it for an entry another replica wrote (so that every replica lets it
// go at its original deadline).
func (c *Coordinator) remember(ctx context.Context, flight string, keys entryKeys, t *Tokens, ttl time.Duration) {
	ttl = min(ttl, c.ttl)
	if ttl <= 0 {
		return
	}
	err := c.grace.put(ctx, keys.lookup, sealTokens(keys, t), ttl)
	if err == nil {
		var link string
		if link, err = graceLink(t.RefreshToken); err == nil {
			err = c.grace.put(ctx, link, []byte(flight+" "+keys.lookup), ttl)
		}
	}
	if err != nil {
		// The refresh succeeded; only late requests with the old token lose out.
		c.log.WarnContext(ctx, "session: cannot store the rotation grace entry", "err", err)
	}
}

// fromGrace returns the tokens of the grace entry for keys, or nil. A store that fails
// is logged and counts as no entry: the flight then refreshes.
func (c *Coordinator) fromGrace(ctx context.Context, keys entryKeys) *Tokens {
	sealed, err := c.grace.get(ctx, keys.lookup)
	if err != nil {
		c.log.WarnContext(ctx, "session: cannot read the rotation grace entry", "err", err)
		return nil
	}
	if sealed == nil {
		return nil
	}
	t, err := openTokens(keys, sealed)
	if err != nil {
		c.log.WarnContext(ctx, "session: rotation grace entry does not open", "err", err)
		return nil
	}
	return t
}
