package proxy

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
// The top-level handler calls it for every request, before any routing.
func CleanPath(u *url.URL) bool {
	if u == nil || u.Opaque != "" {
		return false
	}
	if !cleanDecoded(u.Path) {
		return false
	}
	// The decoded path holds every literal byte of the escaped one, so the structural
	// checks above cover both; the escaped forms only need the %-sequence checks.
	return !hasForbiddenEscape(u.RawPath) && !hasForbiddenEscape(u.EscapedPath())
}

// cleanDecoded applies the structural checks to a decoded path.
func cleanDecoded(p string) bool {
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

// outPath returns the path and raw path to send upstream for the clean, matched path of
// in: the matched path itself, less the prefix (keeping its leading "/") with
// strip_prefix, behind the upstream's own base path.
func (rt *route) outPath(in *url.URL) (p, raw string) {
	p, raw = in.Path, in.RawPath
	if rt.strip {
		p = p[len(rt.prefix)-1:]
		if raw != "" {
			if strings.HasPrefix(raw, rt.prefix) {
				raw = raw[len(rt.prefix)-1:]
			} else {
				raw = "" // the prefix was %-encoded; let net/url encode the rest
			}
		}
	}
	if rt.base != "" {
		p = rt.base + p
		if raw != "" {
			raw = rt.baseRaw + raw
		}
	}
	return p, raw
}
