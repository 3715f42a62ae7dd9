package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/session/sessiontest"
)

// A DPoP-bound derived token (token.dpop) is cached and shared as one: its Authorization
// value says DPoP in this process and on the replica that reads it from Redis, and a
// bound and an unbound policy are two cache entries.
func TestDerivedBoundTokenKeepsItsType(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	a, _ := replica(t, url, prefix, 0, 0)
	b, _ := replica(t, url, prefix, 0, 0)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	calls := 0
	derive := func(typ string) func(context.Context) (*session.DerivedToken, error) {
		return func(context.Context) (*session.DerivedToken, error) {
			calls++
			now := time.Now()
			return &session.DerivedToken{Token: "tok-" + typ, Type: typ, Issued: now, Expiry: now.Add(time.Hour)}, nil
		}
	}
	bound := &session.TokenPolicy{Via: "refresh", Resource: []string{"https://orders.test/"}, DPoP: true}
	unbound := &session.TokenPolicy{Via: "refresh", Resource: []string{"https://orders.test/"}}
	if bound.Key() == unbound.Key() {
		t.Fatal("a bound and an unbound policy share a key")
	}
	if h, _, err := a.Derived(ctx, "at-dpop", bound, 30*time.Second, exp, derive("DPoP")); err != nil || h != "DPoP tok-DPoP" {
		t.Fatalf("bound Derived = %q, %v; want DPoP tok-DPoP", h, err)
	}
	if h, ok := a.CachedDerived("at-dpop", bound); !ok || h != "DPoP tok-DPoP" {
		t.Errorf("CachedDerived(bound) = %q, %v", h, ok)
	}
	if h, _, err := b.Derived(ctx, "at-dpop", bound, 30*time.Second, exp, derive("DPoP")); err != nil || h != "DPoP tok-DPoP" || calls != 1 {
		t.Errorf("bound Derived on the other replica = %q, %v after %d derivations; want the shared DPoP token", h, err, calls)
	}
	if h, _, err := b.Derived(ctx, "at-dpop", unbound, 30*time.Second, exp, derive("")); err != nil || h != "Bearer tok-" || calls != 2 {
		t.Errorf("unbound Derived = %q, %v after %d derivations; want a Bearer token of its own", h, err, calls)
	}
	if h, _, err := a.Derived(ctx, "at-dpop", unbound, 30*time.Second, exp, derive("")); err != nil || h != "Bearer tok-" || calls != 2 {
		t.Errorf("unbound Derived on the first replica = %q, %v after %d derivations; want the shared Bearer token", h, err, calls)
	}
}
