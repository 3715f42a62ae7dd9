package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Refresh outcomes: the one vocabulary of refresh metrics, logs and the notifications
// replicas send each other.
const (
	// RefreshSuccess: new tokens (from the provider, a joined flight or a grace entry).
	RefreshSuccess = "success"
	// RefreshDenied: the provider refused the refresh token; the session is over.
	RefreshDenied = "denied"
	// RefreshIdPUnavailable: the provider could not be asked or gave no usable answer.
	RefreshIdPUnavailable = "idp_unavailable"
	// RefreshStoreUnavailable: the new tokens could not be stored (Redis unreachable).
	RefreshStoreUnavailable = "store_unavailable"
	// RefreshTokenUnavailable: a route's derivation was refused for our configuration.
	RefreshTokenUnavailable = "token_unavailable"
	// RefreshSubjectRejected: the provider refused the session's access token as a
	// token exchange's subject (a route's derivation).
	RefreshSubjectRejected = "subject_rejected"
	// RefreshEnded: the session was ended (logout, back-channel logout) while it
	// refreshed.
	RefreshEnded = "ended"
)

// RefreshOutcome names the outcome of a refresh that returned err.
func RefreshOutcome(err error) string {
	switch {
	case err == nil:
		return RefreshSuccess
	case errors.Is(err, ErrRefreshDenied):
		return RefreshDenied
	case errors.Is(err, ErrNoSession):
		return RefreshEnded
	case errors.Is(err, ErrStoreUnavailable):
		return RefreshStoreUnavailable
	case errors.Is(err, ErrTokenUnavailable):
		return RefreshTokenUnavailable
	case errors.Is(err, ErrSubjectRejected):
		return RefreshSubjectRejected
	default:
		return RefreshIdPUnavailable
	}
}

// RefreshFunc returns s with fresh tokens, spending s.RefreshToken at most once across
// concurrent callers (oauthagent.Refresher.Refresh, through the Coordinator).
type RefreshFunc func(ctx context.Context, s *Session) (*Session, error)

// Renewer runs a refresh of a request's session through Renew, bound to that request's
// store and cookies: the new session is saved and its cookies reach the browser.
type Renewer func(ctx context.Context, refresh RefreshFunc) (*Session, error)

// Renew is tokenhandler's one refresh-then-save: it refreshes s with refresh, stores the
// result in store and returns the new session with the cookies the response must set.
// The proxy (proactive and reactive refreshes) and the /auth endpoints (explicit refresh,
// userinfo) all renew through it, so they cannot drift apart.
//
// A refresh once sent is never cancelled, and neither is storing its result: a client
// that leaves mid-refresh must not leave the Redis store holding the spent refresh
// token. Both run detached from ctx's cancellation, bounded by their own timeouts
// (refresh_timeout, redis.*).
//
// Its errors wrap exactly one sentinel:
//   - ErrRefreshDenied: the provider refused the refresh token. The session is deleted
//     and the returned cookies are its deletions: set them, whatever the error.
//   - ErrNoSession: the session was ended (back-channel logout) while it refreshed; the
//     request is unauthenticated, not a store outage.
//   - ErrStoreUnavailable: the new tokens could not be stored; the session is kept.
//   - ErrTokenUnavailable: a route's derivation (via refresh) was refused because our
//     configuration is wrong; the refresh token was not spent, the session is kept.
//   - ErrIdPUnavailable: anything else. A fault that is not the provider's refusal never
//     ends a session.
func Renew(ctx context.Context, store Store, r *http.Request, s *Session, refresh RefreshFunc) (*Session, []*http.Cookie, error) {
	ctx = context.WithoutCancel(ctx)
	ns, err := refresh(ctx, s)
	switch {
	case err == nil && ns == nil:
		return nil, nil, fmt.Errorf("session: renew: %w: no session returned", ErrIdPUnavailable)
	case errors.Is(err, ErrRefreshDenied):
		del, derr := store.Delete(ctx, r, s)
		if derr != nil {
			// Only the refusal is the outcome; the failed deletion is told, not wrapped.
			err = fmt.Errorf("%w (and deleting the session failed: %v)", err, derr)
		}
		return nil, del, fmt.Errorf("session: renew: %w", err)
	case errors.Is(err, ErrIdPUnavailable), errors.Is(err, ErrStoreUnavailable), errors.Is(err, ErrTokenUnavailable):
		return nil, nil, fmt.Errorf("session: renew: %w", err)
	case err != nil:
		return nil, nil, fmt.Errorf("session: renew: %w: %w", ErrIdPUnavailable, err)
	}
	cookies, err := store.Save(ctx, r, ns)
	switch {
	case err == nil:
		return ns, cookies, nil
	case errors.Is(err, ErrNoSession), errors.Is(err, ErrStoreUnavailable):
		return nil, nil, fmt.Errorf("session: renew: save: %w", err)
	default:
		return nil, nil, fmt.Errorf("session: renew: save: %w: %w", ErrStoreUnavailable, err)
	}
}
