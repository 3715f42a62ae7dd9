//go:build linux

package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/josekey"
	"github.com/tokenhandler/tokenhandler/mint"
	"github.com/tokenhandler/tokenhandler/proxy"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// coordDeriver is the hot path of oauthagent.Refresher.RouteToken (a one-line call of
// Coordinator.Derived) with a derivation that needs no provider: the benchmark measures
// the cached case, where the derivation never runs after the first request.
type coordDeriver struct {
	coord  *session.Coordinator
	derive func() (*session.DerivedToken, error)
}

func (d coordDeriver) RouteToken(ctx context.Context, s *session.Session, p *session.TokenPolicy, skew time.Duration, _ session.Renewer) (string, bool, error) {
	return d.coord.Derived(ctx, s.AccessToken, p, skew, s.AccessExpiry, func(context.Context) (*session.DerivedToken, error) { return d.derive() })
}

func (d coordDeriver) CachedRouteToken(s *session.Session, p *session.TokenPolicy) (string, bool) {
	return d.coord.CachedDerived(s.AccessToken, p)
}

func (d coordDeriver) DropRouteToken(ctx context.Context, s *session.Session, p *session.TokenPolicy) {
	d.coord.DropDerived(ctx, s.AccessToken, p)
}

// BenchmarkRouteTokens is one proxied GET (1.2 KB session token) through proxy.Handler to
// the plain route, to a route with a cached derived token (via exchange; Bearer, and
// DPoP-bound with a fresh EdDSA proof per request) and to a route with a cached minted
// JWT (format jwt), in the same run: the differences are what a route token adds per
// request once it is cached.
func BenchmarkRouteTokens(b *testing.B) {
	target := benchUpstream(b)
	keyPEM, err := mint.GenerateKey("ec")
	if err != nil {
		b.Fatal(err)
	}
	key, _ := mint.ParseKey(keyPEM)
	signer, err := mint.NewSigner([]*mint.Key{key}, mint.Options{Issuer: "http://app.example.com", TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	derivedTok, _ := (&jwtSignerOnce{}).token(b)
	variants := []struct {
		name   string
		policy *session.TokenPolicy
		derive func() (*session.DerivedToken, error)
	}{
		{"plain", nil, nil},
		{"derived", &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}, Format: "as_issued"}, func() (*session.DerivedToken, error) {
			return &session.DerivedToken{Token: derivedTok, Issued: time.Now(), Expiry: time.Now().Add(time.Hour)}, nil
		}},
		{"derived-dpop", &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}, Format: "as_issued", DPoP: true}, func() (*session.DerivedToken, error) {
			return &session.DerivedToken{Token: derivedTok, Type: "DPoP", Issued: time.Now(), Expiry: time.Now().Add(time.Hour)}, nil
		}},
		{"minted", &session.TokenPolicy{Via: "session", Format: "jwt", JWTFrom: "mint"}, func() (*session.DerivedToken, error) {
			tok, exp, err := signer.Mint(mint.Claims{Subject: "user-1", ClientID: "spa", Scope: "openid", Audience: []string{target.String()}, Expiry: time.Now().Add(time.Hour)})
			return &session.DerivedToken{Token: tok, Issued: time.Now(), Expiry: exp}, err
		}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			st := newBenchStore(b)
			coord := session.NewCoordinator(session.CoordinatorOptions{})
			tr := benchTransport()
			var proofer *dpop.Proofer // the bound variant's: EdDSA, as BenchmarkDPoPProof
			if v.policy != nil && v.policy.DPoP {
				k, err := josekey.Generate(josekey.EdDSA)
				if err != nil {
					b.Fatal(err)
				}
				if proofer, err = dpop.NewProofer(k, nil); err != nil {
					b.Fatal(err)
				}
			}
			h, err := proxy.New(st, noTokens{}, proxy.Options{
				DPoP:        proofer,
				Routes:      []proxy.Route{{Path: "/api/", Upstream: target, Token: v.policy}},
				RefreshSkew: 30 * time.Second,
				CSRF:        &web.CSRF{PublicOrigin: "http://app.example.com"},
				OwnCookie:   st.Names().Owns,
				Transport:   tr,
				Deriver:     coordDeriver{coord: coord, derive: v.derive},
				Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			serveLoop(b, h, apiRequest(b, st, benchSession(b, 1200)))
		})
	}
}

// BenchmarkDerivedCacheHit is the cached lookup alone (Coordinator.Derived answering
// from its cache), for a 1.2 KB session token.
func BenchmarkDerivedCacheHit(b *testing.B) {
	coord := session.NewCoordinator(session.CoordinatorOptions{})
	s := benchSession(b, 1200)
	p := &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}}
	ctx := context.Background()
	derive := func(context.Context) (*session.DerivedToken, error) {
		return &session.DerivedToken{Token: "derived", Issued: time.Now(), Expiry: time.Now().Add(time.Hour)}, nil
	}
	loop(b, func() {
		if _, _, err := coord.Derived(ctx, s.AccessToken, p, 30*time.Second, s.AccessExpiry, derive); err != nil {
			b.Fatal(err)
		}
	})
}

// jwtSignerOnce makes one 1.2 KB RS256 JWT for the derived route's token.
type jwtSignerOnce struct{}

func (jwtSignerOnce) token(b *testing.B) (string, error) {
	s, err := newJWTSigner("http://idp.example.com")
	if err != nil {
		b.Fatal(err)
	}
	return s.token(1200, "user-1", time.Now().Add(time.Hour))
}
