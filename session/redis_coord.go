package session

import (
	"context"
	"crypto/rand"
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

// Refresh coordination across replicas. Per refresh token being spent (its SHA-256, the
// flight key), Redis holds a lease lock and, once the refresh is done, the rotation grace
// entry, both under the hash tag {flight key} so that the scripts below touch one hash
// slot. A replica that finds the lock taken waits for the holder's notification on the
// events:refresh channel ("<flight key> <outcome>", in the vocabulary of RefreshOutcome)
// or for the lease to lapse; it never polls.

// downBackoff: after Redis failed, flights skip it for this long (in this process only).
const downBackoff = time.Second

var errSharedUnavailable = errors.New("session: shared refresh coordination unavailable")

// acquireScript: the entry (a grace entry, a derived token) and its remaining TTL in ms
// if there is one; otherwise the lock, if free; otherwise the lock's remaining lease.
// KEYS: lock, entry. ARGV: owner token, lease in ms.
var acquireScript = redis.NewScript(`
local g = redis.call("GET", KEYS[2])
if g then return {"entry", g, tostring(redis.call("PTTL", KEYS[2]))} end
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return {"locked"} end
return {"taken", tostring(redis.call("PTTL", KEYS[1]))}
`)

// renewScript extends the lease if the lock is still the caller's. KEYS: lock. ARGV:
// owner token, lease in ms.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript writes the entry (when ARGV[2] is not empty), deletes the lock if it is
// still the caller's, and publishes the outcome. KEYS: lock, entry. ARGV: owner token,
// sealed entry, its TTL in ms, channel, message.
var releaseScript = redis.NewScript(`
if ARGV[2] ~= "" then
	redis.call("SET", KEYS[2], ARGV[2], "PX", ARGV[3])
end
local owned = redis.call("GET", KEYS[1]) == ARGV[1]
if owned then redis.call("DEL", KEYS[1]) end
redis.call("PUBLISH", ARGV[4], ARGV[5])
if owned then return 1 end
return 0
`)

// sharedRefresh is a Coordinator's Redis side.
type sharedRefresh struct {
	r     *Redis
	lease time.Duration
	grace time.Duration
	log   *slog.Logger

	down      atomic.Bool  // Redis failed last time (for logging the transitions)
	skipUntil atomic.Int64 // unix nanoseconds: flights do not try Redis before
}

// Lock and grace entry names of one flight: one hash slot.
func (s *sharedRefresh) names(flight string) (lock, grace string) {
	base := s.r.prefix + "refresh:{" + flight + "}:"
	return base + "lock", base + "grace"
}

// spend spends the refresh token of flight once across every replica (once, with the
// lock and grace entry of flight). With the tokens it returns how long they may still be
// handed out as the grace entry: what is left of the shared entry's TTL, or the full
// grace after its own call. errSharedUnavailable means Redis could not be asked before
// anything was spent; the caller then spends nothing.
func (s *sharedRefresh) spend(ctx context.Context, flight string, keys entryKeys, call func(context.Context) (*Tokens, error)) (*Tokens, time.Duration, error) {
	lock, grace := s.names(flight)
	var mine *Tokens
	sealed, left, err := s.once(ctx, flight, lock, grace, func(ctx context.Context) ([]byte, time.Duration, error) {
		t, err := call(ctx)
		if err != nil {
			return nil, 0, err
		}
		mine = t
		return sealTokens(keys, t), s.grace, nil
	})
	switch {
	case err != nil:
		return nil, 0, err
	case mine != nil:
		s.link(ctx, flight, keys, mine)
		return mine, s.grace, nil
	}
	t, err := openTokens(keys, sealed)
	if err != nil {
		return nil, 0, fmt.Errorf("session: refresh: %w: shared grace entry: %w", ErrIdPUnavailable, err)
	}
	return t, left, nil
}

// once runs call at most once at a time across every replica for flight, and shares
// what it yields: it returns the entry stored under entry if there is one (with its
// remaining TTL), or takes lock and runs call, storing the bytes call returns under entry
// for the TTL call gives (nothing when they are empty), or waits for the replica that
// holds lock (its "done" notification or the lease's lapse) and looks again. When call
// ran here, once returns what call returned. A waiter told that the holder's call failed
// gets the holder's error class (sharedError), without calling call. errSharedUnavailable
// means Redis could not be asked; call did not run.
func (s *sharedRefresh) once(ctx context.Context, flight, lock, entry string, call func(context.Context) ([]byte, time.Duration, error)) ([]byte, time.Duration, error) {
	if time.Now().UnixNano() < s.skipUntil.Load() {
		return nil, 0, errSharedUnavailable
	}
	// Listen before looking: a notification published in between is not lost.
	notes, stop := s.r.await(flight)
	defer stop()
	var owner [16]byte
	_, _ = rand.Read(owner[:])
	token := hex.EncodeToString(owner[:])
	for {
		kind, val, left, err := s.acquire(ctx, lock, entry, token)
		if err != nil {
			s.r.failed("lock")
			s.unreachable(ctx, err)
			return nil, 0, errSharedUnavailable
		}
		s.recovered(ctx)
		switch kind {
		case "entry":
			return []byte(val), left, nil
		case "locked":
			return s.hold(ctx, lock, entry, token, flight, call)
		}
		// Taken: wait for the holder's outcome or the lease's lapse, then look again.
		wait := s.lease
		if ms, err := strconv.ParseInt(val, 10, 64); err == nil && ms >= 0 {
			wait = time.Duration(ms) * time.Millisecond
		}
		timer := time.NewTimer(wait + 5*time.Millisecond)
		select {
		case outcome := <-notes:
			timer.Stop()
			if err := sharedError(outcome); err != nil {
				return nil, 0, fmt.Errorf("session: %w (at another replica)", err)
			}
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, 0, fmt.Errorf("session: %w: waiting for another replica: %w", ErrIdPUnavailable, ctx.Err())
		}
	}
}

// sharedError is the error a waiter returns for the outcome another replica published
// (RefreshOutcome's vocabulary): nil for success (the waiter looks again and finds the
// entry).
func sharedError(outcome string) error {
	switch outcome {
	case RefreshSuccess:
		return nil
	case RefreshDenied:
		return ErrRefreshDenied
	case RefreshIdPUnavailable:
		return ErrIdPUnavailable
	case RefreshTokenUnavailable:
		return ErrTokenUnavailable
	case RefreshSubjectRejected:
		return ErrSubjectRejected
	}
	return ErrIdPUnavailable
}

// acquire runs acquireScript: ("entry", the stored entry, its remaining TTL), ("locked",
// "") or ("taken", remaining lease in ms).
func (s *sharedRefresh) acquire(ctx context.Context, lock, entry, token string) (kind, val string, left time.Duration, err error) {
	ctx, cancel := s.r.opContext(ctx)
	defer cancel()
	res, err := acquireScript.Run(ctx, s.r.client, []string{lock, entry}, token, s.lease.Milliseconds()).StringSlice()
	if err != nil {
		return "", "", 0, err
	}
	switch {
	case len(res) == 3 && res[0] == "entry":
		// -1 (no TTL) cannot happen: the release script sets one. Keep it no longer
		// than a grace then.
		left = s.grace
		if ms, err := strconv.ParseInt(res[2], 10, 64); err == nil && ms >= 0 {
			left = time.Duration(ms) * time.Millisecond
		}
		return res[0], res[1], left, nil
	case len(res) == 2 && res[0] == "taken":
		return res[0], res[1], 0, nil
	case len(res) == 1 && res[0] == "locked":
		return "locked", "", 0, nil
	}
	return "", "", 0, fmt.Errorf("unexpected answer from the acquire script (%d values)", len(res))
}

// hold calls the provider while holding the lock, renewing its lease every lease/3 so
// that a slow provider does not let another replica in; then it writes the grace entry,
// publishes the outcome and releases the lock in one script.
func (s *sharedRefresh) hold(ctx context.Context, lock, entry, token, flight string, call func(context.Context) ([]byte, time.Duration, error)) ([]byte, time.Duration, error) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(s.lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			rctx, cancel := s.r.opContext(context.WithoutCancel(ctx))
			n, err := renewScript.Run(rctx, s.r.client, []string{lock}, token, s.lease.Milliseconds()).Int64()
			cancel()
			switch {
			case err != nil:
				s.r.failed("renew_lock")
				s.log.WarnContext(ctx, "session: cannot renew the lock's lease", "err", err)
			case n == 0:
				s.log.WarnContext(ctx, "session: the lock's lease lapsed while the provider call was in flight")
			}
		}
	}()
	val, ttl, err := call(ctx)
	close(stop)
	wg.Wait()

	stored := val
	if err != nil || ttl <= 0 {
		stored = nil
	}
	outcome := RefreshOutcome(err)
	release := func(ctx context.Context, ttl time.Duration) error {
		rctx, cancel := s.r.opContext(ctx)
		defer cancel()
		return releaseScript.Run(rctx, s.r.client, []string{lock, entry},
			token, stored, max(ttl.Milliseconds(), 1), s.r.refreshChannel, flight+" "+outcome).Err()
	}
	// The call may have used up ctx's time: the release gets its own.
	if rerr := release(context.WithoutCancel(ctx), ttl); rerr != nil {
		s.r.failed("release_lock")
		if stored == nil {
			s.log.WarnContext(ctx, "session: cannot publish an outcome to other replicas; they wait for the lease to lapse", "err", rerr)
		} else {
			// Redis failed between the provider's answer and this write (a master that
			// died mid-refresh): the other replicas still hold the spent refresh token
			// and would spend it again once Redis is back. Keep trying to store the
			// entry until then; they find it rather than replay the token.
			s.log.WarnContext(ctx, "session: cannot store the result for the other replicas; retrying until Redis answers", "err", rerr)
			go s.retryRelease(context.WithoutCancel(ctx), release, ttl)
		}
	}
	return val, ttl, err
}

// retryRelease calls release again every 100 ms until it succeeds or the entry's ttl has
// passed (then nobody needs it any more). The interval is short on purpose: once Redis is
// back, the other replicas spend the old refresh token as soon as the lock's lease has
// lapsed, and this write has to come first.
func (s *sharedRefresh) retryRelease(ctx context.Context, release func(context.Context, time.Duration) error, ttl time.Duration) {
	deadline := time.Now().Add(ttl)
	for {
		time.Sleep(100 * time.Millisecond) // pacing the attempts, not waiting for an event
		left := time.Until(deadline)
		if left <= 0 {
			s.log.WarnContext(ctx, "session: gave up storing a result for the other replicas: Redis did not answer within its lifetime")
			return
		}
		if err := release(ctx, left); err == nil {
			s.log.InfoContext(ctx, "session: stored a result for the other replicas once Redis answered again")
			return
		}
		s.r.failed("release_lock")
	}
}

// link writes the shared link from the new refresh token to the grace entry (see
// graceLink), with the entry's TTL; Coordinator.Forget follows it at logout. A failure is
// logged: only a logout's deletion of the entry is lost, the entry still lapses.
func (s *sharedRefresh) link(ctx context.Context, flight string, keys entryKeys, t *Tokens) {
	link, err := graceLink(t.RefreshToken)
	if err == nil {
		rctx, cancel := s.r.opContext(context.WithoutCancel(ctx))
		defer cancel()
		if err = s.r.client.Set(rctx, s.r.prefix+"refresh:"+link, flight+" "+keys.lookup, s.grace).Err(); err != nil {
			s.r.failed("grace_link")
		}
	}
	if err != nil {
		s.log.WarnContext(ctx, "session: cannot store the rotation grace entry's link", "err", err)
	}
}

// forget deletes the shared grace entry that link points to, and the link.
func (s *sharedRefresh) forget(ctx context.Context, link string) error {
	ctx, cancel := s.r.opContext(ctx)
	defer cancel()
	linkKey := s.r.prefix + "refresh:" + link
	v, err := s.r.client.Get(ctx, linkKey).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("session: forget grace entry: %w", s.r.unavailable("forget_grace", err))
	}
	flight, _, _ := strings.Cut(v, " ")
	_, grace := s.names(flight)
	// Two keys in two hash slots: two commands.
	if err := s.r.client.Del(ctx, grace).Err(); err != nil {
		return fmt.Errorf("session: forget grace entry: %w", s.r.unavailable("forget_grace", err))
	}
	if err := s.r.client.Del(ctx, linkKey).Err(); err != nil {
		return fmt.Errorf("session: forget grace entry: %w", s.r.unavailable("forget_grace", err))
	}
	return nil
}

func (s *sharedRefresh) unreachable(ctx context.Context, err error) {
	s.skipUntil.Store(time.Now().Add(downBackoff).UnixNano())
	if !s.down.Swap(true) {
		s.log.WarnContext(ctx, "session: Redis unreachable: refreshes wait for it (503) rather than risk spending a refresh token twice", "err", err)
	}
}

func (s *sharedRefresh) recovered(ctx context.Context) {
	if s.down.Swap(false) {
		s.log.InfoContext(ctx, "session: Redis reachable again: refresh coordination is shared across replicas")
	}
}
