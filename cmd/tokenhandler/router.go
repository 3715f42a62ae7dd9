package main

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/metrics"
	"github.com/tokenhandler/tokenhandler/proxy"
	"github.com/tokenhandler/tokenhandler/tracing"
	"github.com/tokenhandler/tokenhandler/web"
)

// router is the public listener's handler. It matches each request once, by path, to
// one target: the OAuth agent (the auth prefix), a proxy route (longest prefix), the
// SPA's files, or a 404; and hands the request to that target's chain, which was built
// once at start:
//
//	request log (request id, the target's metric label, one log line)
//	 -> tracing (a server span, when tracing.enabled)
//	 -> body timeout (server.body_timeout: a body without progress is cut)
//	 -> security headers (auth prefix only: every answer, errors included)
//	 -> CORS (preflights answered here)
//	 -> clean-path check (400 bad_request, before any target sees the path)
//	 -> the target
//
// A request therefore reads the path three times in all: once to match, once to check
// it is clean, once in the target.
type router struct {
	jwks       http.Handler // GET /.well-known/jwks.json; nil: none
	authPrefix string
	auth       http.Handler
	routes     []target // longest prefix first
	fallback   http.Handler
}

// target is one proxy route's chain.
type target struct {
	prefix string
	chain  http.Handler
}

// routerParts are the targets and the layers around them.
type routerParts struct {
	AuthPrefix  string
	Agent       http.Handler
	Routes      []proxy.RouteHandler // longest prefix first (proxy.Handler.Routes)
	Static      http.Handler         // nil: no SPA files, a JSON 404 instead
	CORS        *web.CORS
	BodyTimeout time.Duration    // server.body_timeout
	Tracing     *tracing.Tracing // nil: no spans
	Metrics     *metrics.Metrics
	Logger      *slog.Logger
	JWKS        http.Handler // the minted tokens' key set; nil: none
}

func newRouter(p routerParts) *router {
	// chain wraps h in the layers every target shares; label is its metric label.
	chain := func(label string, h http.Handler) http.Handler {
		h = p.CORS.Wrap(cleanPathOnly(h))
		if label == "auth" {
			h = secureHeaders(h)
		}
		h = web.BodyTimeout(h, p.BodyTimeout)
		h = p.Tracing.Handler(h, label)
		return p.Metrics.RequestLog(h, func(*http.Request) string { return label }, p.Logger)
	}
	rt := &router{authPrefix: p.AuthPrefix, auth: chain("auth", p.Agent)}
	if p.JWKS != nil {
		rt.jwks = chain("jwks", p.JWKS)
	}
	for _, r := range p.Routes {
		rt.routes = append(rt.routes, target{prefix: r.Prefix, chain: chain(r.Prefix, r.Handler)})
	}
	if p.Static != nil {
		rt.fallback = chain("static", p.Static)
	} else {
		rt.fallback = chain("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			web.Error(w, http.StatusNotFound, web.CodeNotFound)
		}))
	}
	return rt
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt.match(r.URL.Path).ServeHTTP(w, r)
}

// match returns the chain of the target that takes path.
func (rt *router) match(path string) http.Handler {
	if path == jwksPath && rt.jwks != nil {
		return rt.jwks
	}
	if rest, ok := strings.CutPrefix(path, rt.authPrefix); ok && (rest == "" || rest[0] == '/') {
		return rt.auth
	}
	for _, t := range rt.routes {
		if strings.HasPrefix(path, t.prefix) {
			return t.chain
		}
	}
	return rt.fallback
}

// jwksPath is where the public listener publishes the minted tokens' key set.
const jwksPath = "/.well-known/jwks.json"

// cleanPathOnly refuses a path that is not already clean (web.CleanPath) before next
// sees it, whatever next is for.
func cleanPathOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !web.CleanPath(r.URL) {
			web.Error(w, http.StatusBadRequest, web.CodeBadRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// secureHeaders puts the security headers of the auth prefix on every answer of next, a
// 400 for an unclean path and a CORS preflight included: never cached, never framed.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		web.SecureHeaders(w.Header())
		next.ServeHTTP(w, r)
	})
}
