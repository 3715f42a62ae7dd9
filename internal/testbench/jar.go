package testbench

import (
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
)

// NewJar returns a cookie jar that keeps cookies the way a browser does on loopback.
//
// Go's cookiejar never sends a Secure cookie over http, but browsers treat
// http://localhost, 127.0.0.0/8 and [::1] as secure contexts and do; this jar does too,
// for loopback hosts only. Like a browser's, it ignores ports: every server on
// 127.0.0.1 sees the cookies of every other.
func NewJar() (http.CookieJar, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, fmt.Errorf("testbench: cookie jar: %w", err)
	}
	return loopbackJar{jar}, nil
}

// loopbackJar treats http URLs of loopback hosts as https, so that Secure cookies are
// stored and sent there as a browser does.
type loopbackJar struct{ jar *cookiejar.Jar }

func (j loopbackJar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	j.jar.SetCookies(secureLoopback(u), cookies)
}

func (j loopbackJar) Cookies(u *url.URL) []*http.Cookie { return j.jar.Cookies(secureLoopback(u)) }

func secureLoopback(u *url.URL) *url.URL {
	if u.Scheme != "http" || !IsLoopback(u.Hostname()) {
		return u
	}
	s := *u
	s.Scheme = "https"
	return &s
}

// IsLoopback reports whether host (without port) is one that browsers treat as a secure
// context over plain http: localhost (and *.localhost), 127.0.0.0/8 and ::1.
func IsLoopback(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
