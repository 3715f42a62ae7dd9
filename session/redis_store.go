package session

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStoreOptions configure a RedisStore.
type RedisStoreOptions struct {
	// Keys is the key ring that seals the session cookie (cookies.keys): the first pair
	// seals, every pair opens. At least one is required.
	Keys []KeyPair
	// Prefix is cookies.prefix; "" means "th".
	Prefix string
	// Insecure drops the Secure attribute and the __Host- prefix (cookies.secure: false).
	Insecure bool
	// Lifetime is session.lifetime, the absolute lifetime; zero means 12h.
	Lifetime time.Duration
	// IdleTimeout is session.idle_timeout: a session unused for this long is gone. Zero
	// means 1h.
	IdleTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Coordinator, when set, makes Delete forget the grace entry of the session's last
	// rotation too (Coordinator.Forget), so that a logout leaves none behind. nil: the
	// entry lapses after rotation_grace.
	Coordinator *Coordinator
}

// DefaultIdleTimeout is RedisStoreOptions.IdleTimeout when it is zero.
const DefaultIdleTimeout = time.Hour

// touchInterval: a session's TTL is extended on use at most this often.
const touchInterval = time.Minute

// RedisStore keeps sessions in Redis behind one cookie. The cookie (sealed under the key
// ring) holds a random 256-bit session id and a random 256-bit key of that session's own;
// Redis holds, under a name derived from the id, the session sealed with AES-256-GCM
// under that key. Neither a dump of Redis nor the key ring alone reveals a token.
//
// A session lives in Redis for min(remaining absolute lifetime, idle timeout), extended
// on use at most once a minute. Delete removes it; EndSessions removes every session of a
// provider session (sid) or user (sub), for back-channel logout.
type RedisStore struct {
	r        *Redis
	codec    *codec
	names    CookieNames
	attrs    cookieAttrs
	lifetime time.Duration
	idle     time.Duration
	now      func() time.Time
	coord    *Coordinator
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a RedisStore keeping sessions in r.
func NewRedisStore(r *Redis, opts RedisStoreOptions) (*RedisStore, error) {
	if r == nil {
		return nil, errors.New("session: redis store: no Redis")
	}
	if !validPrefix(opts.Prefix) {
		return nil, errors.New("session: redis store: prefix may hold only letters, digits, '-' and '_' (at most 32)")
	}
	lifetime, idle := opts.Lifetime, opts.IdleTimeout
	if lifetime == 0 {
		lifetime = DefaultLifetime
	}
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	if lifetime < 0 || idle < 0 {
		return nil, errors.New("session: redis store: lifetime and idle timeout must be positive")
	}
	c, err := newCodec(opts.Keys, lifetime+timestampSlack)
	if err != nil {
		return nil, fmt.Errorf("session: redis store: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &RedisStore{
		r:        r,
		codec:    c,
		names:    NewCookieNames(opts.Prefix, opts.Insecure),
		attrs:    cookieAttrs{secure: !opts.Insecure, sameSite: http.SameSiteStrictMode},
		lifetime: lifetime,
		idle:     idle,
		now:      now,
		coord:    opts.Coordinator,
	}, nil
}

// Names returns the store's cookie names; the session cookie is Names().Session.
func (s *RedisStore) Names() CookieNames { return s.names }

// ticket is what the session cookie holds.
type ticket struct {
	ID     string // the session id (Session.ID)
	Key    string // 32 random bytes: the AES-256 key that seals the session in Redis
	Expiry time.Time
}

// Payload kinds of the Redis store, beyond binary.go's.
const (
	kindTicket      = 't'
	kindRedisRecord = 'R'
)

func (p *ticket) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, formatV1, kindTicket)
	b = appendString(b, p.ID)
	b = appendString(b, p.Key)
	return appendTime(b, p.Expiry), nil
}

func (p *ticket) UnmarshalBinary(data []byte) error {
	d := newDecoder(data, kindTicket)
	p.ID = d.string()
	p.Key = d.string()
	p.Expiry = d.time()
	if err := d.finish(); err != nil {
		return err
	}
	if p.ID == "" || len(p.Key) != keySize {
		return fmt.Errorf("%w: bad ticket", errMalformed)
	}
	return nil
}

// record is what Redis holds of a session (sealed): everything but its id.
type record Session

func (p *record) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, formatV1, kindRedisRecord)
	b = appendString(b, p.Subject)
	b = appendString(b, p.SID)
	b = appendString(b, p.Name)
	b = appendString(b, p.Email)
	b = appendString(b, p.IDToken)
	b = appendString(b, p.AccessToken)
	b = appendTime(b, p.AccessIssued)
	b = appendTime(b, p.AccessExpiry)
	b = appendString(b, p.RefreshToken)
	b = appendTime(b, p.Expiry)
	return appendOptional(b, p.TokenType), nil
}

func (p *record) UnmarshalBinary(data []byte) error {
	d := newDecoder(data, kindRedisRecord)
	p.Subject = d.string()
	p.SID = d.string()
	p.Name = d.string()
	p.Email = d.string()
	p.IDToken = d.string()
	p.AccessToken = d.string()
	p.AccessIssued = d.time()
	p.AccessExpiry = d.time()
	p.RefreshToken = d.string()
	p.Expiry = d.time()
	p.TokenType = d.optional()
	return d.finish()
}

// sealRecord seals s under key: nonce || AES-256-GCM(record), with the Redis key name as
// additional data, so that a value cannot be moved to another session's name.
func sealRecord(key []byte, name string, s *Session) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	plain, _ := (*record)(s).AppendBinary(make([]byte, 0, 128+len(s.IDToken)+len(s.AccessToken)+len(s.RefreshToken)))
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	_, _ = rand.Read(out)
	return aead.Seal(out, out, plain, []byte(name)), nil
}

func openRecord(key []byte, name string, sealed []byte, dst *Session) error {
	aead, err := newGCM(key)
	if err != nil {
		return err
	}
	if len(sealed) < aead.NonceSize() {
		return errors.New("sealed session too short")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(name))
	if err != nil {
		return errors.New("sealed session does not open")
	}
	return (*record)(dst).UnmarshalBinary(plain)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return cipher.NewGCM(block)
}

func (s *RedisStore) sessionKey(id string) string { return s.r.key("session", id) }

// member is a session's entry in the sid and sub indexes: the hash part of its key.
func (s *RedisStore) member(sessionKey string) string {
	return sessionKey[len(s.r.prefix)+len("session:"):]
}

// carriedTicket opens the session cookie the request carries. Two copies that differ
// (a planted cookie beside ours) are no session.
func (s *RedisStore) carriedTicket(r *http.Request) (*ticket, error) {
	var had carried
	scanCookies(r.Header, func(name, value string) { had.add(s.names.Session, name, value) })
	values, err := had.candidates(s.names.Session)
	if err != nil {
		return nil, err
	}
	if len(values) == 0 {
		return nil, fmt.Errorf("session: load: %w: no session cookie", ErrNoSession)
	}
	var t *ticket
	for _, v := range values {
		var c ticket
		if err := s.codec.open(s.names.Session, v, &c); err != nil {
			return nil, err
		}
		if t != nil && (t.ID != c.ID || t.Key != c.Key) {
			return nil, fmt.Errorf("session: load: %w: session cookies of different sessions", ErrNoSession)
		}
		t = &c
	}
	return t, nil
}

// Load opens the session cookie and reads the session from Redis. A cookie that does not
// open, a session Redis no longer has (logged out, idle too long, ended by back-channel
// logout) or one past its absolute expiry is ErrNoSession; a Redis failure is
// ErrStoreUnavailable.
func (s *RedisStore) Load(ctx context.Context, r *http.Request) (*Session, error) {
	t, err := s.carriedTicket(r)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if !now.Before(t.Expiry) {
		return nil, fmt.Errorf("session: load: %w: session expired", ErrNoSession)
	}
	name := s.sessionKey(t.ID)
	ctx, cancel := s.r.opContext(ctx)
	defer cancel()
	// GET and PTTL in one round trip (a Lua script doing both costs the server about as
	// much again as the round trip itself).
	pipe := s.r.client.Pipeline()
	get := pipe.Get(ctx, name)
	left := pipe.PTTL(ctx, name)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.r.unavailable("load", err)
	}
	v, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("session: load: %w: not in Redis (ended or idle)", ErrNoSession)
	}
	if err != nil {
		return nil, s.r.unavailable("load", err)
	}
	// Extend the TTL on use, at most once a minute: only when that adds a minute or more.
	// PEXPIRE never creates a key, so a session deleted meanwhile stays deleted.
	if want := s.ttl(t.Expiry, now); left.Val() < 0 || want-left.Val() >= touchInterval {
		if err := s.r.client.PExpire(ctx, name, want).Err(); err != nil {
			s.r.failed("touch")
			s.r.log.WarnContext(ctx, "session: cannot extend the session's TTL", "err", err)
		}
	}
	sess := &Session{ID: t.ID}
	if err := openRecord([]byte(t.Key), name, v, sess); err != nil {
		return nil, fmt.Errorf("session: load: %w: %w", ErrNoSession, err)
	}
	if sess.Expired(now) {
		return nil, fmt.Errorf("session: load: %w: session expired", ErrNoSession)
	}
	return sess, nil
}

// ttl is how long a session lives in Redis from now: min(remaining lifetime, idle).
func (s *RedisStore) ttl(expiry, now time.Time) time.Duration {
	return max(min(expiry.Sub(now), s.idle), time.Second)
}

// Save writes sess to Redis and returns the session cookie. A request that carries the
// cookie of the same session keeps its key, and the write then only replaces a session
// Redis still has: a refresh that finishes after a logout or back-channel logout cannot
// bring the session back (ErrNoSession). Any other request gets a fresh key; the session
// its cookie named, if any, is deleted.
func (s *RedisStore) Save(ctx context.Context, r *http.Request, sess *Session) ([]*http.Cookie, error) {
	if sess == nil || sess.ID == "" {
		return nil, errors.New("session: save: session without an id")
	}
	now := s.now()
	t := &ticket{ID: sess.ID, Expiry: sess.Expiry}
	replace := false
	var old string
	if had, err := s.carriedTicket(r); err == nil {
		if had.ID == sess.ID {
			t.Key, replace = had.Key, true
		} else {
			old = s.sessionKey(had.ID)
		}
	}
	if t.Key == "" {
		k := make([]byte, keySize)
		_, _ = rand.Read(k)
		t.Key = string(k)
	}
	cookie, err := s.codec.seal(s.names.Session, t)
	if err != nil {
		return nil, err
	}
	if len(s.names.Session)+len(cookie) > maxCookieSize {
		return nil, fmt.Errorf("session: save: session cookie of %d bytes is too large", len(cookie))
	}
	name := s.sessionKey(sess.ID)
	sealed, err := sealRecord([]byte(t.Key), name, sess)
	if err != nil {
		return nil, err
	}

	ctx, cancel := s.r.opContext(ctx)
	defer cancel()
	ttl := s.ttl(sess.Expiry, now)
	pipe := s.r.client.Pipeline()
	var set *redis.StatusCmd
	if replace {
		set = pipe.SetArgs(ctx, name, sealed, redis.SetArgs{Mode: "XX", TTL: ttl})
	} else {
		set = pipe.Set(ctx, name, sealed, ttl)
	}
	s.index(ctx, pipe, "sid", sess.SID, name, sess.Expiry, now)
	s.index(ctx, pipe, "sub", sess.Subject, name, sess.Expiry, now)
	if old != "" && old != name {
		pipe.Del(ctx, old)
	}
	_, err = pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.r.unavailable("save", err)
	}
	if errors.Is(set.Err(), redis.Nil) {
		return nil, fmt.Errorf("session: save: %w: the session ended meanwhile", ErrNoSession)
	}
	return []*http.Cookie{s.attrs.cookie(s.names.Session, cookie, "/", maxAgeSeconds(sess.Expiry, now))}, nil
}

// index adds the session named name to the index of kind (sid or sub) for value: a
// sorted set scored by the session's expiry, pruned of expired members on each write,
// living as long as the longest session could.
func (s *RedisStore) index(ctx context.Context, pipe redis.Pipeliner, kind, value, name string, expiry, now time.Time) {
	if value == "" {
		return
	}
	idx := s.r.key(kind, value)
	pipe.ZAdd(ctx, idx, redis.Z{Score: float64(expiry.UnixMilli()), Member: s.member(name)})
	pipe.ZRemRangeByScore(ctx, idx, "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
	pipe.PExpire(ctx, idx, s.lifetime+time.Minute)
}

// Delete removes the session from Redis and returns the deletion of its cookie. sess may
// be nil: the session the cookie names is deleted all the same. A Redis failure is
// returned (wrapping ErrStoreUnavailable) together with the cookie's deletion, which the
// response must carry whatever happened: without its cookie nobody can open the
// session, and Redis drops it within the idle timeout.
func (s *RedisStore) Delete(ctx context.Context, r *http.Request, sess *Session) (_ []*http.Cookie, err error) {
	del := []*http.Cookie{s.attrs.deletion(s.names.Session, "/")}
	var names []string
	if sess != nil && sess.ID != "" {
		names = append(names, s.sessionKey(sess.ID))
	}
	if t, err := s.carriedTicket(r); err == nil && (sess == nil || t.ID != sess.ID) {
		names = append(names, s.sessionKey(t.ID))
	}
	if sess != nil && s.coord != nil {
		fctx := ctx // not the operation's context below, cancelled before this runs
		defer func() {
			if ferr := s.coord.Forget(fctx, sess.RefreshToken); ferr != nil && err == nil {
				err = fmt.Errorf("session: delete: %w", ferr)
			}
		}()
	}
	if len(names) == 0 {
		return del, nil
	}
	ctx, cancel := s.r.opContext(ctx)
	defer cancel()
	pipe := s.r.client.Pipeline()
	for _, n := range names {
		pipe.Del(ctx, n)
		if sess != nil {
			if sess.SID != "" {
				pipe.ZRem(ctx, s.r.key("sid", sess.SID), s.member(n))
			}
			if sess.Subject != "" {
				pipe.ZRem(ctx, s.r.key("sub", sess.Subject), s.member(n))
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return del, s.r.unavailable("delete", err)
	}
	return del, nil
}

// EndSessions ends every session of the provider session sid or, when sid is empty, of
// the user sub (back-channel logout). The sessions are deleted from Redis, so every
// replica sees them gone at once; at is unused (every session in Redis began before).
// Errors wrap ErrStoreUnavailable.
func (s *RedisStore) EndSessions(ctx context.Context, sid, sub string, at time.Time) (int, error) {
	idx := ""
	switch {
	case sid != "":
		idx = s.r.key("sid", sid)
	case sub != "":
		idx = s.r.key("sub", sub)
	default:
		return 0, errors.New("session: end sessions: neither sid nor sub")
	}
	ctx, cancel := s.r.opContext(ctx)
	defer cancel()
	members, err := s.r.client.ZRange(ctx, idx, 0, -1).Result()
	if err != nil {
		return 0, s.r.unavailable("end_sessions", err)
	}
	// One DEL per key: in a Cluster, the sessions live in different hash slots.
	pipe := s.r.client.Pipeline()
	dels := make([]*redis.IntCmd, len(members))
	for i, m := range members {
		dels[i] = pipe.Del(ctx, s.r.prefix+"session:"+m)
	}
	pipe.Del(ctx, idx)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, s.r.unavailable("end_sessions", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}

// ClaimLogoutToken records a logout token's id; see Redis.ClaimLogoutToken.
func (s *RedisStore) ClaimLogoutToken(ctx context.Context, issuer, jti string, ttl time.Duration) (bool, error) {
	return s.r.ClaimLogoutToken(ctx, issuer, jti, ttl)
}

// ReleaseLogoutToken forgets a claimed logout token; see Redis.ReleaseLogoutToken.
func (s *RedisStore) ReleaseLogoutToken(ctx context.Context, issuer, jti string) error {
	return s.r.ReleaseLogoutToken(ctx, issuer, jti)
}
