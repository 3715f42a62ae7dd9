package session

import (
	"encoding"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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
type codec struct {
	codecs []securecookie.Codec
}

func newCodec(keys []KeyPair, maxAge time.Duration) (*codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("at least one key pair is required")
	}
	c := &codec{codecs: make([]securecookie.Codec, len(keys))}
	secs := int((maxAge + time.Second - 1) / time.Second)
	for i, k := range keys {
		if err := k.validate(); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		sc := securecookie.New(k.Hash, k.Block)
		sc.MaxLength(maxSealed)
		sc.MaxAge(max(secs, 1))
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
func (c *codec) open(name, value string, dst encoding.BinaryUnmarshaler) error {
	if len(value) > maxSealed {
		return fmt.Errorf("session: open %s: %w: value too long", name, ErrNoSession)
	}
	if err := securecookie.DecodeMulti(name, value, dst, c.codecs...); err != nil {
		return fmt.Errorf("session: open %s: %w: %w", name, ErrNoSession, err)
	}
	return nil
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
	if len(c.extra) > 0 {
		return nil, fmt.Errorf("session: open %s: %w: unexpected piece", name, ErrNoSession)
	}
	n, copies := 0, 0
	for n < maxPieces && len(c.pieces[n]) > 0 {
		copies = max(copies, len(c.pieces[n]))
		n++
	}
	for i := n; i < maxPieces; i++ {
		if len(c.pieces[i]) > 0 {
			return nil, fmt.Errorf("session: open %s: %w: missing piece %d", name, ErrNoSession, n)
		}
	}
	if len(c.base)+copies > maxCopies {
		return nil, fmt.Errorf("session: open %s: %w: too many copies", name, ErrNoSession)
	}
	if copies == 0 {
		return c.base, nil
	}
	out := make([]string, len(c.base), len(c.base)+copies)
	copy(out, c.base)
	for k := range copies {
		size := 0
		for i := range n {
			if k >= len(c.pieces[i]) {
				return nil, fmt.Errorf("session: open %s: %w: missing piece %d", name, ErrNoSession, i)
			}
			size += len(c.pieces[i][k])
		}
		if size > maxSealed {
			return nil, fmt.Errorf("session: open %s: %w: value too long", name, ErrNoSession)
		}
		var b strings.Builder
		b.Grow(size)
		for i := range n {
			b.WriteString(c.pieces[i][k])
		}
		out = append(out, b.String())
	}
	return out, nil
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
// of every other form: the base form or the pieces it did not write. What the request
// carried tells which other forms exist; when it carried none of this cookie (a
// SameSite=Strict cookie is not sent on the cross-site navigation to the callback, a
// path-scoped one not outside its paths), every other form is deleted, since a stale form
// of another session would make every later request fail the binding check.
func (a cookieAttrs) write(dst []*http.Cookie, name, sealed string, paths []string, maxAge int, had *carried) ([]*http.Cookie, error) {
	pieces, err := split(name, sealed)
	if err != nil {
		return dst, err
	}
	known := had.present()
	for _, path := range paths {
		if pieces == nil {
			dst = append(dst, a.cookie(name, sealed, path, maxAge))
		} else {
			if !known || len(had.base) > 0 {
				dst = append(dst, a.deletion(name, path))
			}
			for i, p := range pieces {
				dst = append(dst, a.cookie(pieceName(name, i), p, path, maxAge))
			}
		}
		for i := len(pieces); i < maxPieces; i++ {
			if !known || len(had.pieces[i]) > 0 {
				dst = append(dst, a.deletion(pieceName(name, i), path))
			}
		}
		for _, x := range had.extra {
			dst = append(dst, a.deletion(x, path))
		}
	}
	return dst, nil
}

// deleteAll appends the deletions of every form of name on each path, and of any extra
// piece the request carried.
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
