package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// Deriver is what the proxy needs for routes with a token policy (DESIGN "Tokens for
// upstreams"): oauthagent.Refresher satisfies it.
type Deriver interface {
	// RouteToken returns the Authorization value of the token policy p asks for session
	// s, cached per (session access token, policy), one derivation at a time. A via
	// refresh derivation renews the session through renew. hit reports a cache answer.
	// Errors wrap session.ErrTokenUnavailable, session.ErrSubjectRejected,
	// session.ErrRefreshDenied or session.ErrIdPUnavailable.
	RouteToken(ctx context.Context, s *session.Session, p *session.TokenPolicy, skew time.Duration, renew session.Renewer) (header string, hit bool, err error)
	// CachedRouteToken returns RouteToken's answer when it is cached in this process,
	// without deriving: the allocation-free hot path.
	CachedRouteToken(s *session.Session, p *session.TokenPolicy) (header string, ok bool)
	// DropRouteToken forgets the cached token of p for s.
	DropRouteToken(ctx context.Context, s *session.Session, p *session.TokenPolicy)
}

// Derivation outcomes, the vocabulary of OnDerive.
const (
	DeriveCached           = "cached"
	DeriveSuccess          = "success"
	DeriveTokenUnavailable = "token_unavailable"
	DeriveSessionExpired   = "session_expired"
	DeriveIdPUnavailable   = "idp_unavailable"
)

// routeToken gets the token of x.route's policy into x.authz (rewrite sends it); a route
// without a policy sends the session's access token. Cookies of a session renewed on
// the way (via refresh, or the refresh after an exchange's refused subject) go to set.
func (h *Handler) routeToken(ctx context.Context, x *exchange, w http.ResponseWriter) error {
	if x.route.policy == nil {
		return nil
	}
	if header, ok := h.deriver.CachedRouteToken(x.sess, x.route.policy); ok {
		x.authz = header
		if h.onDerive != nil {
			h.onDerive(x.route.prefix, DeriveCached, 0)
		}
		return nil
	}
	start := time.Now()
	hit, err := h.derive(ctx, x, w)
	if err != nil && errors.Is(err, session.ErrSubjectRejected) {
		// The provider refused the session's access token as subject: refresh the
		// session once and exchange its new token; refused again, the session is over.
		if err = h.refreshFor(ctx, x, w); err == nil {
			hit, err = h.derive(ctx, x, w)
		}
		if errors.Is(err, session.ErrSubjectRejected) {
			del, derr := h.store.Delete(context.WithoutCancel(ctx), x.in, x.sess)
			setRouteCookies(w, x, del)
			err = fmt.Errorf("proxy: %w: %w (deleting the session: %v)", session.ErrRefreshDenied, err, derr)
		}
	}
	if h.onDerive != nil {
		h.onDerive(x.route.prefix, deriveOutcome(hit, err), time.Since(start))
	}
	return err
}

// derive asks the Deriver once, renewing through session.Renew when the derivation is
// a refresh.
func (h *Handler) derive(ctx context.Context, x *exchange, w http.ResponseWriter) (bool, error) {
	// renew may run in a flight that outlives this request: what it yields is read
	// under mu, and only once RouteToken has returned.
	var (
		mu      sync.Mutex
		renewed *session.Session
		cookies []*http.Cookie
	)
	in, s := x.in, x.sess
	renew := func(ctx context.Context, refresh session.RefreshFunc) (*session.Session, error) {
		ns, c, err := session.Renew(ctx, h.store, in, s, refresh)
		mu.Lock()
		renewed, cookies = ns, c
		mu.Unlock()
		return ns, err
	}
	header, hit, err := h.deriver.RouteToken(ctx, x.sess, x.route.policy, h.skew, renew)
	mu.Lock()
	if renewed != nil {
		x.sess, x.refreshed = renewed, true
	}
	setRouteCookies(w, x, cookies)
	mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("proxy: token for %s: %w", x.route.prefix, err)
	}
	x.authz = header
	return hit, nil
}

// refreshFor refreshes x's session before a second derivation.
func (h *Handler) refreshFor(ctx context.Context, x *exchange, w http.ResponseWriter) error {
	if x.sess.RefreshToken == "" {
		return fmt.Errorf("proxy: %w: no refresh token to renew the exchange's subject", session.ErrSubjectRejected)
	}
	cookies, err := h.refresh(ctx, x, "derive")
	setRouteCookies(w, x, cookies)
	return err
}

func deriveOutcome(hit bool, err error) string {
	switch {
	case err == nil && hit:
		return DeriveCached
	case err == nil:
		return DeriveSuccess
	case errors.Is(err, session.ErrTokenUnavailable):
		return DeriveTokenUnavailable
	case errors.Is(err, session.ErrRefreshDenied), errors.Is(err, session.ErrNoSession):
		return DeriveSessionExpired
	default:
		return DeriveIdPUnavailable
	}
}

// setRouteCookies puts cookies on w's header at once, or, with no w (the transport's retry,
// after ReverseProxy has taken over the response), on x.pending for ModifyResponse or fail.
func setRouteCookies(w http.ResponseWriter, x *exchange, cookies []*http.Cookie) {
	if w != nil {
		web.SetCookies(w, cookies)
		return
	}
	x.pending = append(x.pending, cookies...)
}
