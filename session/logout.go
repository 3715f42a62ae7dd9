package session

import (
	"context"
	"errors"
)

// Logout makes a logout final, in cookie mode too: a copy of the session's cookies (taken
// before the logout, kept by another tab or an attacker) stops working at once, and the
// grace entry of the session's last rotation goes with it.
//
// Set CookieOptions.Logout (and RedisStoreOptions.Coordinator for the Redis store, whose
// sessions are deleted on the server anyway): Store.Delete, which the agent's logout
// calls with the session it loaded, then calls End. It can also be called on its own.
type Logout struct {
	// Deny records the session id as ended until the session's absolute expiry:
	// NewDenyList(redis, ...) shares it with every replica through Redis (the deny list
	// of back-channel logout, also given as CookieOptions.Ended); NewLocalDenyList keeps
	// it in this process (one replica, no redis.url). Required.
	Deny *DenyList
	// Coordinator, when set, forgets the grace entry of the rotation that yielded the
	// session's refresh token (Coordinator.Forget).
	Coordinator *Coordinator
}

// End records s as ended and forgets its last grace entry. s may be nil (nothing to
// end). Both steps are tried; errors wrap ErrStoreUnavailable (the entry is then recorded
// in this process only).
func (l *Logout) End(ctx context.Context, s *Session) error {
	if l == nil || s == nil {
		return nil
	}
	var errs []error
	if l.Deny != nil {
		errs = append(errs, l.Deny.EndSession(ctx, s))
	}
	if l.Coordinator != nil {
		l.Coordinator.DropDerived(ctx, s.AccessToken, nil) // the routes' tokens of the session
		errs = append(errs, l.Coordinator.Forget(ctx, s.RefreshToken))
	}
	return errors.Join(errs...)
}
