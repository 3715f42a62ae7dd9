package idptest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// NewClient returns an http.Client for browser-like tests: it keeps cookies the way a
// browser does on loopback, follows redirects, and checks every Set-Cookie of every
// response against the cookie prefix rules (see CheckSetCookies), reporting each
// violation with t.Errorf. Its jar is testbench.NewJar's: Secure cookies are stored and
// sent over http on loopback hosts only, as browsers do.
func NewClient(t testing.TB) *http.Client {
	jar, err := testbench.NewJar()
	if err != nil {
		t.Fatalf("idptest: %v", err)
	}
	return &http.Client{
		Jar:       jar,
		Transport: &checkingTransport{t: t, next: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}},
		Timeout:   30 * time.Second,
	}
}

// checkingTransport checks the Set-Cookie headers of every response.
type checkingTransport struct {
	t    testing.TB
	next http.RoundTripper
}

func (c *checkingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil {
		for _, problem := range SetCookieProblems(resp.Header) {
			c.t.Errorf("idptest: %s %s: %s", req.Method, req.URL.Redacted(), problem)
		}
	}
	return resp, err
}

// CheckSetCookies reports with t.Errorf every Set-Cookie in h that a browser would
// refuse because of its name prefix: a __Host- cookie needs Secure, Path=/ and no
// Domain; a __Secure- cookie needs Secure. Deletions (Max-Age=0) obey the same rules,
// or the browser keeps the cookie. Prefixes match in any letter case, as in browsers.
// For handler tests: CheckSetCookies(t, rec.Header()).
func CheckSetCookies(t testing.TB, h http.Header) {
	t.Helper()
	for _, problem := range SetCookieProblems(h) {
		t.Errorf("idptest: %s", problem)
	}
}

// SetCookieProblems returns what CheckSetCookies would report, one line per problem.
func SetCookieProblems(h http.Header) []string {
	var problems []string
	for _, line := range h.Values("Set-Cookie") {
		if p := setCookieProblem(line); p != "" {
			problems = append(problems, p)
		}
	}
	return problems
}

// setCookieProblem checks one Set-Cookie line, read attribute by attribute as a browser
// reads it (RFC 6265bis 5.6): the last Path wins, any Domain attribute counts.
func setCookieProblem(line string) string {
	parts := strings.Split(line, ";")
	name, _, ok := strings.Cut(parts[0], "=")
	if !ok {
		name = "" // without "=", a browser reads it all as the value of a nameless cookie
	}
	name = strings.TrimSpace(name)
	lower := strings.ToLower(name)
	host, secure := strings.HasPrefix(lower, "__host-"), strings.HasPrefix(lower, "__secure-")
	if !host && !secure {
		return ""
	}
	var hasSecure, hasDomain bool
	path, pathSet := "", false
	for _, attr := range parts[1:] {
		k, v, _ := strings.Cut(attr, "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "secure":
			hasSecure = true
		case "domain":
			hasDomain = true
		case "path":
			path, pathSet = strings.TrimSpace(v), true
		}
	}
	var missing []string
	if !hasSecure {
		missing = append(missing, "no Secure")
	}
	if host {
		if !pathSet || path != "/" {
			missing = append(missing, fmt.Sprintf("Path %q, want \"/\"", path))
		}
		if hasDomain {
			missing = append(missing, "has Domain")
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("Set-Cookie %s: a browser would ignore it: %s", name, strings.Join(missing, ", "))
}
