package session

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The rotation grace entry maps a spent refresh token to the tokens its refresh yielded, so
// that requests still in flight with the old cookie get the new tokens instead of
// replaying a spent refresh token. Its storage key and its sealing key are two separate
// HKDF derivations from the old refresh token: the store learns neither the token nor the
// tokens, and only a holder of the old refresh token can find and open the entry.

const (
	graceLookupInfo = "tokenhandler rotation-grace lookup v1"
	graceSealInfo   = "tokenhandler rotation-grace seal v1"
	graceLinkInfo   = "tokenhandler rotation-grace link v1"
)

// graceLink is the key under which the lookup of a grace entry is found from the refresh
// token its refresh yielded (a third HKDF derivation, from the new token): logout knows
// only the session's current refresh token, and must delete the entry of the rotation
// that produced it. The link's value is the spent token's flight key and grace lookup key
// (flightKey, graceKeys.lookup), which reveal neither token; it lives as long as the
// entry.
func graceLink(refreshToken string) (string, error) {
	k, err := hkdf.Key(sha256.New, []byte(refreshToken), nil, graceLinkInfo, 32)
	if err != nil {
		return "", fmt.Errorf("session: grace link: %w", err)
	}
	return "link:" + hex.EncodeToString(k), nil
}

// graceStore keeps sealed grace entries. The in-process memGrace is the default; a Redis
// implementation shares them across replicas. get returns nil, nil for a missing or
// expired entry.
type graceStore interface {
	get(ctx context.Context, key string) ([]byte, error)
	put(ctx context.Context, key string, sealed []byte, ttl time.Duration) error
	del(ctx context.Context, key string) error
}

// graceKeys are the two derivations from one refresh token.
type graceKeys struct {
	lookup string // hex; the storage key
	seal   []byte // AES-256-GCM key
}

func deriveGraceKeys(refreshToken string) (graceKeys, error) {
	lookup, err := hkdf.Key(sha256.New, []byte(refreshToken), nil, graceLookupInfo, 32)
	if err != nil {
		return graceKeys{}, fmt.Errorf("session: grace key: %w", err)
	}
	seal, err := hkdf.Key(sha256.New, []byte(refreshToken), nil, graceSealInfo, 32)
	if err != nil {
		return graceKeys{}, fmt.Errorf("session: grace key: %w", err)
	}
	return graceKeys{lookup: hex.EncodeToString(lookup), seal: seal}, nil
}

// flightKey is the key of one refresh in flight: hex(SHA-256(refresh token)). The
// in-process single-flight and a lease lock use it.
func flightKey(refreshToken string) string {
	h := sha256.Sum256([]byte(refreshToken))
	return hex.EncodeToString(h[:])
}

func (k graceKeys) aead() (cipher.AEAD, error) {
	block, err := aes.NewCipher(k.seal)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealTokens seals t under k: nonce || AES-256-GCM(t), with the lookup key as additional
// data so an entry cannot be moved to another key.
func sealTokens(k graceKeys, t *Tokens) ([]byte, error) {
	aead, err := k.aead()
	if err != nil {
		return nil, fmt.Errorf("session: seal grace entry: %w", err)
	}
	plain, _ := (*gracePayload)(t).AppendBinary(make([]byte, 0, 64+len(t.AccessToken)+len(t.RefreshToken)+len(t.IDToken)))
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	_, _ = rand.Read(out)
	return aead.Seal(out, out, plain, []byte(k.lookup)), nil
}

var errGraceOpen = errors.New("session: grace entry does not open")

// openTokens opens an entry sealed by sealTokens under k.
func openTokens(k graceKeys, sealed []byte) (*Tokens, error) {
	aead, err := k.aead()
	if err != nil {
		return nil, fmt.Errorf("session: open grace entry: %w", err)
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errGraceOpen
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(k.lookup))
	if err != nil {
		return nil, errGraceOpen
	}
	var p gracePayload
	if err := p.UnmarshalBinary(plain); err != nil {
		return nil, fmt.Errorf("%w: %w", errGraceOpen, err)
	}
	t := Tokens(p)
	return &t, nil
}

// memGrace is the in-process graceStore: an expiring map bounded in bytes. Entries are
// also queued in the order they were put; a put first drops the queue's expired head and
// then, while the new entry would not fit in maxBytes, the oldest entries (a lost grace
// entry costs a refresh, not a session). An entry deleted or replaced stays counted
// until its queue item reaches the head, so the budget bounds the queue too.
type memGrace struct {
	now      func() time.Time
	maxBytes int

	mu    sync.Mutex
	m     map[string]memGraceEntry
	queue []memGraceItem // oldest first, from head
	head  int
	bytes int // the sizes of queue[head:]
	seq   uint64
}

type memGraceEntry struct {
	sealed  []byte
	expires time.Time
	seq     uint64 // the queue item that accounts for this entry
}

type memGraceItem struct {
	key     string
	seq     uint64
	expires time.Time
	size    int
}

const (
	// DefaultGraceMemory bounds the in-process grace entries in bytes when
	// CoordinatorOptions.GraceMemory is zero: at 2 KB of tokens per entry, some 13 000
	// rotations within one grace window.
	DefaultGraceMemory = 32 << 20
	// memGraceOverhead approximates what an entry costs beyond its key and sealed bytes:
	// the map's and the queue's share, the entry itself.
	memGraceOverhead = 128
)

func newMemGrace(now func() time.Time) *memGrace {
	return &memGrace{now: now, maxBytes: DefaultGraceMemory, m: make(map[string]memGraceEntry)}
}

func (g *memGrace) get(_ context.Context, key string) ([]byte, error) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.m[key]
	if !ok {
		return nil, nil
	}
	if !now.Before(e.expires) {
		delete(g.m, key)
		return nil, nil
	}
	return e.sealed, nil
}

// put stores sealed under key for ttl. An entry larger than the whole budget is not kept.
func (g *memGrace) put(_ context.Context, key string, sealed []byte, ttl time.Duration) error {
	now := g.now()
	size := len(key) + len(sealed) + memGraceOverhead
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.head < len(g.queue) {
		it := g.queue[g.head]
		if now.Before(it.expires) && g.bytes+size <= g.maxBytes {
			break
		}
		if e, ok := g.m[it.key]; ok && e.seq == it.seq {
			delete(g.m, it.key)
		}
		g.queue[g.head] = memGraceItem{}
		g.head++
		g.bytes -= it.size
	}
	if g.head > 64 && g.head > len(g.queue)/2 {
		n := copy(g.queue, g.queue[g.head:])
		clear(g.queue[n:])
		g.queue, g.head = g.queue[:n], 0
	}
	if size > g.maxBytes {
		return nil
	}
	g.seq++
	expires := now.Add(ttl)
	g.m[key] = memGraceEntry{sealed: sealed, expires: expires, seq: g.seq}
	g.queue = append(g.queue, memGraceItem{key: key, seq: g.seq, expires: expires, size: size})
	g.bytes += size
	return nil
}

// del forgets key's entry (its bytes stay counted until its queue item is dropped).
func (g *memGrace) del(_ context.Context, key string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m, key)
	return nil
}

func (g *memGrace) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}
