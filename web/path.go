package web

import (
	"net/url"
	"strings"
)

// CleanPath reports whether u's path is already clean, so that what tokenhandler matches
// is what the upstream will see. It refuses:
//
//   - a path that is empty or does not start with "/", and any opaque URL;
//   - "." or ".." segments and "//" (an empty segment);
//   - a backslash, NUL, any other control character, or ";";
//   - "%2e", "%2f", "%5c" or "%00" in any letter case, in the escaped path as well as in
//     the decoded one (so "%252e", which an upstream might decode a second time, is
//     refused too).
//
// The router calls it for every request, before any routing; proxy.Handler calls it
// again when it is served directly.
func CleanPath(u *url.URL) bool {
	if u == nil || u.Opaque != "" {
		return false
	}
	if !CleanDecoded(u.Path) {
		return false
	}
	// The decoded path holds every literal byte of the escaped one, so the structural
	// checks above cover both; the escaped forms only need the %-sequence checks.
	return !hasForbiddenEscape(u.RawPath) && !hasForbiddenEscape(u.EscapedPath())
}

// CleanDecoded applies CleanPath's checks to a decoded path (a configured route prefix,
// say).
func CleanDecoded(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			switch c := p[i]; {
			case c < 0x20 || c == 0x7f || c == '\\' || c == ';':
				return false
			case c != '/':
				continue
			}
		}
		// p[segStart:i] is one segment: i is a '/' or the end.
		switch p[segStart:i] {
		case ".", "..":
			return false
		case "":
			if i < len(p) { // "//"; a trailing "/" ends in an empty segment and is fine
				return false
			}
		}
		segStart = i + 1
	}
	return !hasForbiddenEscape(p)
}

// hasForbiddenEscape reports whether s holds %2e, %2f, %5c or %00 in any letter case.
func hasForbiddenEscape(s string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0 && i+2 < len(s); {
		a, b := s[i+1], s[i+2]|0x20 // lower-case the second hex digit
		if (a == '2' && (b == 'e' || b == 'f')) || (a == '5' && b == 'c') || (a == '0' && b == '0') {
			return true
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}
