package session

import (
	"net/http"
	"time"
)

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
