package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// for problems.add.
func parseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("must be an absolute http:// or https:// URL, got %q", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("must be an absolute http:// or https:// URL, got %q", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("has no host: %q", s)
	}
	if u.Port() != "" && !validPort(u.Port()) {
		return nil, fmt.Errorf("has a bad port: %q", s)
	}
	return u, nil
}

// canonicalOrigin is the origin as a browser serializes it: lower-case scheme and host,
// no default port.
func canonicalOrigin(u *url.URL) string {
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host += ":" + port
	}
	return strings.ToLower(u.Scheme) + "://" + host
}

// httpsOffLoopback refuses a plain-http URL off loopback: for the URLs tokenhandler
// sends tokens or client credentials to (the issuer's endpoints).
func httpsOffLoopback(u *url.URL) error {
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("must be https:// (http:// only for localhost, 127.0.0.0/8 or [::1]), got %q", u.Redacted())
	}
	return nil
}

// isLoopbackHost reports whether browsers treat host as a secure context over plain http:
// localhost, 127.0.0.0/8 or ::1.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.Unmap().IsLoopback()
}

func checkAddr(p *problems, key, addr string, required bool) {
	if addr == "" {
		if required {
			p.add(key, "is required (host:port, e.g. :8080)")
		}
		return
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || !validPort(port) {
		p.add(key, "must be host:port (e.g. :8080 or 127.0.0.1:9090), got %q", addr)
	}
}

func validPort(s string) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && s != "" && n <= 65535
}

func checkFile(p *problems, key, name string) {
	if name == "" {
		return
	}
	if fi, err := os.Stat(name); err != nil {
		p.add(key, "cannot be read: %v", err)
	} else if fi.IsDir() {
		p.add(key, "%s is a directory", name)
	}
}

func positive(p *problems, key string, d time.Duration) {
	if d <= 0 {
		p.add(key, "must be a positive duration, got %v", d)
	}
}

// isCleanPath reports whether p is an absolute path with no empty, "." or ".." segment,
// made only of unreserved characters and "/".
func isCleanPath(p string) bool {
	if p == "" || path.Clean(p) != p {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~/", r)) {
			return false
		}
	}
	return true
}

func isCookiePrefix(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token (a valid header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

// isUnfitCSRFHeader reports headers that prove nothing: CORS-safelisted ones a cross-site
// form or fetch may send without a preflight, and forbidden ones scripts cannot set.
func isUnfitCSRFHeader(h string) bool {
	h = strings.ToLower(h)
	switch h {
	case "accept", "accept-language", "content-language", "content-type", "range",
		"accept-charset", "accept-encoding", "access-control-request-headers",
		"access-control-request-method", "connection", "content-length", "cookie", "cookie2",
		"date", "dnt", "expect", "host", "keep-alive", "origin", "referer", "te", "trailer",
		"transfer-encoding", "upgrade", "via", "authorization":
		return true
	}
	return strings.HasPrefix(h, "proxy-") || strings.HasPrefix(h, "sec-")
}

// isScopeToken reports whether s is an RFC 6749 scope-token.
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
