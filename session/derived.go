package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Errors of derived tokens (DESIGN "Tokens for upstreams").
var (
	// ErrTokenUnavailable means the provider refused to derive a route's token because
	// tokenhandler's configuration is wrong (invalid_target, invalid_scope,
	// unauthorized_client, unsupported_grant_type): 502 token_unavailable, logged at
	// error level, the session kept.
	ErrTokenUnavailable = errors.New("token for the upstream unavailable")
	// ErrSubjectRejected means the provider refused the session's access token as the
	// subject of a token exchange (invalid_grant): refresh the session once, then the
	// session is over.
	ErrSubjectRejected = errors.New("subject token refused by the provider")
)

// TokenPolicy is a route's token policy (config routes[].token): how the token the
// upstream receives is obtained from the session. Key identifies it in caches and
// flights.
type TokenPolicy struct {
	Via      string // "refresh" or "exchange"; "session" derives nothing
	Resource []string
	Audience []string
	Scope    string
	Format   string // "as_issued" or "jwt"
	JWTFrom  string // "mint" or "introspection"
	// Upstream is the route's upstream origin: a minted token's aud when the policy has
	// neither Audience nor Resource.
	Upstream string
	// DPoP asks for a DPoP-bound token (token.dpop): the derivation carries a proof.
	DPoP bool

	keyOnce sync.Once
	key     string
}

// Key returns the policy's identity: every field, unambiguously joined.
func (p *TokenPolicy) Key() string {
	p.keyOnce.Do(func() {
		var b strings.Builder
		fields := [][]string{{p.Via}, p.Resource, p.Audience, {p.Scope}, {p.Format}, {p.JWTFrom}, {p.Upstream}}
		if p.DPoP { // a field more: the keys of unbound policies stay as they were
			fields = append(fields, []string{"dpop"})
		}
		for _, f := range fields {
			for _, s := range f {
				fmt.Fprintf(&b, "%d:%s", len(s), s)
			}
			b.WriteByte('|')
		}
		p.key = b.String()
	})
	return p.key
}

// DerivedToken is a token obtained for one route's policy. It never reaches a log, a
// cookie or a response.
type DerivedToken struct {
	Token  string
	Issued time.Time
	// Expiry is zero when the provider did not say; the cache then keeps it no longer
	// than the session's access token.
	Expiry time.Time
	// Type is "DPoP" for a DPoP-bound token, "" for a bearer token.
	Type string
}

// header is t's Authorization value: "DPoP " + token for a bound token, else "Bearer "
// + token.
func (t *DerivedToken) header() string {
	if IsDPoP(t.Type) {
		return "DPoP " + t.Token
	}
	return "Bearer " + t.Token
}

// LogValue implements slog.LogValuer: a derived token logs as its expiry.
func (t *DerivedToken) LogValue() slog.Value { return slog.TimeValue(t.Expiry) }

// DefaultDerivedMemory bounds the in-process cache of derived tokens.
const DefaultDerivedMemory = 16 << 20

// derivedCache holds derived tokens per (session access token, policy), bounded in
// bytes: past the bound it starts over (a lost entry costs one derivation).
type derivedCache struct {
	mu       sync.Mutex
	m        map[string]map[string]*derivedEntry // access token -> policy key -> entry
	bytes    int
	maxBytes int
}

type derivedEntry struct {
	tok    DerivedToken
	header string // tok.header(), built once
	until  time.Time
}

func (c *derivedCache) get(accessToken, policy string, now time.Time) *derivedEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[accessToken][policy]
	if e == nil || !now.Before(e.until) {
		return nil
	}
	return e
}

func (c *derivedCache) put(accessToken, policy string, e *derivedEntry) {
	size := len(accessToken) + len(policy) + 2*len(e.tok.Token) + 64
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || c.bytes+size > c.maxBytes {
		c.m, c.bytes = make(map[string]map[string]*derivedEntry), 0
	}
	pm := c.m[accessToken]
	if pm == nil {
		pm = make(map[string]*derivedEntry)
		c.m[accessToken] = pm
	}
	pm[policy] = e
	c.bytes += size
}

func (c *derivedCache) drop(accessToken, policy string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if policy == "" {
		delete(c.m, accessToken)
		return
	}
	delete(c.m[accessToken], policy)
}

// Derived returns the Authorization value ("Bearer " + token, or "DPoP " + token for a
// bound one) of the token policy p yields for the session whose access token is
// accessToken: from the cache, or from fn, which runs once per (access token, policy)
// however many callers ask at once, detached from their cancellation and bounded by the
// coordinator's Timeout. The result is kept until its expiry less the effective skew,
// min(skew, half its lifetime) (a token without an expiry until notAfter, the session
// access token's own expiry). With Redis (CoordinatorOptions.Redis) the result is shared
// with the other replicas, sealed (AES-GCM) under a key derived (HKDF) from accessToken,
// and fn runs once at a time across the replicas too: a flight takes a Redis lock (the
// refresh lease's) or waits for the replica holding it, and reads what that replica
// stored (Redis unreachable: this replica derives on its own). hit reports whether the
// in-process cache answered. fn's errors reach every caller of that flight, at every
// replica waiting on it, and are not remembered.
func (c *Coordinator) Derived(ctx context.Context, accessToken string, p *TokenPolicy, skew time.Duration, notAfter time.Time,
	fn func(ctx context.Context) (*DerivedToken, error)) (header string, hit bool, err error) {
	key := p.Key()
	if e := c.derived.get(accessToken, key, c.now()); e != nil {
		return e.header, true, nil
	}
	flight := flightKey(accessToken) + "\x00" + key
	ch := c.dflights.DoChan(flight, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		if e := c.derived.get(accessToken, key, c.now()); e != nil {
			return e, nil // a flight that just ended
		}
		build := func(ctx context.Context) (*derivedEntry, error) {
			t, err := c.derive(ctx, fn)
			if err != nil {
				return nil, err
			}
			return &derivedEntry{tok: *t, header: t.header(), until: derivedUntil(t, skew, notAfter)}, nil
		}
		var e *derivedEntry
		err := errSharedUnavailable
		if c.shared != nil {
			e, err = c.deriveShared(fctx, accessToken, key, build)
		}
		if errors.Is(err, errSharedUnavailable) {
			// No Redis, or none reachable: derive here. Two replicas may then both
			// derive; nothing is spent twice (a via refresh derivation spends through
			// Refresh, which refuses to go on without the Redis it was given).
			e, err = build(fctx)
		}
		if err != nil {
			return nil, err
		}
		c.derived.put(accessToken, key, e)
		return e, nil
	})
	select {
	case <-ctx.Done():
		return "", false, fmt.Errorf("session: derive: %w", ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return "", false, res.Err
		}
		return res.Val.(*derivedEntry).header, false, nil
	}
}

// CachedDerived returns the cached Authorization value of policy p for the session whose
// access token is accessToken, if this process has one that is still good: the hot path
// of a request, with no allocation.
func (c *Coordinator) CachedDerived(accessToken string, p *TokenPolicy) (string, bool) {
	if e := c.derived.get(accessToken, p.Key(), c.now()); e != nil {
		return e.header, true
	}
	return "", false
}

// derive makes the one provider call of a flight, turning a panic into an error.
func (c *Coordinator) derive(ctx context.Context, fn func(context.Context) (*DerivedToken, error)) (t *DerivedToken, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.ErrorContext(ctx, "session: derivation panicked", "panic_type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
			t, err = nil, errors.New("session: derive: panic in the derivation")
		}
	}()
	t, err = fn(ctx)
	if err == nil && (t == nil || t.Token == "") {
		err = fmt.Errorf("session: derive: %w: no token in the answer", ErrIdPUnavailable)
	}
	return t, err
}

// derivedUntil is when a cached derived token stops being used.
func derivedUntil(t *DerivedToken, skew time.Duration, notAfter time.Time) time.Time {
	exp := t.Expiry
	if exp.IsZero() {
		exp = notAfter
	}
	if !t.Issued.IsZero() {
		if half := exp.Sub(t.Issued) / 2; half < skew {
			skew = half
		}
	}
	return exp.Add(-skew)
}

// DropDerived forgets the derived token of policy p for the session whose access token is
// accessToken (after an upstream refused it); p nil forgets all of that session's
// (logout).
//
// With Redis, the shared entry of p is deleted too (so that a token an upstream refused is
// not read back); on logout the shared entries are left to expire: they open only with the
// session's access token, which the ended session's cookies no longer get past the deny
// list.
func (c *Coordinator) DropDerived(ctx context.Context, accessToken string, p *TokenPolicy) {
	key := ""
	if p != nil {
		key = p.Key()
		c.unshareDerived(ctx, accessToken, key)
	}
	c.derived.drop(accessToken, key)
}
