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
// (flightKey, entryKeys.lookup), which reveal neither token; it lives as long as the
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

// entryKeys find and seal one shared entry (a rotation grace entry, a derived token): two
// separate HKDF derivations from a secret only the entry's holder has, so that the store
// learns neither the secret nor the entry.
type entryKeys struct {
	lookup string // hex; the storage key
	seal   []byte // AES-256-GCM key
}

// deriveEntryKeys derives the lookup and sealing keys of secret under two HKDF infos.
func deriveEntryKeys(secret, lookupInfo, sealInfo string) (entryKeys, error) {
	lookup, err := hkdf.Key(sha256.New, []byte(secret), nil, lookupInfo, 32)
	if err != nil {
		return entryKeys{}, fmt.Errorf("session: entry key: %w", err)
	}
	seal, err := hkdf.Key(sha256.New, []byte(secret), nil, sealInfo, 32)
	if err != nil {
		return entryKeys{}, fmt.Errorf("session: entry key: %w", err)
	}
	return entryKeys{lookup: hex.EncodeToString(lookup), seal: seal}, nil
}

func deriveGraceKeys(refreshToken string) (entryKeys, error) {
	return deriveEntryKeys(refreshToken, graceLookupInfo, graceSealInfo)
}

// flightKey is the key of one refresh in flight: hex(SHA-256(refresh token)). The
// in-process single-flight and a lease lock use it.
func flightKey(refreshToken string) string {
	h := sha256.Sum256([]byte(refreshToken))
	return hex.EncodeToString(h[:])
}

func (k entryKeys) aead() cipher.AEAD {
	block, _ := aes.NewCipher(k.seal) // a 32-byte key (HKDF): cannot fail
	aead, _ := cipher.NewGCM(block)
	return aead
}

// sealBytes seals plain under k: nonce || AES-256-GCM(plain), with the lookup key as
// additional data so that an entry cannot be moved to another key.
func (k entryKeys) sealBytes(plain []byte) []byte {
	aead := k.aead()
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	_, _ = rand.Read(out)
	return aead.Seal(out, out, plain, []byte(k.lookup))
}

var errEntryOpen = errors.New("session: shared entry does not open")

// openBytes opens what sealBytes sealed under k.
func (k entryKeys) openBytes(sealed []byte) ([]byte, error) {
	aead := k.aead()
	if len(sealed) < aead.NonceSize() {
		return nil, errEntryOpen
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(k.lookup))
	if err != nil {
		return nil, errEntryOpen
	}
	return plain, nil
}

// sealTokens seals t under k.
func sealTokens(k entryKeys, t *Tokens) []byte {
	plain, _ := (*gracePayload)(t).AppendBinary(make([]byte, 0, 64+len(t.AccessToken)+len(t.RefreshToken)+len(t.IDToken)))
	return k.sealBytes(plain)
}

// openTokens opens an entry sealed by sealTokens under k.
func openTokens(k entryKeys, sealed []byte) (*Tokens, error) {
	plain, err := k.openBytes(sealed)
	if err != nil {
		return nil, err
	}
	var p gracePayload
	if err := p.UnmarshalBinary(plain); err != nil {
		return nil, fmt.Errorf("%w: %w", errEntryOpen, err)
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
