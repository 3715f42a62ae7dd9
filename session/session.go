// Package session owns what a signed-in browser holds: the Session model, the cookie codec
// (securecookie under a key ring, sealing and chunking), the Store interface with its
// CookieStore and RedisStore, and the coordination that lets exactly one refresh per
// refresh token run at a time (in-process single-flight, the Redis lease lock and the
// rotation grace entry).
//
// It knows nothing of HTTP routing or of OAuth: it never calls a provider. The caller
// passes the refresh work in as a function.
package session

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Errors callers branch on. Wrap them with %w; compare with errors.Is.
var (
	// ErrNoSession means the request carries no usable session: no cookies, cookies that
	// do not open, cookies of different sessions, or a session past its absolute expiry.
	// It is always a 401 "unauthenticated", never a 500.
	ErrNoSession = errors.New("no session")
	// ErrStoreUnavailable means the server-side store could not be reached. The session
	// may well exist; cookies are kept (503 session_store_unavailable).
	ErrStoreUnavailable = errors.New("session store unavailable")
	// ErrRefreshDenied means the provider refused the refresh token: the session is over
	// (401 session_expired, cookies cleared).
	ErrRefreshDenied = errors.New("refresh token refused by the provider")
	// ErrIdPUnavailable means the provider could not be asked or gave no usable answer
	// (timeout, connection error, 5xx, invalid_client, a malformed 2xx). The session is
	// kept (502 idp_unavailable).
	ErrIdPUnavailable = errors.New("identity provider unavailable")
)

// Session is one signed-in browser session. Tokens in it never reach a log: LogValue
// reports who and until when.
type Session struct {
	// ID is tokenhandler's own random session id, carried by every cookie of the session
	// and compared on every request. The provider's session id is SID.
	ID string

	Subject string // the ID token's sub
	SID     string // the provider's sid claim, if any
	Name    string // from the ID token, or userinfo at login; empty if never given
	Email   string

	IDToken string // raw ID token (JWT)

	AccessToken string
	// TokenType is the access token's type: "" (or "Bearer") for a bearer token, "DPoP"
	// for a token bound to tokenhandler's DPoP key (RFC 9449), which is never sent as
	// Bearer. A refresh keeps the binding.
	TokenType string
	// AccessIssued and AccessExpiry bound the access token's lifetime; the effective
	// refresh skew is min(refresh_skew, (AccessExpiry-AccessIssued)/2).
	AccessIssued time.Time
	AccessExpiry time.Time

	// RefreshToken is empty when the request did not carry the refresh cookie (its path
	// did not match) or the provider issued none.
	RefreshToken string

	// Expiry is the session's absolute end. Refreshes never extend it.
	Expiry time.Time
}

// LogValue implements slog.LogValuer: a session logs as who and until when, never a token.
func (s *Session) LogValue() slog.Value {
	if s == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("sub", s.Subject),
		slog.Time("access_expiry", s.AccessExpiry),
		slog.Time("expiry", s.Expiry),
	)
}

// DPoPBound reports whether the access token is DPoP-bound.
func (s *Session) DPoPBound() bool { return IsDPoP(s.TokenType) }

// IsDPoP reports whether a token_type names a DPoP-bound token.
func IsDPoP(tokenType string) bool { return strings.EqualFold(tokenType, "DPoP") }

// Expired reports whether the session's absolute lifetime has passed at now.
func (s *Session) Expired(now time.Time) bool { return !now.Before(s.Expiry) }

// Store keeps sessions. Implementations return the cookies to set rather than writing to a
// response, so they stay free of HTTP routing and can be tested alone.
//
// Load, Save and Delete take the incoming request so that they can read the cookies it
// carries (Save deletes stale chunks the request carried; Delete clears every form).
type Store interface {
	// Load opens the session the request carries. It returns an error wrapping
	// ErrNoSession for anything that is not a valid, bound, unexpired session, and one
	// wrapping ErrStoreUnavailable when a backend cannot be reached.
	Load(ctx context.Context, r *http.Request) (*Session, error)
	// Save stores s and returns the Set-Cookie values the response must carry.
	Save(ctx context.Context, r *http.Request, s *Session) ([]*http.Cookie, error)
	// Delete ends s (s may be nil when there is no valid session) and returns the
	// deletions of every cookie of the session, each repeating its attributes.
	Delete(ctx context.Context, r *http.Request, s *Session) ([]*http.Cookie, error)
}

// NeedsRefresh reports whether the access token should be refreshed before use at now:
// it expires within the effective skew, min(skew, half the token's lifetime), so a
// short-lived token is not refreshed on every request.
func (s *Session) NeedsRefresh(now time.Time, skew time.Duration) bool {
	if s.AccessExpiry.IsZero() {
		return false
	}
	if half := s.AccessExpiry.Sub(s.AccessIssued) / 2; !s.AccessIssued.IsZero() && half < skew {
		skew = half
	}
	return !now.Before(s.AccessExpiry.Add(-skew))
}
