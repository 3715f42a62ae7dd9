package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DenyListOptions configure a DenyList.
type DenyListOptions struct {
	// Lifetime is session.lifetime: an entry is kept this long, after which every
	// session it could end has expired anyway. It also dates a session's start
	// (its expiry less Lifetime). Zero means 12h.
	Lifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// MaxLocal bounds the session ids (EndSession) the local copy holds; beyond it, the
	// entries that end soonest are not kept (the oldest logouts' cookies would work
	// again until their expiry). Zero means DefaultMaxEnded.
	MaxLocal int
	// ReloadInterval is how often the local copy is loaded in full from Redis, beside
	// the loads at start and after each reconnection: an entry whose pub/sub message was
	// lost (the subscription's buffer overflowed, a message dropped in between) takes
	// effect within it. Zero means DefaultDenyReload; negative turns it off.
	ReloadInterval time.Duration
	// OnReload, when set, is told the outcome of each periodic reload (for metrics and
	// tests). nil: nobody.
	OnReload func(error)
}

// DefaultDenyReload is DenyListOptions.ReloadInterval when zero.
const DefaultDenyReload = 30 * time.Second

// DefaultMaxEnded is DenyListOptions.MaxLocal when zero: about 20 MB of session ids.
const DefaultMaxEnded = 1 << 17

// DenyList records the sessions that ended while copies of their cookies may still be
// around, for the cookie store, whose sessions live in the browser and cannot be deleted
// from the server: those that back-channel logout ended (EndSessions) and those that
// logout ended (EndSession). With Redis, the entries live there, shared by every replica;
// each replica keeps a local copy, loaded in full at start, after every reconnection and
// every ReloadInterval, and kept current through pub/sub, so that checking a request
// (Ended) costs no Redis round trip. Without Redis (NewLocalDenyList) the entries live in
// this process only.
//
// An entry for a provider session (sid) ends every session of it; an entry for a user
// (sub) ends that user's sessions that began before the logout, so a later sign-in works;
// an entry for a session id ends that session until its expiry.
type DenyList struct {
	r        *Redis
	key      string
	lifetime time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu        sync.RWMutex
	sids      map[string]time.Time // sid -> until
	subs      map[string]denySub
	ids       map[string]time.Time // hex SHA-256(session id) -> until (the session's expiry)
	maxIDs    int
	entries   atomic.Int64 // len(sids)+len(subs)+len(ids): Ended's fast path when nothing is denied
	nextSweep time.Time
}

type denySub struct {
	at, until time.Time // sessions of sub that began at or before at end; kept until until
}

// NewLocalDenyList returns a DenyList for one process (no redis.url): EndSession records
// in this process only, within opts.MaxLocal entries.
func NewLocalDenyList(opts DenyListOptions) *DenyList {
	d := newDenyList(opts)
	if d.log == nil {
		d.log = slog.Default()
	}
	return d
}

func newDenyList(opts DenyListOptions) *DenyList {
	d := &DenyList{
		lifetime: opts.Lifetime,
		now:      opts.Now,
		log:      opts.Logger,
		sids:     map[string]time.Time{},
		subs:     map[string]denySub{},
		ids:      map[string]time.Time{},
		maxIDs:   opts.MaxLocal,
	}
	if d.lifetime <= 0 {
		d.lifetime = DefaultLifetime
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.maxIDs <= 0 {
		d.maxIDs = DefaultMaxEnded
	}
	return d
}

// NewDenyList returns a DenyList shared through r and loads it (waiting at most r's
// operation timeout; if Redis cannot be reached, the load happens once it can).
func NewDenyList(r *Redis, opts DenyListOptions) *DenyList {
	d := newDenyList(opts)
	d.r, d.key = r, r.prefix+"deny"
	if d.log == nil {
		d.log = r.log
	}
	r.subscribeDeny(d.apply, func() {
		if err := d.Reload(context.Background()); err != nil {
			d.log.Warn("session: cannot load the back-channel logout deny list; retrying on reconnection", "err", err)
		}
	})
	if err := d.Reload(context.Background()); err != nil {
		d.log.Warn("session: cannot load the back-channel logout deny list yet", "err", err)
	}
	interval := opts.ReloadInterval
	if interval == 0 {
		interval = DefaultDenyReload
	}
	if interval > 0 {
		go d.reloadEvery(interval, opts.OnReload)
	}
	return d
}

// reloadEvery reloads the local copy every interval until r is closed.
func (d *DenyList) reloadEvery(interval time.Duration, onReload func(error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-d.r.done:
			return
		case <-tick.C:
		}
		err := d.Reload(context.Background())
		if err != nil {
			d.log.Warn("session: cannot reload the deny list; retrying", "err", err)
		}
		if onReload != nil {
			onReload(err)
		}
	}
}

// Ended reports whether logout or back-channel logout ended s. It never touches Redis.
func (d *DenyList) Ended(s *Session) bool {
	if d.entries.Load() == 0 || s == nil {
		return false
	}
	now := d.now()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if len(d.ids) > 0 && s.ID != "" {
		if until, ok := d.ids[hashID(s.ID)]; ok && now.Before(until) {
			return true
		}
	}
	if s.SID != "" {
		if until, ok := d.sids[s.SID]; ok && now.Before(until) {
			return true
		}
	}
	if e, ok := d.subs[s.Subject]; ok && s.Subject != "" && now.Before(e.until) {
		began := s.Expiry.Add(-d.lifetime)
		return !began.After(e.at)
	}
	return false
}

// EndSessions records that the sessions of the provider session sid end or, when sid is
// empty, the sessions of the user sub that began at or before at. The entry is kept for
// the session lifetime and published to every replica; this one applies it at once. The
// count returned is always 0: cookie sessions cannot be counted. Errors wrap
// ErrStoreUnavailable.
func (d *DenyList) EndSessions(ctx context.Context, sid, sub string, at time.Time) (int, error) {
	var member string
	switch {
	case sid != "":
		member = denyMember("sid", at, sid)
	case sub != "":
		member = denyMember("sub", at, sub)
	default:
		return 0, errors.New("session: end sessions: neither sid nor sub")
	}
	if d.r == nil {
		d.apply(member)
		return 0, nil
	}
	now := d.now()
	ctx, cancel := d.r.opContext(ctx)
	defer cancel()
	pipe := d.r.client.Pipeline()
	pipe.ZAdd(ctx, d.key, redis.Z{Score: float64(at.Add(d.lifetime).UnixMilli()), Member: member})
	pipe.ZRemRangeByScore(ctx, d.key, "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
	pipe.PExpire(ctx, d.key, d.lifetime+time.Minute)
	pipe.Publish(ctx, d.r.denyChannel, member)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, d.r.unavailable("deny", err)
	}
	d.apply(member)
	return 0, nil
}

// EndSession records that the session s ended (a logout) until its absolute expiry, so
// that copies of its cookies no longer open: in Redis, published to every replica, when
// the list has one, and in this process. Errors wrap ErrStoreUnavailable; the entry is
// then recorded in this process only.
func (d *DenyList) EndSession(ctx context.Context, s *Session) error {
	if s == nil || s.ID == "" {
		return nil
	}
	now := d.now()
	if !now.Before(s.Expiry) {
		return nil // over anyway
	}
	// The entry's time is the session's start, so that it is kept until its expiry.
	member := denyMember("id", s.Expiry.Add(-d.lifetime), hashID(s.ID))
	d.apply(member)
	if d.r == nil {
		return nil
	}
	ctx, cancel := d.r.opContext(ctx)
	defer cancel()
	pipe := d.r.client.Pipeline()
	pipe.ZAdd(ctx, d.key, redis.Z{Score: float64(s.Expiry.UnixMilli()), Member: member})
	pipe.ZRemRangeByScore(ctx, d.key, "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
	pipe.PExpire(ctx, d.key, d.lifetime+time.Minute)
	pipe.Publish(ctx, d.r.denyChannel, member)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("session: end session: %w", d.r.unavailable("deny", err))
	}
	return nil
}

// hashID is how a session id is kept in the deny list: hex SHA-256, so that neither
// Redis nor a dump of it holds a live session's id.
func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// denyMember is an entry of the deny set: "sid|sub <unix ms> <value>", the value last
// since it may hold any character.
func denyMember(kind string, at time.Time, value string) string {
	return kind + " " + strconv.FormatInt(at.UnixMilli(), 10) + " " + value
}

// apply adds one entry (as published or loaded) to the local copy.
func (d *DenyList) apply(member string) {
	kind, rest, ok := strings.Cut(member, " ")
	ms, value, ok2 := strings.Cut(rest, " ")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || !ok2 || err != nil || value == "" {
		d.log.Warn("session: ignoring a malformed deny entry")
		return
	}
	at := time.UnixMilli(n)
	until := at.Add(d.lifetime)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch kind {
	case "sid":
		if until.After(d.sids[value]) {
			d.sids[value] = until
		}
	case "id":
		if until.After(d.ids[value]) {
			if _, ok := d.ids[value]; !ok && len(d.ids) >= d.maxIDs {
				d.sweep(d.now())
				d.evictID()
			}
			d.ids[value] = until
		}
	case "sub":
		e := d.subs[value]
		if at.After(e.at) {
			e.at = at
		}
		if until.After(e.until) {
			e.until = until
		}
		d.subs[value] = e
	default:
		d.log.Warn("session: ignoring a deny entry of an unknown kind")
		return
	}
	if now := d.now(); !now.Before(d.nextSweep) {
		d.sweep(now)
		d.nextSweep = now.Add(time.Minute)
	}
	d.entries.Store(int64(len(d.sids) + len(d.subs) + len(d.ids)))
}

// evictID makes room for one session id when the local copy holds maxIDs: it drops the
// entry that ends soonest (a scan, only when full); d.mu is held.
func (d *DenyList) evictID() {
	if len(d.ids) < d.maxIDs {
		return
	}
	var first string
	var soonest time.Time
	for k, until := range d.ids {
		if first == "" || until.Before(soonest) {
			first, soonest = k, until
		}
	}
	delete(d.ids, first)
}

// sweep drops the entries that have expired; d.mu is held.
func (d *DenyList) sweep(now time.Time) {
	for k, until := range d.sids {
		if !now.Before(until) {
			delete(d.sids, k)
		}
	}
	for k, e := range d.subs {
		if !now.Before(e.until) {
			delete(d.subs, k)
		}
	}
	for k, until := range d.ids {
		if !now.Before(until) {
			delete(d.ids, k)
		}
	}
}

// Reload loads every live entry from Redis into the local copy (added to it: an entry
// published meanwhile is not lost) and drops the local entries that have expired.
func (d *DenyList) Reload(ctx context.Context) error {
	if d.r == nil {
		return nil
	}
	now := d.now()
	ctx, cancel := d.r.opContext(ctx)
	defer cancel()
	members, err := d.r.client.ZRangeByScore(ctx, d.key, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return fmt.Errorf("session: load deny list: %w", d.r.unavailable("load_deny", err))
	}
	for _, m := range members {
		d.apply(m)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sweep(now)
	d.entries.Store(int64(len(d.sids) + len(d.subs) + len(d.ids)))
	return nil
}

// Len returns the number of entries in the local copy.
func (d *DenyList) Len() int { return int(d.entries.Load()) }

// ClaimLogoutToken records a logout token's id; see Redis.ClaimLogoutToken.
func (d *DenyList) ClaimLogoutToken(ctx context.Context, issuer, jti string, ttl time.Duration) (bool, error) {
	if d.r == nil {
		return false, errors.New("session: claim logout token: the deny list has no Redis")
	}
	return d.r.ClaimLogoutToken(ctx, issuer, jti, ttl)
}

// ReleaseLogoutToken forgets a claimed logout token; see Redis.ReleaseLogoutToken.
func (d *DenyList) ReleaseLogoutToken(ctx context.Context, issuer, jti string) error {
	if d.r == nil {
		return nil
	}
	return d.r.ReleaseLogoutToken(ctx, issuer, jti)
}
