package session

import (
	"encoding"
	"errors"
	"fmt"
	"strings"
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
