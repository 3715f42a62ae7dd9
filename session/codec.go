package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/securecookie"
)

// Cookie size limits. Browsers keep name plus value of at least 4096 bytes per cookie; we
// stay at 4000 to leave room, and cut a longer sealed value into at most maxPieces pieces.
const (
	maxCookieSize = 4000
	maxPieces     = 4
	// maxSealed bounds a sealed value (securecookie's MaxLength): what maxPieces pieces hold.
	maxSealed = maxPieces * maxCookieSize
	// maxCopies bounds how many same-name copies of one cookie Load opens: one per refresh
	// path the request matches, in practice one or two.
	maxCopies = 8
	// timestampSlack is added to securecookie's MaxAge, so that a cookie sealed just before
	// its session's expiry is refused for its expiry, not for its timestamp.
	timestampSlack = time.Minute
)

// codec seals and opens cookie values under a key ring with securecookie: the first key
// pair seals, every pair opens, so keys rotate without logging anyone out.
//
// It remembers the cookies it opened (see openCache): a browser sends the same cookies
// with every request until they are rewritten, and opening them is most of what a
// proxied request costs.
type codec struct {
	codecs []securecookie.Codec
	maxAge int64 // securecookie's MaxAge, in seconds
	cache  *openCache
}

func newCodec(keys []KeyPair, maxAge time.Duration) (*codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("at least one key pair is required")
	}
	secs := max(int((maxAge+time.Second-1)/time.Second), 1)
	c := &codec{
		codecs: make([]securecookie.Codec, len(keys)),
		maxAge: int64(secs),
		cache:  newOpenCache(openCacheBytes),
	}
	for i, k := range keys {
		if err := k.validate(); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		sc := securecookie.New(k.Hash, k.Block)
		sc.MaxLength(maxSealed)
		sc.MaxAge(secs)
		sc.SetSerializer(binarySerializer{})
		c.codecs[i] = sc
	}
	return c, nil
}

// seal encodes v under name with the first key pair.
func (c *codec) seal(name string, v encoding.BinaryAppender) (string, error) {
	s, err := securecookie.EncodeMulti(name, v, c.codecs[0])
	if err != nil {
		return "", fmt.Errorf("session: seal %s: %w", name, err)
	}
	return s, nil
}

// open decodes value, sealed under name, into dst with whichever key pair opens it. Every
// error wraps ErrNoSession: a cookie that does not open is no session, whatever the cause.
//
// A value this codec opened before, under the same name, whose securecookie timestamp
// has not expired since, is decoded from the remembered plaintext instead of being
// verified and decrypted again; see openCache for why that is as safe.
func (c *codec) open(name, value string, dst encoding.BinaryUnmarshaler) error {
	if len(value) > maxSealed {
		return fmt.Errorf("session: open %s: %w: value too long", name, ErrNoSession)
	}
	var key cacheKey
	if c.cache != nil {
		key = c.cache.keyOf(name, value)
		if ok, err := c.cached(name, key, dst); ok {
			return err
		}
	}
	return c.decode(name, value, key, dst)
}

// openPieces is open for a value carried in pieces (NAME.0, NAME.1, ...), in order: a
// value opened before is found in the cache without joining its pieces.
func (c *codec) openPieces(name string, pieces []string, dst encoding.BinaryUnmarshaler) error {
	if len(pieces) == 1 {
		return c.open(name, pieces[0], dst)
	}
	size := 0
	for _, p := range pieces {
		size += len(p)
	}
	if size > maxSealed {
		return fmt.Errorf("session: open %s: %w: value too long", name, ErrNoSession)
	}
	var key cacheKey
	if c.cache != nil {
		key = c.cache.keyOf(name, pieces...)
		if ok, err := c.cached(name, key, dst); ok {
			return err
		}
	}
	return c.decode(name, strings.Join(pieces, ""), key, dst)
}

// cached decodes the remembered plaintext of key into dst, if there is one.
func (c *codec) cached(name string, key cacheKey, dst encoding.BinaryUnmarshaler) (bool, error) {
	plain, ok := c.cache.get(key, time.Now().Unix())
	if !ok {
		return false, nil
	}
	if err := unmarshalString(dst, plain); err != nil {
		// Cannot happen: it decoded before. Treat it as any other failure.
		return true, fmt.Errorf("session: open %s: %w: %w", name, ErrNoSession, err)
	}
	return true, nil
}

// decode opens value with securecookie and remembers its plaintext under key.
func (c *codec) decode(name, value string, key cacheKey, dst encoding.BinaryUnmarshaler) error {
	capture := &capturing{dst: dst}
	if err := securecookie.DecodeMulti(name, value, capture, c.codecs...); err != nil {
		return fmt.Errorf("session: open %s: %w: %w", name, ErrNoSession, err)
	}
	if c.cache != nil && capture.ok {
		if ts, ok := sealedAt(value); ok {
			c.cache.put(key, capture.plain, ts+c.maxAge)
		}
	}
	return nil
}

// capturing keeps a copy of the plaintext that securecookie verified and decrypted, on
// its way to dst: the payload types decode from a string (see stringUnmarshaler), and
// the cache keeps that string.
type capturing struct {
	dst   encoding.BinaryUnmarshaler
	plain string
	ok    bool
}

func (c *capturing) UnmarshalBinary(data []byte) error {
	plain := string(data)
	if err := unmarshalString(c.dst, plain); err != nil {
		return err
	}
	c.plain, c.ok = plain, true
	return nil
}

// unmarshalString decodes plain into dst, without a copy when dst can decode a string.
func unmarshalString(dst encoding.BinaryUnmarshaler, plain string) error {
	if su, ok := dst.(stringUnmarshaler); ok {
		return su.unmarshalString(plain)
	}
	return dst.UnmarshalBinary([]byte(plain))
}

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
	copy(k[:], c.mac.Seal(b[len(b):len(b)], gmacNonce, nil, b))
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

// split returns the pieces to write a sealed value under name: nil when name plus value fit
// in one cookie, otherwise up to maxPieces pieces, each piece cookie (NAME.N plus its
// value) within maxCookieSize.
func split(name, sealed string) ([]string, error) {
	if len(name)+len(sealed) <= maxCookieSize {
		return nil, nil
	}
	per := maxCookieSize - len(name) - len(".0")
	n := (len(sealed) + per - 1) / per
	if n > maxPieces {
		return nil, fmt.Errorf("session: seal %s: sealed value of %d bytes needs %d cookies, at most %d allowed", name, len(sealed), n, maxPieces)
	}
	pieces := make([]string, 0, n)
	for len(sealed) > per {
		pieces = append(pieces, sealed[:per])
		sealed = sealed[per:]
	}
	return append(pieces, sealed), nil
}

func pieceName(name string, i int) string { return name + "." + strconv.Itoa(i) }

// carried is what a request carried of one cookie: every copy of the base name and of each
// piece, in the order the browser sent them (most specific path first).
type carried struct {
	one    [1]string // backs base for the usual single copy
	base   []string
	pieces [maxPieces][]string
	// extra are names NAME.N the request carried that we never write (N >= maxPieces, or
	// digits we would not write, such as "01"): deleted on every write.
	extra []string
}

func (c *carried) present() bool {
	if len(c.base) > 0 || len(c.extra) > 0 {
		return true
	}
	for _, p := range c.pieces {
		if len(p) > 0 {
			return true
		}
	}
	return false
}

// add records the cookie name=value if it is a form of base and reports whether it was.
func (c *carried) add(base, name, value string) bool {
	if !strings.HasPrefix(name, base) {
		return false
	}
	rest := name[len(base):]
	if rest == "" {
		if c.base == nil {
			c.base = c.one[:0:1]
		}
		c.base = append(c.base, value)
		return true
	}
	if len(rest) < 2 || rest[0] != '.' || !allDigits(rest[1:]) {
		return false
	}
	if len(rest) == 2 && rest[1]-'0' < maxPieces {
		i := rest[1] - '0'
		c.pieces[i] = append(c.pieces[i], value)
		return true
	}
	if len(c.extra) < maxCopies && !containsString(c.extra, name) {
		c.extra = append(c.extra, name)
	}
	return true
}

// scanCookies calls fn with each name=value pair of h's Cookie headers, in order, the
// value unquoted. Unlike http.Request.Cookies it neither validates values nor allocates:
// a malformed value of one of our cookies fails to open (no session), and everyone
// else's cookies are none of our business. Loading the session is on every proxied
// request's path, and net/http's validation of a few KB of cookies costs as much as
// the MAC over them.
func scanCookies(h http.Header, fn func(name, value string)) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
			name = strings.TrimSpace(name)
			if !ok || name == "" {
				continue
			}
			value = strings.TrimSpace(value)
			if len(value) > 1 && value[0] == '"' && value[len(value)-1] == '"' {
				value = value[1 : len(value)-1]
			}
			fn(name, value)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// candidates returns the sealed values the request carried for one cookie, each whole
// (pieces joined in order): first every copy of the base form, then the chunked copies,
// the k-th copy of each piece together. It fails when pieces are missing or do not line
// up, or when the request carried a piece we never write.
func (c *carried) candidates(name string) ([]string, error) {
	n, copies, err := c.layout(name)
	if err != nil {
		return nil, err
	}
	if copies == 0 {
		return c.base, nil
	}
	out := make([]string, len(c.base), len(c.base)+copies)
	copy(out, c.base)
	var pieces [maxPieces]string
	for k := range copies {
		if err := c.copyPieces(name, n, k, &pieces); err != nil {
			return nil, err
		}
		out = append(out, strings.Join(pieces[:n], ""))
	}
	return out, nil
}

// eachCopy calls fn with every copy the request carried of one cookie, in the order of
// candidates, as the pieces of its sealed value (one piece for the base form), and
// returns how many there were. It fails as candidates does, or with fn's error.
func (c *carried) eachCopy(name string, fn func(pieces []string) error) (int, error) {
	n, copies, err := c.layout(name)
	if err != nil {
		return 0, err
	}
	for i := range c.base {
		if err := fn(c.base[i : i+1]); err != nil {
			return 0, err
		}
	}
	for k := range copies {
		var pieces [maxPieces]string // on the heap (fn may keep it): only for chunked copies
		if err := c.copyPieces(name, n, k, &pieces); err != nil {
			return 0, err
		}
		if err := fn(pieces[:n]); err != nil {
			return 0, err
		}
	}
	return len(c.base) + copies, nil
}

// layout checks the pieces the request carried of one cookie and returns how many
// pieces each chunked copy has and how many chunked copies there are.
func (c *carried) layout(name string) (n, copies int, err error) {
	if len(c.extra) > 0 {
		return 0, 0, fmt.Errorf("session: open %s: %w: unexpected piece", name, ErrNoSession)
	}
	for n < maxPieces && len(c.pieces[n]) > 0 {
		copies = max(copies, len(c.pieces[n]))
		n++
	}
	for i := n; i < maxPieces; i++ {
		if len(c.pieces[i]) > 0 {
			return 0, 0, fmt.Errorf("session: open %s: %w: missing piece %d", name, ErrNoSession, n)
		}
	}
	if len(c.base)+copies > maxCopies {
		return 0, 0, fmt.Errorf("session: open %s: %w: too many copies", name, ErrNoSession)
	}
	return n, copies, nil
}

// copyPieces puts the k-th copy of each of the n pieces in dst, checking that they are
// all there and together not too long.
func (c *carried) copyPieces(name string, n, k int, dst *[maxPieces]string) error {
	size := 0
	for i := range n {
		if k >= len(c.pieces[i]) {
			return fmt.Errorf("session: open %s: %w: missing piece %d", name, ErrNoSession, i)
		}
		dst[i] = c.pieces[i][k]
		size += len(dst[i])
	}
	if size > maxSealed {
		return fmt.Errorf("session: open %s: %w: value too long", name, ErrNoSession)
	}
	return nil
}

// cookieAttrs are the attributes every cookie of one kind shares; deletions repeat them.
type cookieAttrs struct {
	secure   bool
	sameSite http.SameSite
}

func (a cookieAttrs) cookie(name, value, path string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     path,
		MaxAge:   maxAge,
		Secure:   a.secure,
		HttpOnly: true,
		SameSite: a.sameSite,
	}
}

// deletion deletes name at path: every attribute repeated, Max-Age=0 (MaxAge -1 in Go).
func (a cookieAttrs) deletion(name, path string) *http.Cookie {
	return a.cookie(name, "", path, -1)
}

// write appends the cookies that store sealed under name on each path, and the deletions
// of the form it does not write and of the pieces the request carried that it does not
// replace: the base form when it writes pieces (if the request carried it, or carried no
// form of this cookie at all, as a sign-in's callback, which carries no SameSite=Strict
// cookie), the pieces beyond those it writes, and any piece we never write. Nothing else:
// a piece the request did not carry is never deleted, so a callback answers at most one
// deletion per cookie and path beside the cookies it sets; every header byte counts
// behind a proxy with a small header buffer.
func (a cookieAttrs) write(dst []*http.Cookie, name, sealed string, paths []string, maxAge int, had *carried) ([]*http.Cookie, error) {
	pieces, err := split(name, sealed)
	if err != nil {
		return dst, err
	}
	deleteBase := len(had.base) > 0 || !had.present()
	for _, path := range paths {
		if pieces == nil {
			dst = append(dst, a.cookie(name, sealed, path, maxAge))
		} else {
			if deleteBase {
				dst = append(dst, a.deletion(name, path))
			}
			for i, p := range pieces {
				dst = append(dst, a.cookie(pieceName(name, i), p, path, maxAge))
			}
		}
		for i := len(pieces); i < maxPieces; i++ {
			if len(had.pieces[i]) > 0 {
				dst = append(dst, a.deletion(pieceName(name, i), path))
			}
		}
		for _, x := range had.extra {
			dst = append(dst, a.deletion(x, path))
		}
	}
	return dst, nil
}

// deleteCarried appends the deletions of the base form of name on each path and of every
// piece the request carried: what a write that stores nothing under name must delete.
func (a cookieAttrs) deleteCarried(dst []*http.Cookie, name string, paths []string, had *carried) []*http.Cookie {
	for _, path := range paths {
		dst = append(dst, a.deletion(name, path))
		for i := range maxPieces {
			if len(had.pieces[i]) > 0 {
				dst = append(dst, a.deletion(pieceName(name, i), path))
			}
		}
		for _, x := range had.extra {
			dst = append(dst, a.deletion(x, path))
		}
	}
	return dst
}

// deleteAll appends the deletions of every form of name on each path, and of any extra
// piece the request carried: what a logout must delete.
func (a cookieAttrs) deleteAll(dst []*http.Cookie, name string, paths []string, had *carried) []*http.Cookie {
	for _, path := range paths {
		dst = append(dst, a.deletion(name, path))
		for i := range maxPieces {
			dst = append(dst, a.deletion(pieceName(name, i), path))
		}
		for _, x := range had.extra {
			dst = append(dst, a.deletion(x, path))
		}
	}
	return dst
}

// maxAgeSeconds is the remaining lifetime until expiry at now, rounded up to whole
// seconds and at least 1 (0 would delete the cookie, and Go writes no Max-Age for 0).
func maxAgeSeconds(expiry, now time.Time) int {
	d := expiry.Sub(now)
	if d <= 0 {
		return 1
	}
	return max(int((d+time.Second-1)/time.Second), 1)
}
