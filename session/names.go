package session

import "strings"

// CookieNames are the names of tokenhandler's cookies for one cookies.prefix.
type CookieNames struct {
	Access      string // the access-token cookie, Path=/
	Refresh     string // the refresh-token cookie, path-scoped (hence __Secure-, not __Host-)
	ID          string // the ID-token cookie, Path=/
	LoginPrefix string // login cookies are LoginPrefix + a hash of their state
	Session     string // the Redis store's one session cookie
}

// NewCookieNames returns the names for prefix ("" means "th"). With insecure (cookies.secure:
// false, plain-http local development only) the __Host-Http-/__Secure- prefixes are
// dropped, since browsers refuse them without Secure.
func NewCookieNames(prefix string, insecure bool) CookieNames {
	if prefix == "" {
		prefix = "th"
	}
	host, secure := "__Host-Http-", "__Secure-"
	if insecure {
		host, secure = "", ""
	}
	return CookieNames{
		Access:      host + prefix + "-at",
		Refresh:     secure + prefix + "-rt",
		ID:          host + prefix + "-id",
		LoginPrefix: host + prefix + "-login-",
		Session:     host + prefix + "-session",
	}
}

// Owns reports whether a cookie name is one of tokenhandler's: a base name, any chunk of
// one (NAME.N), or any login cookie. It compares without regard to case, as browsers now
// compare the __Host-/__Secure- prefixes, so that a look-alike is stripped too (the proxy
// uses Owns to keep our cookies from upstreams and upstreams from setting them).
func (n CookieNames) Owns(name string) bool {
	if n.LoginPrefix != "" && len(name) >= len(n.LoginPrefix) && strings.EqualFold(name[:len(n.LoginPrefix)], n.LoginPrefix) {
		return true
	}
	base := name
	if i := strings.LastIndexByte(name, '.'); i >= 0 && allDigits(name[i+1:]) {
		base = name[:i]
	}
	for _, b := range [...]string{n.Access, n.Refresh, n.ID, n.Session} {
		if b != "" && strings.EqualFold(base, b) {
			return true
		}
	}
	return false
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validPrefix reports whether prefix is usable in a cookie name: letters, digits, '-', '_'.
func validPrefix(prefix string) bool {
	if len(prefix) > 32 {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
