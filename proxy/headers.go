package proxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/tokenhandler/tokenhandler/dpop"
)

// stripOwnCookies removes tokenhandler's own cookies from the Cookie header(s) of h. The
// other cookies keep their order and travel in one Cookie header; with none left the
// header is dropped.
func stripOwnCookies(h http.Header, own func(string) bool) {
	vs := h["Cookie"]
	if len(vs) == 0 {
		return
	}
	// Fast path: one header whose cookies are all foreign is left as it is.
	if len(vs) == 1 && !anyOwnCookie(vs[0], own) {
		return
	}
	// The kept pairs first, then one string of exactly their length: growing a builder
	// as it filled took four allocations for the two foreign cookies of a request.
	var keep [16]string
	kept, size := keep[:0], 0
	for _, v := range vs {
		for part := range strings.SplitSeq(v, ";") {
			part = strings.TrimSpace(part)
			if part == "" || own(cookieName(part)) {
				continue
			}
			kept = append(kept, part)
			size += len(part)
		}
	}
	var b strings.Builder
	if len(kept) > 0 {
		b.Grow(size + 2*(len(kept)-1))
	}
	for i, part := range kept {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(part)
	}
	if b.Len() == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{b.String()}
}

func anyOwnCookie(v string, own func(string) bool) bool {
	for part := range strings.SplitSeq(v, ";") {
		if own(cookieName(strings.TrimSpace(part))) {
			return true
		}
	}
	return false
}

// cookieName returns the name of a "name=value" pair (or of a Set-Cookie line).
func cookieName(pair string) string {
	if i := strings.IndexByte(pair, '='); i >= 0 {
		pair = pair[:i]
	}
	return strings.TrimSpace(pair)
}

// cleanResponseHeaders removes from an upstream's answer what only tokenhandler may
// say to the browser: Set-Cookie lines that would set one of tokenhandler's cookies (any
// prefix or chunk), carry a Domain attribute (a cookie for other hosts of the site), or
// have no name; Clear-Site-Data (it would wipe the session's cookies); and every
// Access-Control-* header (tokenhandler alone answers CORS).
func cleanResponseHeaders(h http.Header, own func(string) bool) {
	for k := range h {
		if len(k) > len("Access-Control-") && strings.EqualFold(k[:len("Access-Control-")], "Access-Control-") {
			delete(h, k)
		}
	}
	delete(h, "Clear-Site-Data")
	vs := h["Set-Cookie"]
	if !slices.ContainsFunc(vs, func(v string) bool { return badSetCookie(v, own) }) {
		return
	}
	kept := slices.DeleteFunc(slices.Clone(vs), func(v string) bool { return badSetCookie(v, own) })
	if len(kept) == 0 {
		delete(h, "Set-Cookie")
		return
	}
	h["Set-Cookie"] = kept
}

// badSetCookie reports whether an upstream's Set-Cookie line must not reach the browser.
func badSetCookie(line string, own func(string) bool) bool {
	pair, attrs, _ := strings.Cut(line, ";")
	name := cookieName(pair)
	if name == "" || !strings.Contains(pair, "=") || own(name) {
		return true
	}
	for attr := range strings.SplitSeq(attrs, ";") {
		k, _, _ := strings.Cut(attr, "=")
		if strings.EqualFold(strings.TrimSpace(k), "domain") {
			return true
		}
	}
	return false
}

// Request headers that some servers obey to re-route or re-method a request: never
// passed on.
var reroutingHeaders = [...]string{"X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// guardedHeaders are the headers tokenhandler sets, replaces or removes on the way
// upstream, lower case: a client's variant of one of them (another case is folded by
// net/http already; '_' for '-', a trailing '-' or '_') is removed, since some upstream
// stacks fold '_' into '-' and would read it as ours.
var guardedHeaders = map[string]bool{
	"authorization": true, "cookie": true, "forwarded": true, "x-real-ip": true,
	"x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true,
	"x-forwarded-port": true, "x-forwarded-prefix": true, "x-request-id": true, "dpop": true,
	"connection": true, "keep-alive": true, "proxy-connection": true, "te": true,
	"trailer": true, "transfer-encoding": true, "upgrade": true, "proxy-authorization": true,
	"host": true, "content-length": true,
	"x-original-url": true, "x-rewrite-url": true, "x-http-method-override": true,
	"x-http-method": true, "x-method-override": true,
}

// dropSmuggledHeaders removes the re-routing headers and every variant of a guarded
// header from an upstream request.
func dropSmuggledHeaders(h http.Header) {
	for _, k := range reroutingHeaders {
		delete(h, k)
	}
	for k := range h {
		// net/http canonicalises names it can: a variant differs from ours by a '_' or a
		// trailing '-', so names without either are skipped at once.
		if strings.IndexByte(k, '_') < 0 && !strings.HasSuffix(k, "-") {
			continue
		}
		if guardedHeaders[foldName(k)] {
			delete(h, k)
		}
	}
}

// foldName lower-cases a header name, reads '_' as '-' and drops trailing '-'.
func foldName(k string) string {
	b := []byte(k)
	for i, c := range b {
		switch {
		case c == '_':
			b[i] = '-'
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		}
	}
	return strings.TrimRight(string(b), "-")
}

// forwardingHeader reports whether a header name carries forwarding information that only
// a trusted proxy may assert: Forwarded, X-Real-IP and every X-Forwarded-*. Names are
// compared without regard to case and with '_' read as '-', since CGI-style frameworks
// read X_Forwarded_For as X-Forwarded-For.
func forwardingHeader(name string) bool {
	const xf = "x-forwarded-"
	switch {
	case len(name) > len(xf):
		return foldDash(name[:len(xf)], xf)
	default:
		return foldDash(name, "forwarded") || foldDash(name, "x-real-ip")
	}
}

// foldDash reports whether s equals the lower-case want, ignoring case and reading '_' as '-'.
func foldDash(s, want string) bool {
	if len(s) != len(want) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			c = '-'
		} else if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// setForwarded sets X-Forwarded-For/Host/Proto on the outgoing request. A peer in
// trusted keeps what it sent, with X-Forwarded-For getting the peer appended; from any
// other peer every forwarding header is dropped. What tokenhandler sets itself comes
// from the TCP peer and public (the public origin, "scheme://host"), never from the
// client's Host header: X-Forwarded-Host and -Proto are public's host and scheme.
func setForwarded(pr *httputil.ProxyRequest, trusted []netip.Prefix, public *url.URL) {
	out := pr.Out.Header
	trustedPeer := peerTrusted(pr.In.RemoteAddr, trusted)
	if trustedPeer {
		// ReverseProxy removed these four before Rewrite; a trusted peer's values come back.
		for _, k := range [...]string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v, ok := pr.In.Header[k]; ok {
				out[k] = slices.Clone(v)
			}
		}
	} else {
		for k := range out {
			if forwardingHeader(k) {
				delete(out, k)
			}
		}
	}
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		if prior := out["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		out["X-Forwarded-For"] = []string{ip}
	}
	if public == nil {
		return
	}
	if _, ok := out["X-Forwarded-Host"]; !ok {
		out["X-Forwarded-Host"] = []string{public.Host}
	}
	if _, ok := out["X-Forwarded-Proto"]; !ok {
		out["X-Forwarded-Proto"] = []string{public.Scheme}
	}
}

func peerTrusted(remoteAddr string, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// headerHasToken reports whether any comma-separated element of the values vs equals tok,
// ignoring case.
func headerHasToken(vs []string, tok string) bool {
	for _, v := range vs {
		for e := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(e), tok) {
				return true
			}
		}
	}
	return false
}

// upgradeKind tells what protocol switch a request asks for. upgrade reports any Upgrade
// header or "upgrade" Connection token; websocket reports exactly one "websocket" in a GET
// with Connection: upgrade, the only switch tokenhandler passes on.
func upgradeKind(r *http.Request) (upgrade, websocket bool) {
	ups := r.Header["Upgrade"]
	connUp := headerHasToken(r.Header["Connection"], "upgrade")
	if len(ups) == 0 && !connUp {
		return false, false
	}
	websocket = connUp && r.Method == http.MethodGet && len(ups) == 1 &&
		strings.EqualFold(strings.TrimSpace(ups[0]), "websocket")
	return true, websocket
}

// withoutUpgrade returns a copy of h without Upgrade, HTTP2-Settings and the "upgrade"
// token of Connection, so that ReverseProxy sees no protocol switch (h2c and the like).
func withoutUpgrade(h http.Header) http.Header {
	h = h.Clone()
	delete(h, "Upgrade")
	delete(h, "Http2-Settings")
	var keep []string
	for _, v := range h["Connection"] {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" && !strings.EqualFold(e, "upgrade") {
				keep = append(keep, e)
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Connection")
	} else {
		h["Connection"] = []string{strings.Join(keep, ", ")}
	}
	return h
}

// bearerError returns the error parameter of the Bearer challenge(s) in the
// WWW-Authenticate values vs (RFC 6750 section 3), "" when there is none: the one
// challenge parser of package dpop, which reads DPoP's challenges the same way.
func bearerError(vs []string) string { return dpop.ChallengeError(vs, "Bearer") }

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
