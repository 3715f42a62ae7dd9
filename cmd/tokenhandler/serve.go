package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/config"
	"github.com/tokenhandler/tokenhandler/metrics"
	"github.com/tokenhandler/tokenhandler/oauthagent"
	"github.com/tokenhandler/tokenhandler/proxy"
	"github.com/tokenhandler/tokenhandler/redisclient"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/web"
)

// app is tokenhandler wired from a Config: the public handler, the admin handler and
// the background work (discovery) they need.
type app struct {
	public  http.Handler
	admin   http.Handler
	agent   *oauthagent.Agent
	metrics *metrics.Metrics
	log     *slog.Logger
	// closeRedis ends the Redis subscription and closes the client (a no-op without
	// redis.url).
	closeRedis func()
}

// newApp translates cfg into the packages' own options and connects them.
func newApp(cfg *config.Config, logger *slog.Logger) (*app, error) {
	// Log lines written while serving a request carry its request id.
	logger = slog.New(metrics.NewLogHandler(logger.Handler()))
	m := metrics.New()
	var keys []session.KeyPair
	for i, k := range cfg.Cookies.Keys {
		kp, err := session.ParseKeyPair(string(k))
		if err != nil {
			return nil, fmt.Errorf("cookies.keys[%d]: %w", i, err)
		}
		keys = append(keys, kp)
	}
	prefix := cfg.AuthPrefix
	refreshPaths := []string{prefix + "/refresh", prefix + "/logout", prefix + "/userinfo"}
	var routes []proxy.Route
	for _, r := range cfg.Routes {
		u, err := url.Parse(r.Upstream)
		if err != nil {
			return nil, fmt.Errorf("routes: %s: upstream: %w", r.Path, err)
		}
		routes = append(routes, proxy.Route{Path: r.Path, Upstream: u, StripPrefix: r.StripPrefix, Methods: r.Methods, Timeout: r.Timeout})
		refreshPaths = append(refreshPaths, r.Path)
	}
	cookieOpts := session.CookieOptions{
		Keys:         keys,
		Prefix:       cfg.Cookies.Prefix,
		Insecure:     !cfg.Cookies.Secure,
		RefreshPaths: refreshPaths,
		Lifetime:     cfg.Session.Lifetime,
	}
	// Redis, when configured, holds the sessions (store: redis) or only what replicas
	// share (refresh coordination, back-channel logout's deny list).
	var (
		shared      *session.Redis
		closeRedis  = func() {}
		store       session.Store
		backchannel oauthagent.BackchannelSessions
		built       bool
	)
	defer func() {
		if !built {
			closeRedis()
		}
	}()
	if cfg.Redis.URL != "" {
		client, mode, err := redisclient.New(redisclient.Options{
			URL:                string(cfg.Redis.URL),
			DialTimeout:        cfg.Redis.DialTimeout,
			ReadTimeout:        cfg.Redis.ReadTimeout,
			WriteTimeout:       cfg.Redis.WriteTimeout,
			MaxRetries:         cfg.Redis.MaxRetries,
			PoolSize:           cfg.Redis.PoolSize,
			TLSCAFile:          cfg.Redis.TLSCAFile,
			InsecureSkipVerify: cfg.Redis.TLSInsecureSkipVerify,
		})
		if err != nil {
			return nil, fmt.Errorf("redis.url (TH_REDIS_URL): %w", err)
		}
		redisclient.LogTo(logger)
		shared = session.NewRedis(client, session.RedisOptions{KeyPrefix: cfg.Redis.KeyPrefix, Logger: logger, OnError: m.RedisError})
		closeRedis = func() {
			_ = shared.Close()
			_ = client.Close()
		}
		logger.Info("redis configured", "mode", mode, "store", cfg.Session.Store, "key_prefix", cfg.Redis.KeyPrefix)
	}
	if cfg.Session.Store == "redis" {
		rs, err := session.NewRedisStore(shared, session.RedisStoreOptions{
			Keys:        keys,
			Prefix:      cfg.Cookies.Prefix,
			Insecure:    !cfg.Cookies.Secure,
			Lifetime:    cfg.Session.Lifetime,
			IdleTimeout: cfg.Session.IdleTimeout,
		})
		if err != nil {
			return nil, err
		}
		store, backchannel = rs, rs
	} else {
		if shared != nil {
			deny := session.NewDenyList(shared, session.DenyListOptions{Lifetime: cfg.Session.Lifetime, Logger: logger})
			cookieOpts.Ended, backchannel = deny.Ended, deny
		}
		cs, err := session.NewCookieStore(cookieOpts)
		if err != nil {
			return nil, err
		}
		store = cs
	}
	logins, err := session.NewLoginJar(session.LoginOptions{Keys: keys, Prefix: cookieOpts.Prefix, Insecure: cookieOpts.Insecure})
	if err != nil {
		return nil, err
	}
	coord := session.NewCoordinator(session.CoordinatorOptions{
		Grace:   cfg.Session.RotationGrace,
		Timeout: cfg.Session.RefreshTimeout,
		Logger:  logger,
		Redis:   shared,
	})
	csrf := &web.CSRF{Header: cfg.CSRF.Header, PublicOrigin: cfg.PublicOrigin(), AllowedOrigins: cfg.CORS.AllowedOrigins}
	agent, err := oauthagent.New(store, logins, coord, oauthagent.Options{
		Issuer:                cfg.OIDC.Issuer,
		BackchannelBaseURL:    cfg.OIDC.BackchannelBaseURL,
		ClientID:              cfg.OIDC.ClientID,
		ClientSecret:          string(cfg.OIDC.ClientSecret),
		TokenAuthMethod:       cfg.OIDC.TokenAuthMethod,
		Scopes:                cfg.OIDC.Scopes,
		SigningAlgs:           cfg.OIDC.IDTokenSigningAlgs,
		RedirectURL:           cfg.RedirectURL(),
		PostLogoutRedirectURL: cfg.OIDC.PostLogoutRedirectURL,
		ErrorPath:             cfg.OIDC.ErrorPath,
		AuthPrefix:            prefix,
		APIPaths:              apiPaths(routes),
		Lifetime:              cfg.Session.Lifetime,
		RefreshSkew:           cfg.Session.RefreshSkew,
		CSRF:                  csrf,
		HTTPClient:            &http.Client{Timeout: cfg.OIDC.HTTPTimeout, Transport: m.Transport(http.DefaultTransport)},
		Logger:                logger,
		Observer:              m,
		Backchannel:           backchannel,
	})
	if err != nil {
		return nil, err
	}
	var trusted []netip.Prefix
	for _, p := range cfg.TrustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies: %w", err)
		}
		trusted = append(trusted, pfx)
	}
	px, err := proxy.New(store, agent.Refresher(), proxy.Options{
		Routes:         routes,
		RefreshSkew:    cfg.Session.RefreshSkew,
		CSRF:           csrf,
		TrustedProxies: trusted,
		OwnCookie:      session.NewCookieNames(cfg.Cookies.Prefix, !cfg.Cookies.Secure).Owns,
		Logger:         logger,
		OnUpstream:     m.Upstream,
	})
	if err != nil {
		return nil, err
	}
	var static http.Handler
	if cfg.Static.Dir != "" {
		static = staticHandler(cfg.Static.Dir)
	}
	cors := &web.CORS{AllowedOrigins: cfg.CORS.AllowedOrigins, AllowHeaders: []string{csrf.HeaderName(), "Content-Type"}}
	isAuth := func(p string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }
	// route names a request for metrics: a route prefix, never the raw path.
	route := func(r *http.Request) string {
		p := r.URL.Path
		if isAuth(p) {
			return "auth"
		}
		if rt, ok := px.RouteOf(p); ok {
			return rt
		}
		if static != nil {
			return "static"
		}
		return "other"
	}
	routed := cors.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A path that is not already clean never reaches routing, whatever it is for.
		if !proxy.CleanPath(r.URL) {
			web.Error(w, http.StatusBadRequest, web.CodeBadRequest)
			return
		}
		p := r.URL.Path
		switch {
		case isAuth(p):
			agent.ServeHTTP(w, r)
		case px.Match(p):
			px.ServeHTTP(w, r)
		case static != nil:
			static.ServeHTTP(w, r)
		default:
			web.Error(w, http.StatusNotFound, web.CodeNotFound)
		}
	}))
	public := m.RequestLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer under the auth prefix, a 400 for an unclean path or a CORS
		// preflight included, is never cached and never framed.
		if isAuth(r.URL.Path) {
			web.SecureHeaders(w.Header())
		}
		routed.ServeHTTP(w, r)
	}), route, logger)

	admin := http.NewServeMux()
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		web.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !agent.Ready() {
			web.JSON(w, http.StatusServiceUnavailable, map[string]string{"status": "provider not discovered yet"})
			return
		}
		if shared != nil {
			if err := shared.Ping(r.Context()); err != nil {
				logger.WarnContext(r.Context(), "readyz: redis unreachable", "err", err)
				web.JSON(w, http.StatusServiceUnavailable, map[string]string{"status": "redis unreachable"})
				return
			}
		}
		web.JSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	admin.Handle("GET /metrics", m.Handler())
	built = true
	return &app{public: public, admin: admin, agent: agent, metrics: m, log: logger, closeRedis: closeRedis}, nil
}

// apiPaths are the route prefixes, which are never pages of the SPA.
func apiPaths(routes []proxy.Route) []string {
	var ps []string
	for _, r := range routes {
		ps = append(ps, r.Path)
	}
	return ps
}

// Server limits: no WriteTimeout, which would cut streams (SSE, WebSocket, downloads).
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10 // a 4 KB token makes about 11 KB of cookies
	shutdownGrace     = 30 * time.Second
)

func newServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// serve runs tokenhandler until ctx ends, then drains in-flight requests.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	a, err := newApp(cfg, logger)
	if err != nil {
		return err
	}
	defer a.closeRedis()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = a.agent.Run(ctx) }()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen (TH_LISTEN): %w", err)
	}
	pub := newServer(a.public, logger)
	servers := []*http.Server{pub}
	errc := make(chan error, 2)
	go func() {
		var err error
		if cfg.TLS.CertFile != "" {
			pub.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			err = pub.ServeTLS(ln, cfg.TLS.CertFile, cfg.TLS.KeyFile)
		} else {
			err = pub.Serve(ln)
		}
		errc <- err
	}()
	logger.Info("tokenhandler listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "tls", cfg.TLS.CertFile != "")
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			_ = pub.Close()
			return fmt.Errorf("admin_listen (TH_ADMIN_LISTEN): %w", err)
		}
		adm := newServer(a.admin, logger)
		servers = append(servers, adm)
		go func() { errc <- adm.Serve(aln) }()
		logger.Info("admin listening", "addr", aln.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	logger.Info("shutting down: draining in-flight requests")
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer scancel()
	var errs []error
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
