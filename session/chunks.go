package session

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

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
