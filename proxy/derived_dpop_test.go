package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// coordDeriver derives through a real session.Coordinator (its cache is the hot path's)
// tokens "dt-N" of type typ, and counts derivations and drops.
type coordDeriver struct {
	coord *session.Coordinator
	typ   string // "DPoP": the provider bound the tokens
	mu    sync.Mutex
	n     int
	drops int
}

func newCoordDeriver(typ string) *coordDeriver {
	return &coordDeriver{coord: session.NewCoordinator(session.CoordinatorOptions{}), typ: typ}
}

func (d *coordDeriver) RouteToken(ctx context.Context, s *session.Session, p *session.TokenPolicy, skew time.Duration, _ session.Renewer) (string, bool, error) {
	return d.coord.Derived(ctx, s.AccessToken, p, skew, s.AccessExpiry, func(context.Context) (*session.DerivedToken, error) {
		d.mu.Lock()
		d.n++
		n := d.n
		d.mu.Unlock()
		now := time.Now()
		return &session.DerivedToken{Token: fmt.Sprintf("dt-%d", n), Type: d.typ, Issued: now, Expiry: now.Add(time.Hour)}, nil
	})
}

func (d *coordDeriver) CachedRouteToken(s *session.Session, p *session.TokenPolicy) (string, bool) {
	return d.coord.CachedDerived(s.AccessToken, p)
}

func (d *coordDeriver) DropRouteToken(ctx context.Context, s *session.Session, p *session.TokenPolicy) {
	d.mu.Lock()
	d.drops++
	d.mu.Unlock()
	d.coord.DropDerived(ctx, s.AccessToken, p)
}

func (d *coordDeriver) counts() (derivations, drops int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n, d.drops
}

// boundPolicy is a via exchange policy with token.dpop: true.
func boundPolicy() *session.TokenPolicy {
	return &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}, Format: "as_issued", DPoP: true}
}

// A DPoP-bound derived token goes upstream as "DPoP <derived token>" with a fresh proof
// per request, its ath the derived token's (not the session's), on the first request
// (derived) and on the cached path, whatever the client sent; the session's own token is
// a bearer one (oidc.dpop off, token.dpop on).
func TestDerivedTokenDPoP(t *testing.T) {
	p := newProofer(t)
	d := newCoordDeriver("DPoP")
	e := newEnv(t, nil, func(e *env, o *Options) {
		o.DPoP = p
		o.Deriver = d
		o.Routes = []Route{{Path: "/api/", Upstream: e.up.url(t, ""), Token: boundPolicy()}}
	})
	jtis := map[string]bool{}
	for i := range 3 {
		r := e.req(http.MethodGet, "/api/orders/7?q=1", nil)
		r.Header.Set("Authorization", "Bearer forged")
		r.Header.Set("DPoP", "forged-proof")
		if w := e.do(r); w.Code != http.StatusOK {
			t.Fatalf("request %d = %d %s", i, w.Code, w.Body)
		}
		c := checkProof(t, e.up.requests()[i].Header, "GET", e.up.URL+"/api/orders/7", "dt-1", p.Thumbprint())
		if jtis[c.JTI] {
			t.Fatalf("request %d: proof jti repeated", i)
		}
		jtis[c.JTI] = true
	}
	if n, _ := d.counts(); n != 1 {
		t.Errorf("derivations = %d, want 1 (then the cache)", n)
	}
}

// A bearer derived token (token.dpop: false) of a DPoP-bound session goes as Bearer with
// no DPoP header at all, the client's included.
func TestDerivedTokenBearerFromBoundSession(t *testing.T) {
	d := newCoordDeriver("")
	e := newEnv(t, nil, func(e *env, o *Options) {
		o.DPoP = newProofer(t)
		o.Deriver = d
		o.Routes = []Route{{Path: "/api/", Upstream: e.up.url(t, ""), Token: &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}, Format: "as_issued"}}}
	})
	e.setSession(bound)
	for i := range 2 {
		r := e.req(http.MethodGet, "/api/x", nil)
		r.Header.Set("DPoP", "forged-proof")
		if w := e.do(r); w.Code != http.StatusOK {
			t.Fatalf("request %d = %d %s", i, w.Code, w.Body)
		}
		h := e.up.requests()[i].Header
		if got := h.Values("Authorization"); len(got) != 1 || got[0] != "Bearer dt-1" || len(h.Values("Dpop")) != 0 {
			t.Fatalf("request %d: Authorization %q, DPoP %q; want Bearer dt-1 and no DPoP header", i, got, h.Values("Dpop"))
		}
	}
}

// An upstream's use_dpop_nonce challenge to a bound derived token is answered by one
// retry carrying its nonce and a new proof of the same derived token; it is not a 401 a
// new token cures (no drop, no derivation). A 401 invalid_token is: the token is dropped,
// derived again, and the retry proves the new one.
func TestDerivedTokenDPoPNonceAndRederive(t *testing.T) {
	p := newProofer(t)
	d := newCoordDeriver("DPoP")
	nu := &nonceUpstream{nonce: "n-1"}
	var reject sync.Map // tokens the upstream refuses with invalid_token
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if _, ok := reject.Load(strings.TrimPrefix(r.Header.Get("Authorization"), "DPoP ")); ok {
			w.Header().Set("WWW-Authenticate", `DPoP error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		nu.serve(w, r)
	}, func(e *env, o *Options) {
		o.DPoP = p
		o.Deriver = d
		o.Routes = []Route{{Path: "/api/", Upstream: e.up.url(t, ""), Token: boundPolicy()}}
	})
	body := strings.Repeat("b", 1000)
	if w := e.do(e.req(http.MethodPost, "/api/x", strings.NewReader(body))); w.Code != http.StatusOK {
		t.Fatalf("first request = %d %s", w.Code, w.Body)
	}
	reqs := e.up.requests()
	if len(reqs) != 2 {
		t.Fatalf("upstream requests = %d, want 2 (one nonce retry)", len(reqs))
	}
	c0 := checkProof(t, reqs[0].Header, "POST", e.up.URL+"/api/x", "dt-1", p.Thumbprint())
	c1 := checkProof(t, reqs[1].Header, "POST", e.up.URL+"/api/x", "dt-1", p.Thumbprint())
	if c0.Nonce != "" || c1.Nonce != "n-1" || c0.JTI == c1.JTI || string(reqs[1].Body) != body {
		t.Errorf("nonces %q then %q (want none then n-1), jti repeated %v, body replayed %v", c0.Nonce, c1.Nonce, c0.JTI == c1.JTI, string(reqs[1].Body) == body)
	}
	if n, drops := d.counts(); n != 1 || drops != 0 {
		t.Errorf("after a nonce challenge: %d derivations, %d drops; want 1 and 0", n, drops)
	}

	// The upstream now refuses dt-1: dropped, dt-2 derived, the retry proves dt-2 with the
	// kept nonce.
	reject.Store("dt-1", true)
	if w := e.do(e.req(http.MethodPost, "/api/y", strings.NewReader(body))); w.Code != http.StatusOK {
		t.Fatalf("request after invalid_token = %d %s", w.Code, w.Body)
	}
	reqs = e.up.requests()
	if len(reqs) != 4 {
		t.Fatalf("upstream requests = %d, want 4", len(reqs))
	}
	checkProof(t, reqs[2].Header, "POST", e.up.URL+"/api/y", "dt-1", p.Thumbprint())
	if c := checkProof(t, reqs[3].Header, "POST", e.up.URL+"/api/y", "dt-2", p.Thumbprint()); c.Nonce != "n-1" || string(reqs[3].Body) != body {
		t.Errorf("the re-derived retry: nonce %q, body replayed %v", c.Nonce, string(reqs[3].Body) == body)
	}
	if n, drops := d.counts(); n != 2 || drops != 1 {
		t.Errorf("after invalid_token: %d derivations, %d drops; want 2 and 1", n, drops)
	}
}

// A bound derived token is never sent as Bearer: without a DPoP key it is not sent at
// all (502 token_unavailable, the configuration's fault).
func TestDerivedTokenDPoPWithoutKey(t *testing.T) {
	e := newEnv(t, nil, func(e *env, o *Options) {
		o.Deriver = newCoordDeriver("DPoP")
		o.Routes = []Route{{Path: "/api/", Upstream: e.up.url(t, ""), Token: boundPolicy()}}
	})
	wantError(t, e.do(e.req(http.MethodGet, "/api/x", nil)), http.StatusBadGateway, web.CodeTokenUnavailable)
	if got := len(e.up.requests()); got != 0 {
		t.Fatalf("upstream saw %d requests: a bound token was forwarded without a proof", got)
	}
}

// BenchmarkDerivedToken is one proxied GET with a cached derived token (1.2 KB) sent as
// Bearer and, DPoP-bound, with a fresh EdDSA proof: the difference is what token.dpop
// costs per request.
func BenchmarkDerivedToken(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"items":[1,2,3]}`)
	}))
	defer up.Close()
	target := (&upstream{Server: up}).url(b, "")
	now := time.Now()
	derivedTok := jwtLike(1200)
	for _, v := range []struct{ name, typ string }{{"derived=bearer", ""}, {"derived=dpop-EdDSA", "DPoP"}} {
		b.Run(v.name, func(b *testing.B) {
			s := &session.Session{
				ID: "sid", Subject: "alice", AccessToken: jwtLike(1200), RefreshToken: "rt",
				AccessIssued: now, AccessExpiry: now.Add(time.Hour), Expiry: now.Add(12 * time.Hour),
			}
			coord := session.NewCoordinator(session.CoordinatorOptions{})
			policy := &session.TokenPolicy{Via: "exchange", Audience: []string{"orders"}, Format: "as_issued", DPoP: v.typ != ""}
			if _, _, err := coord.Derived(context.Background(), s.AccessToken, policy, 30*time.Second, s.AccessExpiry, func(context.Context) (*session.DerivedToken, error) {
				return &session.DerivedToken{Token: derivedTok, Type: v.typ, Issued: now, Expiry: now.Add(time.Hour)}, nil
			}); err != nil {
				b.Fatal(err)
			}
			d := &coordDeriver{coord: coord, typ: v.typ}
			h, err := New(staticStore{s}, &fakeTokens{}, Options{
				DPoP:        newProofer(b),
				Deriver:     d,
				Routes:      []Route{{Path: "/api/", Upstream: target, Token: policy}},
				RefreshSkew: 30 * time.Second,
				CSRF:        &web.CSRF{PublicOrigin: publicOrigin},
				OwnCookie:   ownCookie,
				Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			serveBench(b, h, benchRequest(1200))
			if n, _ := d.counts(); n != 0 {
				b.Fatalf("%d derivations, want the cached token only", n)
			}
		})
	}
}
