package proxy_test

import (
	"log"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/tokenhandler/tokenhandler/proxy"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// How cmd/tokenhandler wires the proxy: the store and the refresher come from packages
// session and oauthagent; CORS preflights are answered in front of it; every request's
// path is checked with CleanPath before any routing.
func ExampleNew() {
	var (
		store     session.Store   // session.CookieStore or session.RedisStore
		refresher proxy.Refresher // *oauthagent.Refresher
		names     session.CookieNames
		auth      http.Handler // the OAuth agent's /auth/* handler
	)
	api, _ := url.Parse("http://127.0.0.1:9000")
	csrf := &web.CSRF{Header: "X-CSRF", PublicOrigin: "https://app.example.com"}
	p, err := proxy.New(store, refresher, proxy.Options{
		Routes:         []proxy.Route{{Path: "/api/", Upstream: api, Timeout: 30 * time.Second}},
		RefreshSkew:    30 * time.Second,
		CSRF:           csrf,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		OwnCookie:      names.Owns,
	})
	if err != nil {
		log.Fatal(err)
	}
	cors := &web.CORS{AllowedOrigins: nil, AllowHeaders: []string{csrf.HeaderName(), "Content-Type"}}
	top := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !web.CleanPath(r.URL):
			web.Error(w, http.StatusBadRequest, web.CodeBadRequest)
		case p.Match(r.URL.Path):
			p.ServeHTTP(w, r)
		default:
			auth.ServeHTTP(w, r)
		}
	})
	_ = &http.Server{Handler: cors.Wrap(top), MaxHeaderBytes: 64 << 10}
}
