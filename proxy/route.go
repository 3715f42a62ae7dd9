package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// Route is one proxied path prefix.
type Route struct {
	// Path is the prefix the route takes; it starts and ends in "/" and is clean.
	Path string
	// Upstream is the API's base URL (http or https, no query, fragment or user info). A
	// path in it is put in front of the forwarded path.
	Upstream *url.URL
	// StripPrefix forwards the path less Path (keeping a leading "/").
	StripPrefix bool
	// Methods restricts the route to these methods; empty means every method but TRACE
	// and CONNECT, which are never forwarded.
	Methods []string
	// Timeout bounds the time until the upstream's response headers arrive (504
	// upstream_timeout); it never cuts a streaming body. 0 means 30s.
	Timeout time.Duration
	// Token is the route's token policy; nil: the session's access token as issued.
	Token *session.TokenPolicy
}

// route is a Route made ready to match and forward: the upstream split into origin and
// base path, the methods normalised, the timeout defaulted.
type route struct {
	prefix   string
	upstream *url.URL
	base     string // upstream path without its trailing "/"; "" for none
	baseRaw  string // its escaped form
	strip    bool
	methods  []string // nil: any but TRACE and CONNECT
	allow    string   // the Allow header of a 405
	timeout  time.Duration
	handler  http.Handler         // routeHandler{h, this route}
	policy   *session.TokenPolicy // nil: the session's access token
}

func newRoute(r Route) (*route, error) {
	if !strings.HasPrefix(r.Path, "/") || !strings.HasSuffix(r.Path, "/") || !web.CleanDecoded(r.Path) {
		return nil, fmt.Errorf("path %q must be a clean path that starts and ends in \"/\"", r.Path)
	}
	u := r.Upstream
	switch {
	case u == nil:
		return nil, errors.New("upstream is required")
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Opaque != "":
		return nil, fmt.Errorf("upstream %q must be an absolute http or https URL", u.Redacted())
	case u.User != nil, u.RawQuery != "", u.ForceQuery, u.Fragment != "":
		return nil, fmt.Errorf("upstream %q must have no user info, query or fragment", u.Redacted())
	}
	if r.Timeout < 0 {
		return nil, fmt.Errorf("timeout %s is negative", r.Timeout)
	}
	rt := &route{
		prefix:   r.Path,
		upstream: &url.URL{Scheme: u.Scheme, Host: u.Host},
		base:     strings.TrimSuffix(u.Path, "/"),
		baseRaw:  strings.TrimSuffix(u.EscapedPath(), "/"),
		strip:    r.StripPrefix,
		timeout:  r.Timeout,
		allow:    defaultAllow,
	}
	if rt.timeout == 0 {
		rt.timeout = defaultTimeout
	}
	if p := r.Token; p != nil {
		switch {
		case p.Via == "refresh" || p.Via == "exchange" || p.Format == "jwt":
			rt.policy = p
		case p.Via != "" && p.Via != "session":
			return nil, fmt.Errorf("token via %q is not session, refresh or exchange", p.Via)
		}
	}
	for _, m := range r.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		switch {
		case m == "" || strings.IndexFunc(m, func(c rune) bool { return c > 0x7f || !isTokenChar(byte(c)) }) >= 0:
			return nil, fmt.Errorf("method %q is not a method name", m)
		case m == http.MethodTrace || m == http.MethodConnect:
			return nil, fmt.Errorf("method %s is never proxied", m)
		}
		if !slices.Contains(rt.methods, m) {
			rt.methods = append(rt.methods, m)
		}
	}
	if len(rt.methods) > 0 {
		rt.allow = strings.Join(rt.methods, ", ")
	}
	return rt, nil
}

func (rt *route) allows(method string) bool {
	if method == http.MethodTrace || method == http.MethodConnect {
		return false
	}
	return rt.methods == nil || slices.Contains(rt.methods, method)
}

// Match reports whether a configured route takes path (longest prefix).
func (h *Handler) Match(path string) bool { return h.match(path) != nil }

// RouteOf returns the configured prefix of the route that takes path (longest prefix),
// the bounded label metrics and logs use; ok is false when no route takes it.
func (h *Handler) RouteOf(path string) (prefix string, ok bool) {
	if rt := h.match(path); rt != nil {
		return rt.prefix, true
	}
	return "", false
}

func (h *Handler) match(path string) *route {
	for _, rt := range h.routes {
		if strings.HasPrefix(path, rt.prefix) {
			return rt
		}
	}
	return nil
}

// RouteHandler is one configured route's handler.
type RouteHandler struct {
	// Prefix is the route's path prefix, also the bounded label of metrics and logs.
	Prefix string
	// Handler serves a request whose clean path (web.CleanPath) the caller has matched
	// to Prefix, the longest matching prefix: it neither cleans nor matches again.
	Handler http.Handler
}

// Routes returns a handler per configured route, longest prefix first, for a router
// that matches each request once.
func (h *Handler) Routes() []RouteHandler {
	out := make([]RouteHandler, len(h.routes))
	for i, rt := range h.routes {
		out[i] = RouteHandler{Prefix: rt.prefix, Handler: rt.handler}
	}
	return out
}

// routeHandler serves one route's matched requests.
type routeHandler struct {
	h  *Handler
	rt *route
}

func (rh routeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{in: r, route: rh.rt}
	if err := rh.h.serve(w, r, x); err != nil {
		rh.h.fail(w, x, err)
	}
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
