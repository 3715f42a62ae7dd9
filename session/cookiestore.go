package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// CookieOptions configure a CookieStore.
type CookieOptions struct {
	// Keys is the key ring, cookies.keys: the first pair seals, every pair opens. At least
	// one is required.
	Keys []KeyPair
	// Prefix is cookies.prefix; "" means "th".
	Prefix string
	// Insecure drops the Secure attribute and the __Host-/__Secure- prefixes
	// (cookies.secure: false, plain-http local development only).
	Insecure bool
	// RefreshPaths are every Path the refresh cookie is set on: each proxy route prefix and
	// the agent's refresh, logout and userinfo paths. Never "/": the refresh token must not
	// travel with the SPA's own files. At least one is required.
	RefreshPaths []string
	// Lifetime is session.lifetime, the absolute lifetime of a session. It also bounds the
	// age of securecookie's timestamp. Zero means 12h.
	Lifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Ended, when set, is asked about every session that opens; true makes Load treat
	// it as no session. Back-channel logout uses it (DenyList.Ended). nil: none ends.
	Ended func(*Session) bool
	// Logout, when set, makes Delete final: the session id is recorded as ended until
	// the session's expiry (Load then refuses copies of its cookies) and its last grace
	// entry is forgotten. See Logout. nil: Delete only clears the browser's cookies.
	Logout *Logout
}

// CookieStore keeps the whole session in the browser, in three encrypted, authenticated,
// HttpOnly cookies (access, refresh, ID) bound together by the session id. It is the
// default Store and needs no server-side state.
type CookieStore struct {
	codec        *codec
	names        CookieNames
	refreshPaths []string
	attrs        cookieAttrs
	now          func() time.Time
	ended        func(*Session) bool
	logout       *Logout
}

var _ Store = (*CookieStore)(nil)

var rootPath = []string{"/"}

// DefaultLifetime is the session lifetime used when CookieOptions.Lifetime is zero.
const DefaultLifetime = 12 * time.Hour

// NewCookieStore returns a CookieStore for opts.
func NewCookieStore(opts CookieOptions) (*CookieStore, error) {
	if !validPrefix(opts.Prefix) {
		return nil, errors.New("session: cookie store: prefix may hold only letters, digits, '-' and '_' (at most 32)")
	}
	lifetime := opts.Lifetime
	if lifetime == 0 {
		lifetime = DefaultLifetime
	}
	if lifetime < 0 {
		return nil, errors.New("session: cookie store: lifetime must be positive")
	}
	c, err := newCodec(opts.Keys, lifetime+timestampSlack)
	if err != nil {
		return nil, fmt.Errorf("session: cookie store: %w", err)
	}
	paths, err := refreshPaths(opts.RefreshPaths)
	if err != nil {
		return nil, fmt.Errorf("session: cookie store: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &CookieStore{
		codec:        c,
		names:        NewCookieNames(opts.Prefix, opts.Insecure),
		refreshPaths: paths,
		attrs:        cookieAttrs{secure: !opts.Insecure, sameSite: http.SameSiteStrictMode},
		now:          now,
		ended:        opts.Ended,
		logout:       opts.Logout,
	}, nil
}

func refreshPaths(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, errors.New("at least one refresh path is required")
	}
	var out []string
	for _, p := range in {
		switch {
		case p == "/":
			return nil, errors.New(`refresh path "/" would send the refresh token with every request`)
		case !strings.HasPrefix(p, "/") || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == ';' || r >= 0x7f }):
			return nil, fmt.Errorf("refresh path %q is not an absolute path usable as a cookie Path", p)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Names returns the store's cookie names.
func (s *CookieStore) Names() CookieNames { return s.names }

// carriedSession is what a request carried of the three session cookies.
type carriedSession struct{ access, id, refresh carried }

func (s *CookieStore) carried(r *http.Request, cs *carriedSession) {
	scanCookies(r.Header, func(name, value string) {
		_ = cs.access.add(s.names.Access, name, value) || cs.id.add(s.names.ID, name, value) || cs.refresh.add(s.names.Refresh, name, value)
	})
}

// Load opens every session cookie the request carries (access and ID, and the refresh
// cookie where its path sends it), checks that they all belong to one session, and that
// its absolute expiry has not passed. Anything else is an error wrapping ErrNoSession.
func (s *CookieStore) Load(ctx context.Context, r *http.Request) (*Session, error) {
	var cs carriedSession
	s.carried(r, &cs)

	// One allocation for the three payloads: securecookie takes them as interfaces.
	p := new(struct {
		at accessPayload
		id idPayload
		rt refreshPayload
	})
	at, id, rt := &p.at, &p.id, &p.rt
	sid, exp, n, err := openAll(s.codec, s.names.Access, &cs.access, at)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("session: load: %w: no access cookie", ErrNoSession)
	}
	idSID, idExp, n, err := openAll(s.codec, s.names.ID, &cs.id, id)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("session: load: %w: no ID cookie", ErrNoSession)
	}
	rtSID, rtExp, n, err := openAll(s.codec, s.names.Refresh, &cs.refresh, rt)
	if err != nil {
		return nil, err
	}
	if sid == "" || idSID != sid || (n > 0 && rtSID != sid) {
		return nil, fmt.Errorf("session: load: %w: cookies of different sessions", ErrNoSession)
	}
	// The cookies of one session are written together with one expiry; trust the earliest.
	exp = minTime(exp, idExp)
	if n > 0 {
		exp = minTime(exp, rtExp)
	}
	sess := &Session{
		ID:           sid,
		Subject:      id.Subject,
		SID:          id.SID,
		Name:         id.Name,
		Email:        id.Email,
		IDToken:      id.Token,
		AccessToken:  at.Token,
		TokenType:    at.TokenType,
		AccessIssued: at.Issued,
		AccessExpiry: at.Expiry,
		RefreshToken: rt.Token,
		Expiry:       exp,
	}
	if sess.Expired(s.now()) {
		return nil, fmt.Errorf("session: load: %w: session expired", ErrNoSession)
	}
	if s.ended != nil && s.ended(sess) {
		return nil, fmt.Errorf("session: load: %w: ended by back-channel logout", ErrNoSession)
	}
	if s.logout != nil && s.logout.Deny != nil && s.logout.Deny.Ended(sess) {
		return nil, fmt.Errorf("session: load: %w: ended by logout", ErrNoSession)
	}
	return sess, nil
}

// boundPayload is a session cookie's payload: bound to a session id and its expiry.
type boundPayload interface {
	UnmarshalBinary([]byte) error
	binding() (sessionID string, expiry time.Time)
	fresh() boundPayload // a new, empty payload of the same kind
}

func (p *accessPayload) binding() (string, time.Time)  { return p.SessionID, p.SessionExpiry }
func (p *idPayload) binding() (string, time.Time)      { return p.SessionID, p.SessionExpiry }
func (p *refreshPayload) binding() (string, time.Time) { return p.SessionID, p.SessionExpiry }
func (p *accessPayload) fresh() boundPayload           { return new(accessPayload) }
func (p *idPayload) fresh() boundPayload               { return new(idPayload) }
func (p *refreshPayload) fresh() boundPayload          { return new(refreshPayload) }

// openAll opens every copy of one cookie the request carried and requires that they all
// belong to one session. dst receives the first copy (the browser sends the cookie of the
// most specific path first); the others are opened into fresh payloads. It returns the session id, the
// earliest expiry and how many copies there were.
func openAll(c *codec, name string, had *carried, dst boundPayload) (string, time.Time, int, error) {
	var sid string
	var exp time.Time
	i := 0
	n, err := had.eachCopy(name, func(pieces []string) error {
		p := dst
		if i > 0 {
			p = dst.fresh()
		}
		if err := c.openPieces(name, pieces, p); err != nil {
			return err
		}
		id, e := p.binding()
		switch {
		case i == 0:
			sid, exp = id, e
		case id != sid:
			return fmt.Errorf("session: open %s: %w: copies of different sessions", name, ErrNoSession)
		default:
			exp = minTime(exp, e)
		}
		i++
		return nil
	})
	if err != nil {
		return "", time.Time{}, 0, err
	}
	return sid, exp, n, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Save seals sess into the access, ID and refresh cookies and returns them with the
// deletions of any stale form (see write). Max-Age is the session's remaining absolute
// lifetime: saving never extends a session.
//
// The refresh cookie is written on every refresh path when sess.RefreshToken is set.
// When it is empty: a request that carried a refresh cookie gets it deleted (its base form
// on every path and the pieces it carried); one that carried none leaves it alone if the
// request is of this very session (its refresh cookie lives on paths this request does
// not match), and otherwise deletes its base form on every path, since it can only belong
// to another session (a new login without a refresh token) and would fail the binding
// check on every request to those paths.
func (s *CookieStore) Save(ctx context.Context, r *http.Request, sess *Session) ([]*http.Cookie, error) {
	if sess == nil || sess.ID == "" {
		return nil, errors.New("session: save: session without an id")
	}
	now := s.now()
	maxAge := maxAgeSeconds(sess.Expiry, now)
	var cs carriedSession
	s.carried(r, &cs)
	out := make([]*http.Cookie, 0, 4+len(s.refreshPaths))

	sealed, err := s.codec.seal(s.names.Access, &accessPayload{
		Token:         sess.AccessToken,
		Issued:        sess.AccessIssued,
		Expiry:        sess.AccessExpiry,
		SessionID:     sess.ID,
		SessionExpiry: sess.Expiry,
		TokenType:     sess.TokenType,
	})
	if err != nil {
		return nil, err
	}
	if out, err = s.attrs.write(out, s.names.Access, sealed, rootPath, maxAge, &cs.access); err != nil {
		return nil, err
	}

	sealed, err = s.codec.seal(s.names.ID, &idPayload{
		Token:         sess.IDToken,
		Subject:       sess.Subject,
		SID:           sess.SID,
		Name:          sess.Name,
		Email:         sess.Email,
		SessionID:     sess.ID,
		SessionExpiry: sess.Expiry,
	})
	if err != nil {
		return nil, err
	}
	if out, err = s.attrs.write(out, s.names.ID, sealed, rootPath, maxAge, &cs.id); err != nil {
		return nil, err
	}

	switch {
	case sess.RefreshToken != "":
		sealed, err = s.codec.seal(s.names.Refresh, &refreshPayload{
			Token:         sess.RefreshToken,
			SessionID:     sess.ID,
			SessionExpiry: sess.Expiry,
		})
		if err != nil {
			return nil, err
		}
		if out, err = s.attrs.write(out, s.names.Refresh, sealed, s.refreshPaths, maxAge, &cs.refresh); err != nil {
			return nil, err
		}
	case cs.refresh.present() || !s.carriesSession(&cs, sess.ID):
		out = s.attrs.deleteCarried(out, s.names.Refresh, s.refreshPaths, &cs.refresh)
	}
	return out, nil
}

// carriesSession reports whether the request's access cookie opens to session id.
func (s *CookieStore) carriesSession(cs *carriedSession, id string) bool {
	var at accessPayload
	sid, _, n, err := openAll(s.codec, s.names.Access, &cs.access, &at)
	return err == nil && n > 0 && sid == id
}

// Delete returns the deletions of every form of every session cookie (base name, each
// piece, each refresh path), whether or not the request carried them: a logout must clear
// everything. sess may be nil. With CookieOptions.Logout, it also records sess as ended
// (see Logout.End); an error from that (wrapping ErrStoreUnavailable) comes with the
// deletions, which the response must carry all the same.
func (s *CookieStore) Delete(ctx context.Context, r *http.Request, sess *Session) ([]*http.Cookie, error) {
	var cs carriedSession
	s.carried(r, &cs)
	out := make([]*http.Cookie, 0, 2*(1+maxPieces)+len(s.refreshPaths)*(1+maxPieces))
	out = s.attrs.deleteAll(out, s.names.Access, rootPath, &cs.access)
	out = s.attrs.deleteAll(out, s.names.ID, rootPath, &cs.id)
	out = s.attrs.deleteAll(out, s.names.Refresh, s.refreshPaths, &cs.refresh)
	if err := s.logout.End(ctx, sess); err != nil {
		return out, fmt.Errorf("session: delete: %w", err)
	}
	return out, nil
}

// Clear returns the deletions of the access and ID cookies the request carries, every
// form and piece of them, for a sign-in that is about to replace the session: the
// callback that sets the new cookies cannot see the old ones (the provider's redirect is
// a cross-site navigation, which carries no SameSite=Strict cookie), and pieces left
// from an old, differently chunked session would fail the new one's binding. A request
// carrying none gets none.
func (s *CookieStore) Clear(r *http.Request) []*http.Cookie {
	var cs carriedSession
	s.carried(r, &cs)
	var out []*http.Cookie
	if cs.access.present() {
		out = s.attrs.deleteCarried(out, s.names.Access, rootPath, &cs.access)
	}
	if cs.id.present() {
		out = s.attrs.deleteCarried(out, s.names.ID, rootPath, &cs.id)
	}
	return out
}
