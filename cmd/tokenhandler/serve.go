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
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/config"
	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/josekey"
	"github.com/tokenhandler/tokenhandler/metrics"
	"github.com/tokenhandler/tokenhandler/mint"
	"github.com/tokenhandler/tokenhandler/oauthagent"
	"github.com/tokenhandler/tokenhandler/proxy"
	"github.com/tokenhandler/tokenhandler/redisclient"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/tracing"
	"github.com/tokenhandler/tokenhandler/web"
)

// app is tokenhandler wired from a Config: the public handler, the admin handler and
// the background work (discovery) they need.
type app struct {
	public http.Handler
	admin  http.Handler
	agent  *oauthagent.Agent
	// closeRedis ends the Redis subscription and closes the client (a no-op without
	// redis.url).
	closeRedis func()
	// tracing flushes its spans at shutdown; nil when tracing is off.
	tracing *tracing.Tracing
}

// newApp translates cfg into the packages' own options and connects them, one builder
// per part: keys and routes, Redis, the session stores, the agent, the proxy, then the
// public router and the admin mux.
func newApp(cfg *config.Config, logger *slog.Logger) (_ *app, err error) {
	// Log lines written while serving a request carry its request id.
	logger = slog.New(metrics.NewLogHandler(logger.Handler()))
	m := metrics.New()
	tr, err := tracing.New(context.Background(), cfg.Tracing.Enabled, version)
	if err != nil {
		return nil, fmt.Errorf("tracing.enabled (TH_TRACING_ENABLED): %w", err)
	}
	keys, err := cookieKeys(cfg)
	if err != nil {
		return nil, err
	}
	routes, err := proxyRoutes(cfg)
	if err != nil {
		return nil, err
	}
	shared, closeRedis, err := newRedis(cfg, logger, m)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			closeRedis()
		}
	}()
	// One coordinator: the agent refreshes through it, and logout deletes the last
	// rotation's grace entry through it.
	coord := session.NewCoordinator(session.CoordinatorOptions{
		Grace:   cfg.Session.RotationGrace,
		Timeout: cfg.Session.RefreshTimeout,
		Logger:  logger,
		Redis:   shared,
	})
	stores, err := newStores(cfg, keys, routes, shared, coord, logger)
	if err != nil {
		return nil, err
	}
	csrf := &web.CSRF{Header: cfg.CSRF.Header, PublicOrigin: cfg.PublicOrigin(), AllowedOrigins: cfg.CORS.AllowedOrigins}
	sk, err := newSenderKeys(cfg, logger)
	if err != nil {
		return nil, err
	}
	signer, err := newSigner(cfg)
	if err != nil {
		return nil, err
	}
	agent, err := newAgent(cfg, stores, routes, coord, signer, csrf, sk, m, tr, logger)
	if err != nil {
		return nil, err
	}
	px, err := newProxy(cfg, stores.store, agent.Refresher(), agent.Refresher(), routes, csrf, sk.dpop, m, tr, logger)
	if err != nil {
		return nil, err
	}
	parts := routerParts{
		AuthPrefix:  cfg.AuthPrefix,
		Agent:       agent,
		Routes:      px.Routes(),
		CORS:        &web.CORS{AllowedOrigins: cfg.CORS.AllowedOrigins, AllowHeaders: []string{csrf.HeaderName(), "Content-Type"}},
		BodyTimeout: cfg.Server.BodyTimeout,
		Tracing:     tr,
		Metrics:     m,
		Logger:      logger,
	}
	if signer != nil {
		parts.JWKS = signer.JWKSHandler()
	}
	if cfg.Static.Dir != "" {
		parts.Static = staticHandler(cfg.Static.Dir)
	}
	return &app{
		public:     newRouter(parts),
		admin:      newAdmin(agent, shared, m, signer, logger),
		agent:      agent,
		closeRedis: closeRedis,
		tracing:    tr,
	}, nil
}

// cookieKeys parses cookies.keys: the first pair seals, every pair opens.
func cookieKeys(cfg *config.Config) ([]session.KeyPair, error) {
	var keys []session.KeyPair
	for i, k := range cfg.Cookies.Keys {
		kp, err := session.ParseKeyPair(string(k))
		if err != nil {
			return nil, fmt.Errorf("cookies.keys[%d]: %w", i, err)
		}
		keys = append(keys, kp)
	}
	return keys, nil
}

// proxyRoutes translates routes into the proxy's own type.
func proxyRoutes(cfg *config.Config) ([]proxy.Route, error) {
	var routes []proxy.Route
	for _, r := range cfg.Routes {
		u, err := url.Parse(r.Upstream)
		if err != nil {
			return nil, fmt.Errorf("routes: %s: upstream: %w", r.Path, err)
		}
		routes = append(routes, proxy.Route{Path: r.Path, Upstream: u, StripPrefix: r.StripPrefix, Methods: r.Methods, Timeout: r.Timeout, Token: tokenPolicy(r.Token, u, cfg.OIDC.DPoP)})
	}
	return routes, nil
}

// newRedis connects to redis.url, when set: it holds the sessions (store: redis) or only
// what replicas share (refresh coordination, back-channel logout's deny list). Without
// redis.url it returns nil and a no-op close.
func newRedis(cfg *config.Config, logger *slog.Logger, m *metrics.Metrics) (*session.Redis, func(), error) {
	if cfg.Redis.URL == "" {
		return nil, func() {}, nil
	}
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
		return nil, nil, fmt.Errorf("redis.url (TH_REDIS_URL): %w", err)
	}
	redisclient.LogTo(logger)
	shared := session.NewRedis(client, session.RedisOptions{KeyPrefix: cfg.Redis.KeyPrefix, Logger: logger, OnError: m.RedisError})
	logger.Info("redis configured", "mode", mode, "store", cfg.Session.Store, "key_prefix", cfg.Redis.KeyPrefix)
	return shared, func() {
		_ = shared.Close()
		_ = client.Close()
	}, nil
}

// stores are where sessions and login attempts live, and what ends sessions for
// back-channel logout (nil without Redis).
type stores struct {
	store       session.Store
	logins      *session.LoginJar
	backchannel oauthagent.BackchannelSessions
}

// newStores builds the session store and the login jar. Logout is final in both stores:
// the Redis store deletes the session's entry; the cookie store records the session id
// as ended until its expiry (in the shared deny list with redis.url, in the process
// otherwise), and both delete the grace entry of the session's last rotation.
func newStores(cfg *config.Config, keys []session.KeyPair, routes []proxy.Route, shared *session.Redis, coord *session.Coordinator, logger *slog.Logger) (*stores, error) {
	prefix := cfg.AuthPrefix
	refreshPaths := []string{prefix + "/refresh", prefix + "/logout", prefix + "/userinfo"}
	for _, r := range routes {
		refreshPaths = append(refreshPaths, r.Path)
	}
	cookieOpts := session.CookieOptions{
		Keys:         keys,
		Prefix:       cfg.Cookies.Prefix,
		Insecure:     !cfg.Cookies.Secure,
		RefreshPaths: refreshPaths,
		Lifetime:     cfg.Session.Lifetime,
	}
	var st stores
	if cfg.Session.Store == "redis" {
		rs, err := session.NewRedisStore(shared, session.RedisStoreOptions{
			Keys:        keys,
			Prefix:      cfg.Cookies.Prefix,
			Insecure:    !cfg.Cookies.Secure,
			Lifetime:    cfg.Session.Lifetime,
			IdleTimeout: cfg.Session.IdleTimeout,
			Coordinator: coord,
		})
		if err != nil {
			return nil, err
		}
		st.store, st.backchannel = rs, rs
	} else {
		var deny *session.DenyList
		if shared != nil {
			deny = session.NewDenyList(shared, session.DenyListOptions{Lifetime: cfg.Session.Lifetime, Logger: logger})
			cookieOpts.Ended, st.backchannel = deny.Ended, deny
		} else {
			deny = session.NewLocalDenyList(session.DenyListOptions{Lifetime: cfg.Session.Lifetime, Logger: logger})
		}
		cookieOpts.Logout = &session.Logout{Deny: deny, Coordinator: coord}
		cs, err := session.NewCookieStore(cookieOpts)
		if err != nil {
			return nil, err
		}
		st.store = cs
	}
	logins, err := session.NewLoginJar(session.LoginOptions{Keys: keys, Prefix: cookieOpts.Prefix, Insecure: cookieOpts.Insecure})
	if err != nil {
		return nil, err
	}
	st.logins = logins
	return &st, nil
}

// senderKeys are the client's private keys: the private_key_jwt key and the DPoP
// proofer, each nil when its feature is off. The proofer binds the session's tokens
// only with oidc.dpop (session); else it is there for the routes whose token.dpop is
// true.
type senderKeys struct {
	client  *josekey.Key
	dpop    *dpop.Proofer
	session bool // oidc.dpop: the session's tokens are bound to dpop
}

// sessionDPoP is the proofer of the session's tokens: nil unless oidc.dpop.
func (sk senderKeys) sessionDPoP() *dpop.Proofer {
	if !sk.session {
		return nil
	}
	return sk.dpop
}

// newSenderKeys loads oidc.client_key_file (private_key_jwt) and, with oidc.dpop or a
// route whose token.dpop is true, the DPoP key of dpop.key_file, or generates one for
// this process alone.
func newSenderKeys(cfg *config.Config, logger *slog.Logger) (senderKeys, error) {
	var sk senderKeys
	if cfg.OIDC.TokenAuthMethod == "private_key_jwt" {
		k, err := josekey.Load(cfg.OIDC.ClientKeyFile)
		if err != nil {
			return sk, fmt.Errorf("oidc.client_key_file (TH_OIDC_CLIENT_KEY_FILE): %w", err)
		}
		sk.client = k
	}
	if !cfg.DPoPKeyNeeded() {
		return sk, nil
	}
	sk.session = cfg.OIDC.DPoP
	var k *josekey.Key
	var err error
	switch {
	case cfg.DPoP.KeyFile != "":
		k, err = josekey.Load(cfg.DPoP.KeyFile)
	case sk.session:
		logger.Warn("dpop.key_file is empty: a DPoP key was generated for this process; fit for one replica only, and a restart ends every session")
		k, err = josekey.Generate(josekey.EdDSA)
	default:
		logger.Warn("dpop.key_file is empty: a DPoP key was generated for this process for the routes whose token.dpop is true; fit for one replica only")
		k, err = josekey.Generate(josekey.EdDSA)
	}
	if err == nil {
		sk.dpop, err = dpop.NewProofer(k, nil)
	}
	if err != nil {
		return sk, fmt.Errorf("dpop.key_file (TH_DPOP_KEY_FILE): %w", err)
	}
	if sk.session {
		logger.Info("DPoP on: tokens are bound to the key", "jkt", sk.dpop.Thumbprint())
	} else {
		logger.Info("DPoP on for the routes whose token.dpop is true: their derived tokens are bound to the key", "jkt", sk.dpop.Thumbprint())
	}
	return sk, nil
}

func newAgent(cfg *config.Config, st *stores, routes []proxy.Route, coord *session.Coordinator, signer *mint.Signer, csrf *web.CSRF, sk senderKeys, m *metrics.Metrics, tr *tracing.Tracing, logger *slog.Logger) (*oauthagent.Agent, error) {
	var apiPaths, resources []string // never pages of the SPA: a return_to under one is refused
	for _, r := range routes {
		apiPaths = append(apiPaths, r.Path)
		if r.Token != nil && r.Token.Via == "refresh" {
			for _, res := range r.Token.Resource {
				if !slices.Contains(resources, res) {
					resources = append(resources, res)
				}
			}
		}
	}
	return oauthagent.New(st.store, st.logins, coord, oauthagent.Options{
		Issuer:                cfg.OIDC.Issuer,
		BackchannelBaseURL:    cfg.OIDC.BackchannelBaseURL,
		ClientID:              cfg.OIDC.ClientID,
		ClientSecret:          string(cfg.OIDC.ClientSecret),
		TokenAuthMethod:       cfg.OIDC.TokenAuthMethod,
		ClientKey:             sk.client,
		PAR:                   cfg.OIDC.PAR,
		DPoP:                  sk.sessionDPoP(),
		RouteDPoP:             sk.dpop,
		Profile:               cfg.OIDC.Profile,
		Resources:             resources,
		Signer:                signer,
		IntrospectionEndpoint: cfg.OIDC.IntrospectionEndpoint,
		// The same check as check-config's, on the discovery serve fetched: a route
		// policy the provider cannot serve stops tokenhandler before it is ready.
		CheckProvider: func(f oauthagent.ProviderFeatures) error {
			return cfg.CheckProvider(config.ProviderFeatures{IntrospectionEndpoint: f.IntrospectionEndpoint, GrantTypes: f.GrantTypes})
		},
		Scopes:                cfg.OIDC.Scopes,
		SigningAlgs:           cfg.OIDC.IDTokenSigningAlgs,
		RedirectURL:           cfg.RedirectURL(),
		PostLogoutRedirectURL: cfg.OIDC.PostLogoutRedirectURL,
		ErrorPath:             cfg.OIDC.ErrorPath,
		AuthPrefix:            cfg.AuthPrefix,
		APIPaths:              apiPaths,
		Lifetime:              cfg.Session.Lifetime,
		RefreshSkew:           cfg.Session.RefreshSkew,
		CSRF:                  csrf,
		HTTPClient:            &http.Client{Timeout: cfg.OIDC.HTTPTimeout, Transport: tr.Transport(m.Transport(http.DefaultTransport), "provider")},
		Logger:                logger,
		Observer:              m,
		Backchannel:           st.backchannel,
	})
}

func newProxy(cfg *config.Config, store session.Store, tokens proxy.Refresher, deriver proxy.Deriver, routes []proxy.Route, csrf *web.CSRF, proofer *dpop.Proofer, m *metrics.Metrics, tr *tracing.Tracing, logger *slog.Logger) (*proxy.Handler, error) {
	var trusted []netip.Prefix
	for _, p := range cfg.TrustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies: %w", err)
		}
		trusted = append(trusted, pfx)
	}
	return proxy.New(store, tokens, proxy.Options{
		Routes:         routes,
		RefreshSkew:    cfg.Session.RefreshSkew,
		CSRF:           csrf,
		TrustedProxies: trusted,
		DPoP:           proofer,
		ReplayMemory:   int64(cfg.Proxy.ReplayMemory),
		Transport:      tr.Transport(proxy.DefaultTransport(), "upstream"),
		Tracer:         tr.Tracer(),
		OwnCookie:      session.NewCookieNames(cfg.Cookies.Prefix, !cfg.Cookies.Secure).Owns,
		Logger:         logger,
		OnUpstream:     m.Upstream,
		OnRefresh:      m.RequestRefresh,
		OnError:        m.ProxyRefusal,
		Deriver:        deriver,
		OnDerive:       m.Derive,
	})
}

// newAdmin is the admin listener's mux: liveness, readiness (discovery done, Redis
// reachable) and the metrics.
func newAdmin(agent *oauthagent.Agent, shared *session.Redis, m *metrics.Metrics, signer *mint.Signer, logger *slog.Logger) http.Handler {
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
	if signer != nil {
		admin.Handle("GET /jwks.json", signer.JWKSHandler())
	}
	return admin
}

// Server limits beside server.*: no WriteTimeout, which would cut streams (SSE,
// WebSocket, downloads); the body timeout is the router's (web.BodyTimeout).
const (
	maxHeaderBytes = 64 << 10 // a 4 KB token makes about 11 KB of cookies
	shutdownGrace  = 30 * time.Second
)

func newServer(h http.Handler, cfg *config.Config, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// listenAddrs are the addresses serve listens on; Admin is nil without admin_listen.
type listenAddrs struct{ Public, Admin net.Addr }

// serve runs tokenhandler until ctx ends, then drains in-flight requests. listening, if
// not nil, is called once every listener is bound (tests listen on port 0).
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger, listening func(listenAddrs)) error {
	a, err := newApp(cfg, logger)
	if err != nil {
		return err
	}
	defer a.closeRedis()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := a.tracing.Shutdown(sctx); err != nil {
			logger.Warn("tracing: flushing spans at shutdown failed", "err", err)
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A provider that cannot serve the configuration (oidc.par required without PAR,
	// fapi2 without RFC 9207 iss, a route token policy config.CheckProvider refuses)
	// stops tokenhandler: retrying would not help. A provider that does not answer is
	// retried, never a refusal.
	unfit := make(chan error, 1)
	go func() {
		if err := a.agent.Run(ctx); errors.Is(err, oauthagent.ErrProviderUnfit) {
			unfit <- err
		}
	}()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen (TH_LISTEN): %w", err)
	}
	pub := newServer(a.public, cfg, logger)
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
	addrs := listenAddrs{Public: ln.Addr()}
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			_ = pub.Close()
			return fmt.Errorf("admin_listen (TH_ADMIN_LISTEN): %w", err)
		}
		adm := newServer(a.admin, cfg, logger)
		servers = append(servers, adm)
		go func() { errc <- adm.Serve(aln) }()
		logger.Info("admin listening", "addr", aln.Addr().String())
		addrs.Admin = aln.Addr()
	}
	if listening != nil {
		listening(addrs)
	}

	var stopErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	case err := <-unfit:
		stopErr = fmt.Errorf("serve: %w", err)
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
	return errors.Join(append(errs, stopErr)...)
}

// The agent's Refresher is what the proxy refreshes through.
var _ proxy.Refresher = (*oauthagent.Refresher)(nil)

// The agent's Refresher derives the routes' tokens.
var _ proxy.Deriver = (*oauthagent.Refresher)(nil)

// tokenPolicy translates a route's token block; nil for the session's token as issued.
// oidcDPoP is oidc.dpop, token.dpop's default.
func tokenPolicy(t config.RouteToken, upstream *url.URL, oidcDPoP bool) *session.TokenPolicy {
	if !t.Derives() {
		return nil
	}
	return &session.TokenPolicy{
		Via: t.EffectiveVia(), Resource: t.Resource, Audience: t.Audience, Scope: t.Scope,
		Format: t.EffectiveFormat(), JWTFrom: t.EffectiveJWTFrom(),
		Upstream: upstream.Scheme + "://" + upstream.Host,
		DPoP:     t.EffectiveDPoP(oidcDPoP),
	}
}

// newSigner loads token_signing.keys (the first signs); nil without keys.
func newSigner(cfg *config.Config) (*mint.Signer, error) {
	if len(cfg.TokenSigning.Keys) == 0 {
		return nil, nil
	}
	var keys []*mint.Key
	for i, path := range cfg.TokenSigning.Keys {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("token_signing.keys[%d] (TH_TOKEN_SIGNING_KEYS): %w", i, err)
		}
		k, err := mint.ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("token_signing.keys[%d] (TH_TOKEN_SIGNING_KEYS): %w", i, err)
		}
		keys = append(keys, k)
	}
	return mint.NewSigner(keys, mint.Options{Issuer: strings.TrimSuffix(cfg.PublicURL, "/"), TTL: cfg.TokenSigning.TTL})
}
