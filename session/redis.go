package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// What tokenhandler keeps in Redis, under RedisOptions.KeyPrefix (default "th:"):
//
//	session:<hex SHA-256(session id)>    a RedisStore session, AES-GCM sealed with the
//	                                     session's own key (only its cookie holds it)
//	sid:<hex SHA-256(sid)>, sub:<...>    sorted sets of session hashes by the provider's
//	                                     sid and by sub, for back-channel logout
//	refresh:{<hex SHA-256(rt)>}:lock     the lease lock of a refresh in flight
//	refresh:{<hex SHA-256(rt)>}:grace    the rotation grace entry, sealed under a key
//	                                     derived from the spent refresh token
//	refresh:link:<hex HKDF(new rt)>      the flight and lookup key of the grace entry
//	                                     that yielded a refresh token (for logout)
//	deny                                 sorted set of sessions ended by back-channel
//	                                     logout (sid, sub) or logout (session id
//	                                     hash), for the cookie store
//	jti:<hex SHA-256(iss, jti)>          logout tokens already used
//
// and publishes on the channels events:refresh (a refresh finished) and events:deny (a
// session was ended). Every multi-key script keeps its keys in one hash slot (the
// {...} hash tag), so a Redis Cluster serves all of it.

// DefaultKeyPrefix is RedisOptions.KeyPrefix when it is empty.
const DefaultKeyPrefix = "th:"

// DefaultRedisTimeout bounds one Redis operation when RedisOptions.Timeout is zero: an
// unreachable Redis turns into ErrStoreUnavailable within it, never a hanging request.
const DefaultRedisTimeout = time.Second

// RedisOptions configure a Redis.
type RedisOptions struct {
	// KeyPrefix starts every key and channel name (redis.key_prefix); "" means "th:".
	// Replicas that share sessions share the prefix.
	KeyPrefix string
	// Timeout bounds one operation, retries included; zero means DefaultRedisTimeout.
	Timeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// OnError, when set, is told of every failed Redis operation by a short name
	// ("load", "save", "lock", ...), for metrics. nil: nobody.
	OnError func(op string)
}

// Redis is one process's connection to the Redis that replicas share: the client, the
// key prefix, and the one pub/sub subscription that carries "refresh done" notifications
// and back-channel logouts to every replica. RedisStore, DenyList and a Coordinator with
// CoordinatorOptions.Redis use it. Close it when done; it does not close the client.
type Redis struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	onError func(op string)

	refreshChannel, denyChannel string

	pubsub *redis.PubSub
	done   chan struct{} // closed when the receive loop has ended
	ready  chan struct{} // closed at the first subscription
	once   sync.Once

	mu       sync.Mutex
	waiters  map[string][]chan string // flight key -> waiters for its outcome
	onDeny   []func(member string)
	onResubs []func() // called on every (re)subscription to the deny channel

	subscribed atomic.Bool
}

// NewRedis returns a Redis for client and subscribes to its channels; it waits up to
// opts.Timeout for the subscription (it keeps trying in the background if Redis is not
// reachable yet).
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	r := &Redis{
		client:  client,
		prefix:  opts.KeyPrefix,
		timeout: opts.Timeout,
		log:     opts.Logger,
		onError: opts.OnError,
		done:    make(chan struct{}),
		ready:   make(chan struct{}),
		waiters: make(map[string][]chan string),
	}
	if r.prefix == "" {
		r.prefix = DefaultKeyPrefix
	}
	if r.timeout <= 0 {
		r.timeout = DefaultRedisTimeout
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.refreshChannel = r.prefix + "events:refresh"
	r.denyChannel = r.prefix + "events:deny"
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	r.pubsub = client.Subscribe(ctx, r.refreshChannel, r.denyChannel)
	// go-redis reconnects and subscribes again by itself, and pings every second so that
	// a dead connection is noticed; each (re)subscription arrives as a *redis.Subscription.
	ch := r.pubsub.ChannelWithSubscriptions(
		redis.WithChannelHealthCheckInterval(time.Second),
		redis.WithChannelPingTimeout(r.timeout),
		redis.WithChannelSize(1024),
		redis.WithChannelSendTimeout(time.Second),
	)
	go r.receive(ch)
	select {
	case <-r.ready:
	case <-ctx.Done():
		r.log.Warn("session: Redis is not reachable yet; retrying in the background")
	}
	return r
}

// Close ends the subscription. It does not close the client.
func (r *Redis) Close() error {
	err := r.pubsub.Close()
	<-r.done
	if errors.Is(err, redis.ErrClosed) {
		return nil
	}
	return err
}

// Ping reports whether Redis answers, within the operation timeout. /readyz uses it.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return r.unavailable("ping", err)
	}
	return nil
}

func (r *Redis) receive(ch <-chan any) {
	defer close(r.done)
	for m := range ch {
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" || m.Channel != r.denyChannel {
				continue
			}
			if !r.subscribed.Swap(true) {
				r.log.Debug("session: subscribed to Redis events")
			}
			r.once.Do(func() { close(r.ready) })
			r.mu.Lock()
			hooks := append([]func(){}, r.onResubs...)
			r.mu.Unlock()
			// What was published while we were not subscribed is loaded in full.
			for _, h := range hooks {
				go h()
			}
		case *redis.Message:
			switch m.Channel {
			case r.refreshChannel:
				key, outcome, ok := strings.Cut(m.Payload, " ")
				if ok {
					r.notify(key, outcome)
				}
			case r.denyChannel:
				r.mu.Lock()
				hooks := append([]func(string){}, r.onDeny...)
				r.mu.Unlock()
				for _, h := range hooks {
					h(m.Payload)
				}
			}
		}
	}
}

// await registers interest in the outcome of the refresh flight key. The channel
// receives the outcome published by whichever replica held the lock; cancel
// unregisters.
func (r *Redis) await(key string) (<-chan string, func()) {
	ch := make(chan string, 1)
	r.mu.Lock()
	r.waiters[key] = append(r.waiters[key], ch)
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		list := r.waiters[key]
		for i, c := range list {
			if c == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(r.waiters, key)
		} else {
			r.waiters[key] = list
		}
	}
}

func (r *Redis) notify(key, outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range r.waiters[key] {
		select {
		case ch <- outcome:
		default:
		}
	}
}

// subscribeDeny registers the hooks of a DenyList: onMessage for each published deny
// entry, onResubscribe after each (re)subscription.
func (r *Redis) subscribeDeny(onMessage func(string), onResubscribe func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onDeny = append(r.onDeny, onMessage)
	r.onResubs = append(r.onResubs, onResubscribe)
}

// opContext bounds one operation.
func (r *Redis) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// key returns prefix + kind + ":" + hex(SHA-256(parts joined by NUL)): fixed-length key
// names whatever the input, with no character that could act as a hash tag.
func (r *Redis) key(kind string, parts ...string) string {
	h := sha256.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(p))
	}
	return r.prefix + kind + ":" + hex.EncodeToString(h.Sum(nil))
}

// jtiTTL is how long a logout token's jti is remembered: longer than the window in
// which its iat lets it be accepted at all.
const jtiTTL = 10 * time.Minute

// ClaimLogoutToken records the id of a logout token (issuer and jti) and reports whether
// it is new; false means it was seen before (a replay). It is remembered for at least
// ttl (at least 10 minutes). Errors wrap ErrStoreUnavailable.
func (r *Redis) ClaimLogoutToken(ctx context.Context, issuer, jti string, ttl time.Duration) (bool, error) {
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	ok, err := r.client.SetNX(ctx, r.key("jti", issuer, jti), "1", max(ttl, jtiTTL)).Result()
	if err != nil {
		return false, r.unavailable("claim_logout_token", err)
	}
	return ok, nil
}

// ReleaseLogoutToken forgets a logout token claimed by ClaimLogoutToken, so that the
// provider's retry is accepted when ending the sessions failed.
func (r *Redis) ReleaseLogoutToken(ctx context.Context, issuer, jti string) error {
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	if err := r.client.Del(ctx, r.key("jti", issuer, jti)).Err(); err != nil {
		return r.unavailable("release_logout_token", err)
	}
	return nil
}

// unavailable counts a failed operation and wraps its error as ErrStoreUnavailable.
func (r *Redis) unavailable(op string, err error) error {
	r.failed(op)
	return fmt.Errorf("session: redis %s: %w: %w", op, ErrStoreUnavailable, err)
}

// failed tells OnError of a failed operation.
func (r *Redis) failed(op string) {
	if r.onError != nil {
		r.onError(op)
	}
}
