package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// openCacheBytes bounds the memory of one codec's cache of opened cookies: about 2 800
// sessions' worth of cookies with 1.2 KB tokens.
const openCacheBytes = 8 << 20

// openCache remembers the plaintext of cookie values that opened: a browser sends the
// same cookies with every request until a refresh rewrites them, and verifying and
// decrypting a few KB of twice-base64 cookies is most of a proxied request's cost.
//
// Its key is a MAC of the cookie name and the whole sealed value: AES-GMAC under a key
// drawn at random for this cache and never used for anything else or shown to anyone, a
// keyed cryptographic hash that an attacker who cannot see its outputs collides with
// probability at most about (value length / 16) / 2^128 per try. (It runs at about
// 10 GB/s with AES-NI and PCLMULQDQ; SHA-256 with SHA-NI runs at under 2 GB/s and was
// half the cost of opening a request's session from the cache.) So an entry is found only
// for a byte-identical value under the same name: a value that differs in any byte
// (tampered, truncated, another session's, sealed under another name) misses and goes
// through securecookie's full check, which refuses it. Only values that passed that check
// are ever stored, so the cache holds nothing an attacker made up, and a hit answers
// exactly what securecookie would answer again, until the value's securecookie timestamp
// expires (read from the value itself; see sealedAt), after which the entry is ignored
// and the value is checked, and refused, in full. A codec's key ring never changes.
//
// Memory is bounded in bytes: two generations of entries, the older dropped whenever the
// newer fills half the budget; an entry found in the older generation moves to the newer,
// so the cookies in use stay.
type openCache struct {
	mac cipher.AEAD // AES-256-GCM used as GMAC: empty plaintext, the input as AAD

	mu        sync.Mutex
	limit     int // bytes per generation
	cur, prev map[cacheKey]cacheEntry
	curBytes  int
}

type cacheKey [16]byte

type cacheEntry struct {
	plain string
	until int64 // Unix seconds: valid while now <= until (securecookie's MaxAge rule)
}

// entryOverhead approximates what an entry costs beyond its plaintext: the key, the
// entry, the map's share.
const entryOverhead = 96

func newOpenCache(limit int) *openCache {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (it crashes the program instead)
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // cannot happen: the key is 32 bytes
	}
	mac, err := cipher.NewGCM(block)
	if err != nil {
		panic(err) // cannot happen: AES has 16-byte blocks
	}
	return &openCache{mac: mac, limit: limit / 2, cur: make(map[cacheKey]cacheEntry)}
}

// gmacNonce is the one nonce of the cache's GMAC. GMAC's tag is GHASH of the input under
// the secret H, masked with AES of the nonce: a fixed nonce leaves it a MAC whose tags
// are never shown to anyone.
var gmacNonce = make([]byte, 12)

// keyOf is the GMAC of name, a NUL (never in a cookie name) and the value, given whole
// or in pieces (the same key either way).
func (c *openCache) keyOf(name string, value ...string) cacheKey {
	bp := keyBuffers.Get().(*[]byte)
	b := append(append((*bp)[:0], name...), 0)
	for _, v := range value {
		b = append(b, v...)
	}
	// The tag goes to the buffer's spare room (after the input, not overlapping it).
	b = slices.Grow(b, len(cacheKey{}))
	var k cacheKey
	copy(k[:], c.mac.Seal(b[len(b):], gmacNonce, nil, b))
	*bp = b
	keyBuffers.Put(bp)
	return k
}

var keyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (c *openCache) get(k cacheKey, now int64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cur[k]
	if !ok {
		if e, ok = c.prev[k]; ok {
			delete(c.prev, k)
			c.add(k, e)
		}
	}
	if !ok || now > e.until {
		return "", false
	}
	return e.plain, true
}

func (c *openCache) put(k cacheKey, plain string, until int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[k]; ok {
		return
	}
	c.add(k, cacheEntry{plain: plain, until: until})
}

// add stores e in the newer generation, starting a new one when it is full.
func (c *openCache) add(k cacheKey, e cacheEntry) {
	size := len(e.plain) + entryOverhead
	if size > c.limit {
		return
	}
	if c.curBytes+size > c.limit {
		c.prev, c.cur, c.curBytes = c.cur, make(map[cacheKey]cacheEntry, len(c.cur)), 0
	}
	c.cur[k] = e
	c.curBytes += size
}

// sealedAt reads the securecookie timestamp (Unix seconds) at the start of a sealed
// value: base64url("<timestamp>|<value>|<mac>"). The first 16 characters decode to 12
// bytes, which hold a timestamp of up to 11 digits and its "|".
func sealedAt(value string) (int64, bool) {
	if len(value) < 16 {
		return 0, false
	}
	var head [12]byte
	if _, err := base64.URLEncoding.Decode(head[:], []byte(value[:16])); err != nil {
		return 0, false
	}
	end := strings.IndexByte(string(head[:]), '|')
	if end <= 0 || !allDigits(string(head[:end])) {
		return 0, false
	}
	ts, err := strconv.ParseInt(string(head[:end]), 10, 64)
	return ts, err == nil
}
