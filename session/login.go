package session

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Login attempts: each in its own cookie for LoginTTL, at most MaxLogins at a time.
const (
	LoginTTL  = 10 * time.Minute
	MaxLogins = 5
	// maxLoginCookieSize bounds a login cookie's name plus value. A login cookie holds a
	// return_to of up to 2 KiB, which sealed twice-base64 comes to just over 4000 bytes;
	// it is never chunked, so it may use what every browser keeps: 4096.
	maxLoginCookieSize = 4096
	// loginClockSkew is how far in the future a login's creation time may lie (replicas'
	// clocks differ a little).
	loginClockSkew = time.Minute
)

// ErrNoLogin means the callback's state matches no login attempt this browser started
// within LoginTTL: no login cookie for it, one that does not open, another state, or one
// too old. The callback answers invalid_state.
var ErrNoLogin = errors.New("no matching login in progress")

// Login is the state of one login attempt, kept in its own login cookie for LoginTTL.
type Login struct {
	State, Nonce, Verifier, ReturnTo string
	Created                          time.Time
}

// LoginJar writes and reads login cookies: LoginPrefix + a hash of the state, Path=/,
// SameSite=Lax (the cookie must come back on the provider's redirect), HttpOnly, Secure,
// Max-Age LoginTTL. One cookie per login, so two tabs do not clobber each other.
type LoginJar struct {
	codec *codec
	names CookieNames
	attrs cookieAttrs
	now   func() time.Time
}

// LoginOptions configure a LoginJar.
type LoginOptions struct {
	// Keys is the key ring, cookies.keys (the same as the session store's): the first
	// pair seals, every pair opens. At least one is required.
	Keys []KeyPair
	// Prefix is cookies.prefix; "" means "th".
	Prefix string
	// Insecure drops the Secure attribute and the __Host- prefix (cookies.secure: false,
	// plain-http local development only).
	Insecure bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewLoginJar returns a LoginJar for opts.
func NewLoginJar(opts LoginOptions) (*LoginJar, error) {
	if !validPrefix(opts.Prefix) {
		return nil, errors.New("session: login jar: prefix may hold only letters, digits, '-' and '_' (at most 32)")
	}
	c, err := newCodec(opts.Keys, LoginTTL+timestampSlack)
	if err != nil {
		return nil, fmt.Errorf("session: login jar: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &LoginJar{
		codec: c,
		names: NewCookieNames(opts.Prefix, opts.Insecure),
		attrs: cookieAttrs{secure: !opts.Insecure, sameSite: http.SameSiteLaxMode},
		now:   now,
	}, nil
}

// cookieName is the login cookie's name for state: 128 bits of its SHA-256, base64url.
func (j *LoginJar) cookieName(state string) string {
	h := sha256.Sum256([]byte(state))
	return j.names.LoginPrefix + base64.RawURLEncoding.EncodeToString(h[:16])
}

// Start returns the login cookie for l (its Created is set to now when zero) and the
// deletions of login cookies the request carried that must go: those that do not open or
// are past LoginTTL, and the oldest beyond MaxLogins-1, so the new one makes MaxLogins.
func (j *LoginJar) Start(r *http.Request, l *Login) ([]*http.Cookie, error) {
	if l == nil || l.State == "" {
		return nil, errors.New("session: start login: empty state")
	}
	now := j.now()
	if l.Created.IsZero() {
		l.Created = now
	}
	name := j.cookieName(l.State)
	sealed, err := j.codec.seal(name, (*loginPayload)(l))
	if err != nil {
		return nil, fmt.Errorf("session: start login: %w", err)
	}
	if len(name)+len(sealed) > maxLoginCookieSize {
		return nil, fmt.Errorf("session: start login: login cookie of %d bytes is too large", len(name)+len(sealed))
	}
	out := []*http.Cookie{j.attrs.cookie(name, sealed, "/", int(LoginTTL/time.Second))}
	for _, n := range j.stale(r, name, now) {
		out = append(out, j.attrs.deletion(n, "/"))
	}
	return out, nil
}

// maxLoginDeletions bounds the deletions one Start answers: a browser that keeps the
// rules never holds more than MaxLogins login cookies, and a request stuffed with forged
// ones must not turn into a response of hundreds of KB (behind a proxy with a small
// header buffer, a failed login). What is left is deleted by the next logins.
const maxLoginDeletions = 2 * MaxLogins

// stale returns the names of the login cookies the request carried that must go, at
// most maxLoginDeletions of them: first the oldest of those that open, beyond the newest
// MaxLogins-1 (so the new one, named fresh, makes MaxLogins), then those that do not open,
// are past LoginTTL or carry a name that is not their state's. It looks at each cookie
// once, in one pass with a set of the names seen: linear in the number of cookies.
func (j *LoginJar) stale(r *http.Request, fresh string, now time.Time) []string {
	type live struct {
		name    string
		created time.Time
	}
	var (
		newest     [MaxLogins - 1]live // the newest logins that open, newest first
		kept       int
		old, bad   []string
		seen       = make(map[string]struct{})
		addBounded = func(list []string, name string) []string {
			if len(list) < maxLoginDeletions {
				list = append(list, name)
			}
			return list
		}
	)
	for _, ck := range r.Cookies() {
		if !strings.HasPrefix(ck.Name, j.names.LoginPrefix) || ck.Name == fresh {
			continue
		}
		if _, dup := seen[ck.Name]; dup {
			continue
		}
		seen[ck.Name] = struct{}{}
		var p loginPayload
		if len(ck.Name) != len(fresh) || j.codec.open(ck.Name, ck.Value, &p) != nil || j.tooOld(p.Created, now) || ck.Name != j.cookieName(p.State) {
			// (A name of another length is no hash of a state: not worth opening.)
			bad = addBounded(bad, ck.Name)
			continue
		}
		l := live{ck.Name, p.Created}
		// Insert l among the newest; whatever falls off the end is old.
		for i := 0; i < kept; i++ {
			if l.created.After(newest[i].created) {
				l, newest[i] = newest[i], l
			}
		}
		if kept < len(newest) {
			newest[kept] = l
			kept++
			continue
		}
		old = addBounded(old, l.name)
	}
	if len(old) < maxLoginDeletions {
		old = append(old, bad[:min(len(bad), maxLoginDeletions-len(old))]...)
	}
	return old
}

func (j *LoginJar) tooOld(created, now time.Time) bool {
	return now.Sub(created) > LoginTTL || created.Sub(now) > loginClockSkew
}

// Finish opens the login cookie that belongs to state, found by the hash of state and
// compared with it in constant time, and refuses one older than LoginTTL. It always
// returns the deletion of that cookie, whatever the outcome, so the callback can delete
// it. Errors wrap ErrNoLogin.
func (j *LoginJar) Finish(r *http.Request, state string) (*Login, []*http.Cookie, error) {
	name := j.cookieName(state)
	del := []*http.Cookie{j.attrs.deletion(name, "/")}
	if state == "" {
		return nil, del, fmt.Errorf("session: finish login: %w: empty state", ErrNoLogin)
	}
	err := fmt.Errorf("session: finish login: %w: no login cookie", ErrNoLogin)
	for _, ck := range r.Cookies() {
		if ck.Name != name {
			continue
		}
		var p loginPayload
		if j.codec.open(name, ck.Value, &p) != nil {
			err = fmt.Errorf("session: finish login: %w: login cookie does not open", ErrNoLogin)
			continue
		}
		if subtle.ConstantTimeCompare([]byte(p.State), []byte(state)) != 1 {
			err = fmt.Errorf("session: finish login: %w: state differs", ErrNoLogin)
			continue
		}
		if j.tooOld(p.Created, j.now()) {
			err = fmt.Errorf("session: finish login: %w: login expired", ErrNoLogin)
			continue
		}
		l := Login(p)
		return &l, del, nil
	}
	return nil, del, err
}
