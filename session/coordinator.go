package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"golang.org/x/sync/singleflight"
)

// Tokens is what a refresh yields. It never reaches a log: LogValue reports expiries only.
type Tokens struct {
	AccessToken  string
	AccessIssued time.Time
	AccessExpiry time.Time
	// RefreshToken is the rotated refresh token, or the old one when the provider returned
	// none.
	RefreshToken string
	// IDToken is "" when the provider returned none.
	IDToken string
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
}

// Defaults of CoordinatorOptions.
const (
	DefaultRotationGrace  = 60 * time.Second
	DefaultRefreshTimeout = 10 * time.Second
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
	flights singleflight.Group
	ttl     time.Duration
	timeout time.Duration
	log     *slog.Logger
}

// NewCoordinator returns a Coordinator for one process.
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
	c.grace = newMemGrace(now)
	return c
}

// Refresh returns the tokens that replace refreshToken, spending it at most once however
// many callers ask concurrently. fn is the one provider call; its errors reach every
// caller waiting on that call unchanged (they are not remembered: a later call tries
// again). In order: (1) a grace entry for refreshToken answers at once; (2) otherwise the
// caller joins the refresh in flight for refreshToken or starts it; the flight re-checks
// the grace entry, calls fn, and writes the grace entry. A caller whose ctx ends gets
// ctx's error while the flight goes on.
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

// spend runs inside the flight: it re-checks the grace entry (another replica, or a flight
// that just ended, may have spent the token), calls fn once and records its result.
func (c *Coordinator) spend(ctx context.Context, refreshToken string, keys graceKeys, fn func(context.Context) (*Tokens, error)) (t *Tokens, err error) {
	if t := c.fromGrace(ctx, keys); t != nil {
		return t, nil
	}
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
	sealed, err := sealTokens(keys, t)
	if err == nil {
		err = c.grace.put(ctx, keys.lookup, sealed, c.ttl)
	}
	if err != nil {
		// The refresh succeeded; only late requests with the old token lose out.
		c.log.WarnContext(ctx, "session: cannot store the rotation grace entry", "err", err)
	}
	return t, nil
}

// fromGrace returns the tokens of the grace entry for keys, or nil. A store that fails
// is logged and counts as no entry: the flight then refreshes.
func (c *Coordinator) fromGrace(ctx context.Context, keys graceKeys) *Tokens {
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
