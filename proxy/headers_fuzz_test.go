package proxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/proxy"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// headerRig is a proxy.Handler in front of an in-memory upstream, with a real
// CookieStore and one live session: what the fuzz targets below send through it is what
// a browser (or an attacker's client) and an upstream could send.
type headerRig struct {
	h       *proxy.Handler
	names   session.CookieNames
	cookies []*http.Cookie // the session's cookies, as the browser sends them to /api/
	access  string         // the session's access token: upstream sees it only as Bearer
	secrets []string       // the other tokens and every sealed cookie value: upstream never sees them

	mu     sync.Mutex
	sent   http.Header // what the upstream received; nil when the proxy did not forward
	answer http.Header // the headers the upstream answers with
}

// The peer the rig's trusted-proxy list holds, and one it does not.
const (
	trustedPeer   = "10.1.2.3"
	untrustedPeer = "192.0.2.10"
)

func newHeaderRig(tb testing.TB) *headerRig {
	tb.Helper()
	kp, err := session.GenerateKeyPair()
	if err != nil {
		tb.Fatal(err)
	}
	store, err := session.NewCookieStore(session.CookieOptions{Keys: []session.KeyPair{kp}, RefreshPaths: []string{"/api/"}})
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	s := &session.Session{
		ID: "sid-fuzz", Subject: "alice",
		AccessToken: "AT-9f3c1e7a", RefreshToken: "RT-5b2d8c04", IDToken: "IDT-e61a2f93",
		AccessIssued: now, AccessExpiry: now.Add(time.Hour), Expiry: now.Add(12 * time.Hour),
	}
	cookies, err := store.Save(context.Background(), httptest.NewRequest(http.MethodGet, "https://app.example.com/", nil), s)
	if err != nil {
		tb.Fatal(err)
	}
	rig := &headerRig{
		names:   session.NewCookieNames("", false),
		access:  s.AccessToken,
		secrets: []string{s.RefreshToken, s.IDToken},
	}
	for _, c := range cookies {
		if c.MaxAge > 0 { // not the deletions of chunks a save may answer as well
			rig.cookies = append(rig.cookies, c)
			rig.secrets = append(rig.secrets, c.Value)
		}
	}
	up, _ := url.Parse("http://upstream.test")
	rig.h, err = proxy.New(store, noRefresh{}, proxy.Options{
		Routes:         []proxy.Route{{Path: "/api/", Upstream: up}},
		CSRF:           &web.CSRF{PublicOrigin: "https://app.example.com"},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		OwnCookie:      rig.names.Owns,
		Transport:      roundTripFunc(rig.roundTrip),
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return rig
}

// noRefresh fails every refresh: the rig's session is fresh, so none is asked for.
type noRefresh struct{}

func (noRefresh) Refresh(context.Context, *session.Session) (*session.Session, error) {
	return nil, errors.New("fuzz rig: no refresh expected")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (rig *headerRig) roundTrip(r *http.Request) (*http.Response, error) {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	rig.sent = r.Header.Clone()
	h := rig.answer.Clone()
	h.Set("Content-Type", "text/plain")
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader("ok")), ContentLength: 2, Request: r,
	}, nil
}

// serve sends r through the proxy with the upstream answering the headers answer, and
// returns what the upstream received (nil: not forwarded) and the response.
func (rig *headerRig) serve(r *http.Request, answer http.Header) (http.Header, *httptest.ResponseRecorder) {
	rig.mu.Lock()
	rig.sent, rig.answer = nil, answer
	rig.mu.Unlock()
	w := httptest.NewRecorder()
	rig.h.ServeHTTP(w, r)
	rig.mu.Lock()
	defer rig.mu.Unlock()
	return rig.sent, w
}

// validName and validValue are net/http's rules for a header a server accepts
// (httpguts.ValidHeaderFieldName/Value): a request breaking them never reaches a handler.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// forwardingName is the contract's list of forwarding headers, written independently of
// the proxy's own: Forwarded, X-Real-IP and every X-Forwarded-*, in any case, with '_'
// read as '-'.
func forwardingName(name string) bool {
	n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	return n == "forwarded" || n == "x-real-ip" || strings.HasPrefix(n, "x-forwarded-") && len(n) > len("x-forwarded-")
}

// guardedName reports whether a header name is, read as some upstream stacks read it
// (any case, '_' as '-', trailing '-' or '_' ignored), one that only tokenhandler may set
// or a re-routing header that no client may send upstream.
func guardedName(name string) bool {
	n := strings.TrimRight(strings.ReplaceAll(strings.ToLower(name), "_", "-"), "-")
	switch n {
	case "authorization", "cookie", "dpop", "host", "forwarded", "x-real-ip",
		"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "proxy-authorization",
		"x-original-url", "x-rewrite-url", "x-http-method-override", "x-http-method", "x-method-override":
		return true
	}
	return false
}

// cookiePairs reads a Cookie header the way a lenient server does: every ';'-separated
// pair, its name before the first '=' with spaces trimmed (a pair without '=' is all name).
func cookiePairs(v string) []string {
	var names []string
	for part := range strings.SplitSeq(v, ";") {
		name, _, _ := strings.Cut(part, "=")
		names = append(names, strings.TrimSpace(name))
	}
	return names
}

// browserCookieName is the name a browser stores a Set-Cookie line under (RFC 6265bis
// 5.6): the name-value pair ends at the first ';', the name at its first '='; without '='
// the name is empty. Space and tab are trimmed.
func browserCookieName(line string) string {
	pair, _, _ := strings.Cut(line, ";")
	name, _, ok := strings.Cut(pair, "=")
	if !ok {
		return ""
	}
	return strings.Trim(name, " \t")
}

// FuzzProxyHeaders sends a request with fuzzed cookies and one fuzzed header, from a
// trusted or an untrusted peer, through the proxy to an upstream that answers fuzzed
// Set-Cookie lines (one per line of setCookie), the fuzzed header too, and headers only
// tokenhandler may send to a browser; it checks the contract's header rules: none of
// tokenhandler's cookies or tokens reaches the upstream (the access token only as our
// Bearer), the upstream gets one Cookie header at most, no variant of a header we guard
// and no re-routing header, an untrusted peer's forwarding headers are replaced by ours,
// every header stays valid; the browser gets no Set-Cookie that plants or clears one of
// tokenhandler's cookies, none with a Domain or without a name, no Access-Control-* and
// no Clear-Site-Data from the upstream.
func FuzzProxyHeaders(f *testing.F) {
	rig := newHeaderRig(f)
	for _, seed := range []struct {
		cookie, name, value, setCookie string
		trusted                        bool
	}{
		{"a=1; b=2", "X-Forwarded-For", "1.2.3.4", "pref=dark; Path=/", false},
		{"__host-http-th-at=forged; theme=x", "X-Forwarded-Host", "evil.test", "__Host-Http-th-at=; Max-Age=0", false},
		{"__HOST-Http-th-id.7=x;__secure-th-rt.1=y", "X_Forwarded_For", "6.6.6.6", "__SECURE-th-rt=planted; Path=/api/", false},
		{"__Host-Http-th-login-abc=z", "Forwarded", "for=6.6.6.6;host=evil.test", " __Host-Http-th-id.3 =x\nok=1", false},
		{";;=;", "X-Real-Ip", "6.6.6.6", "=__Host-Http-th-at", true},
		{"x=1", "Authorization", "Bearer attacker", "__Host-Http-th-session=1; Domain=example.com", true},
		{"", "X-Forwarded-Proto", "http", "", false},
		{"a=1", "Authorization_", "Bearer forged", "", false},
		{"", "X-Original-URL", "/admin", "sid=1; Domain=example.com; Path=/", false},
		{"", "Access-Control-Allow-Credentials", "true", "=nameless\nnovalue\nok=1; domain =.example.com", true},
	} {
		f.Add(seed.cookie, seed.name, seed.value, seed.setCookie, seed.trusted)
	}
	f.Fuzz(func(t *testing.T, cookie, name, value, setCookie string, trusted bool) {
		// Only what net/http's server would hand to a handler.
		if !validValue(cookie) || name != "" && (!validName(name) || !validValue(value)) {
			t.Skip()
		}
		r := httptest.NewRequest(http.MethodGet, "https://app.example.com/api/items", nil)
		peer := untrustedPeer
		if trusted {
			peer = trustedPeer
		}
		r.RemoteAddr = peer + ":40000"
		r.Header.Set("X-CSRF", "1")
		if name != "" {
			r.Header.Add(name, value)
		}
		// The session's cookies in one header line, the fuzzed ones in another (HTTP/2
		// clients may split cookies over several lines).
		var own []string
		for _, c := range rig.cookies {
			if c.Path == "/" || c.Path == "/api/" {
				own = append(own, c.Name+"="+c.Value)
			}
		}
		r.Header["Cookie"] = append([]string{strings.Join(own, "; ")}, r.Header["Cookie"]...)
		if cookie != "" {
			r.Header["Cookie"] = append(r.Header["Cookie"], cookie)
		}
		answer := http.Header{"Access-Control-Allow-Origin": {"*"}, "Clear-Site-Data": {`"cookies"`}}
		if name != "" {
			answer.Add(name, value) // canonical, as net/http reads an upstream's answer
		}
		for line := range strings.SplitSeq(setCookie, "\n") {
			if line != "" && validValue(line) {
				answer["Set-Cookie"] = append(answer["Set-Cookie"], line)
			}
		}

		sent, w := rig.serve(r, answer)

		for k, vs := range w.Header() {
			for _, v := range vs {
				if !validName(k) || !validValue(v) {
					t.Fatalf("response header %q: %q is not a valid header", k, v)
				}
			}
		}
		if sent == nil {
			return // refused before the upstream: nothing was forwarded
		}
		// The request the upstream got.
		for k, vs := range sent {
			for _, v := range vs {
				if !validName(k) || !validValue(v) {
					t.Fatalf("upstream header %q: %q is not a valid header", k, v)
				}
				for _, s := range rig.secrets {
					if strings.Contains(v, s) || strings.Contains(k, s) {
						t.Fatalf("upstream header %s: %q carries a session secret", k, v)
					}
				}
				if k != "Authorization" && strings.Contains(v, rig.access) {
					t.Fatalf("upstream header %s: %q carries the access token", k, v)
				}
			}
		}
		for k, vs := range sent {
			if guardedName(k) && k != http.CanonicalHeaderKey(strings.ReplaceAll(strings.TrimRight(k, "-_"), "_", "-")) {
				t.Fatalf("upstream got %s: %q, a variant of a header only tokenhandler sets", k, vs)
			}
		}
		for _, k := range []string{"X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override"} {
			if vs, ok := sent[k]; ok {
				t.Fatalf("upstream got the re-routing header %s: %q", k, vs)
			}
		}
		if got := sent["Authorization"]; len(got) != 1 || got[0] != "Bearer "+rig.access {
			t.Fatalf("upstream Authorization = %q, want exactly our Bearer", got)
		}
		if len(sent["Cookie"]) > 1 {
			t.Fatalf("upstream got %d Cookie headers, want at most 1", len(sent["Cookie"]))
		}
		for _, v := range sent["Cookie"] {
			for _, n := range cookiePairs(v) {
				if rig.names.Owns(n) {
					t.Fatalf("upstream Cookie %q carries our cookie %q", v, n)
				}
			}
		}
		for _, c := range (&http.Request{Header: sent}).Cookies() {
			if rig.names.Owns(c.Name) {
				t.Fatalf("upstream Cookie %q carries our cookie %q (as net/http reads it)", sent["Cookie"], c.Name)
			}
		}
		xff := sent["X-Forwarded-For"]
		if len(xff) != 1 || !(xff[0] == peer || strings.HasSuffix(xff[0], ", "+peer)) {
			t.Fatalf("upstream X-Forwarded-For = %q, want the peer %s last", xff, peer)
		}
		if !trusted {
			for k, vs := range sent {
				if !forwardingName(k) {
					continue
				}
				switch k {
				case "X-Forwarded-For":
					if vs[0] != peer {
						t.Fatalf("upstream X-Forwarded-For = %q from an untrusted peer, want only %s", vs, peer)
					}
				case "X-Forwarded-Proto":
					if len(vs) != 1 || vs[0] != "https" {
						t.Fatalf("upstream X-Forwarded-Proto = %q from an untrusted peer, want https", vs)
					}
				case "X-Forwarded-Host":
					if len(vs) != 1 || vs[0] != "app.example.com" {
						t.Fatalf("upstream X-Forwarded-Host = %q from an untrusted peer, want app.example.com", vs)
					}
				default:
					t.Fatalf("upstream got forwarding header %s: %q from an untrusted peer", k, vs)
				}
			}
		}
		// The response the browser gets: the session is fresh, so the proxy sets no cookie
		// of its own, and the upstream may set none of ours, nor any for other hosts.
		for k, vs := range w.Header() {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") || strings.EqualFold(k, "Clear-Site-Data") {
				t.Fatalf("response carries the upstream's %s: %q", k, vs)
			}
		}
		for _, line := range w.Header()["Set-Cookie"] {
			if browserCookieName(line) == "" {
				t.Fatalf("response Set-Cookie %q sets a cookie without a name", line)
			}
			_, attrs, _ := strings.Cut(line, ";")
			for attr := range strings.SplitSeq(attrs, ";") {
				if k, _, _ := strings.Cut(attr, "="); strings.EqualFold(strings.Trim(k, " \t"), "domain") {
					t.Fatalf("response Set-Cookie %q carries a Domain", line)
				}
			}
			if n := browserCookieName(line); n != "" && rig.names.Owns(n) {
				t.Fatalf("response Set-Cookie %q sets our cookie %q", line, n)
			}
			if c, err := http.ParseSetCookie(line); err == nil && rig.names.Owns(c.Name) {
				t.Fatalf("response Set-Cookie %q sets our cookie %q (as net/http reads it)", line, c.Name)
			}
		}
	})
}

// TestHeaderRigForwards keeps FuzzProxyHeaders honest: the rig's session is valid, so a
// plain request with its cookies reaches the upstream (the fuzz target's checks run),
// without our cookies and with our Bearer.
func TestHeaderRigForwards(t *testing.T) {
	rig := newHeaderRig(t)
	r := httptest.NewRequest(http.MethodGet, "https://app.example.com/api/items", nil)
	r.RemoteAddr = untrustedPeer + ":40000"
	r.Header.Set("X-CSRF", "1")
	for _, c := range rig.cookies {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	r.AddCookie(&http.Cookie{Name: "theme", Value: "dark"})
	sent, w := rig.serve(r, http.Header{"Set-Cookie": {"__Host-Http-th-at=planted", "pref=1"}})
	if sent == nil {
		t.Fatalf("the rig's request was not forwarded: %d %s", w.Code, w.Body)
	}
	if got := sent.Get("Authorization"); got != "Bearer "+rig.access {
		t.Errorf("upstream Authorization = %q, want our Bearer", got)
	}
	if got := sent.Get("Cookie"); got != "theme=dark" {
		t.Errorf("upstream Cookie = %q, want theme=dark", got)
	}
	if got := w.Header()["Set-Cookie"]; len(got) != 1 || got[0] != "pref=1" {
		t.Errorf("response Set-Cookie = %q, want only pref=1", got)
	}
}
