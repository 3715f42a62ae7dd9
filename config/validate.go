package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/tokenhandler/tokenhandler/josekey"
	"github.com/tokenhandler/tokenhandler/session"
)

// Allowed values, in the order messages list them.
var (
	tokenAuthMethods = []string{"client_secret_basic", "client_secret_post", "private_key_jwt"}
	parModes         = []string{"auto", "required", "off"}
	profiles         = []string{"", "fapi2"}
	// fapi2Algs are the ID-token algorithms the FAPI 2.0 Security Profile allows.
	fapi2Algs   = []string{"PS256", "ES256", "EdDSA"}
	signingAlgs = []string{"RS256", "ES256", "PS256", "RS384", "RS512", "ES384", "ES512", "PS384", "PS512", "EdDSA"}
	stores      = []string{"cookie", "redis"}
	logLevels   = []string{"debug", "info", "warn", "error"}
	logFormats  = []string{"json", "text"}
	httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
)

// problems collects Validate's findings, each naming its key and variable.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s (%s) %s", key, EnvName(key), fmt.Sprintf(format, args...)))
}

// addIndexed names an element of a list key: "routes[1].path (TH_ROUTES) ...".
func (p *problems) addIndexed(key string, i int, sub, format string, args ...any) {
	name := fmt.Sprintf("%s[%d]", key, i)
	if sub != "" {
		name += "." + sub
	}
	*p = append(*p, fmt.Errorf("%s (%s) %s", name, EnvName(key), fmt.Sprintf(format, args...)))
}

// Validate reports every problem of the configuration at once (errors.Join), each naming
// the key and its environment variable, e.g.
//
//	oidc.issuer (TH_OIDC_ISSUER) is required
//
// Messages never contain a secret value. Validate reads the file system only to check that
// static.dir, the TLS files and redis.tls_ca_file exist, and to parse the private keys of
// oidc.client_key_file and dpop.key_file.
func (c *Config) Validate() error {
	var p problems
	c.validateServer(&p)
	c.validateOIDC(&p)
	c.validateCookies(&p)
	c.validateSession(&p)
	c.validateRedis(&p)
	c.validateRoutes(&p)
	c.validateTokens(&p)
	c.validateLimits(&p)
	c.validateHTTP(&p)
	return errors.Join(p...)
}

func (c *Config) validateServer(p *problems) {
	checkAddr(p, "listen", c.Listen, true)
	checkAddr(p, "admin_listen", c.AdminListen, false)
	// Port 0 asks for any free port, so two such listeners never collide.
	if c.Listen != "" && c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") {
		p.add("admin_listen", "must differ from listen (%s)", c.Listen)
	}

	if c.PublicURL == "" {
		p.add("public_url", "is required (the origin the browser sees, e.g. https://app.example.com)")
	} else if u, err := parseHTTPURL(c.PublicURL); err != nil {
		p.add("public_url", "%v", err)
	} else {
		switch {
		case u.Path != "" && u.Path != "/", u.RawQuery != "", u.ForceQuery, u.Fragment != "":
			p.add("public_url", "must be an origin (scheme://host[:port], optionally with a trailing /), got %q", c.PublicURL)
		case canonicalOrigin(u) != strings.TrimSuffix(c.PublicURL, "/"):
			p.add("public_url", "must be written as the browser writes it: %q", canonicalOrigin(u))
		case u.Scheme == "http" && c.Cookies.Secure && !isLoopbackHost(u.Hostname()):
			p.add("public_url", "is http:// on a non-loopback host, where browsers drop Secure cookies: use https://, or cookies.secure: false for plain-http local development")
		}
	}

	switch {
	case c.AuthPrefix == "":
		p.add("auth_prefix", "is required")
	case !strings.HasPrefix(c.AuthPrefix, "/"):
		p.add("auth_prefix", "must start with /, got %q", c.AuthPrefix)
	case c.AuthPrefix == "/":
		p.add("auth_prefix", `must not be "/"`)
	case strings.HasSuffix(c.AuthPrefix, "/"):
		p.add("auth_prefix", "must not end with /, got %q", c.AuthPrefix)
	case !isCleanPath(c.AuthPrefix):
		p.add("auth_prefix", "must be a clean path of letters, digits and -._~/, got %q", c.AuthPrefix)
	}
}

func (c *Config) validateOIDC(p *problems) {
	o := &c.OIDC
	if o.Issuer == "" {
		p.add("oidc.issuer", "is required")
	} else if u, err := parseHTTPURL(o.Issuer); err != nil {
		p.add("oidc.issuer", "%v", err)
	} else if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		p.add("oidc.issuer", "must not have a query or fragment")
	} else if err := httpsOffLoopback(u); err != nil {
		p.add("oidc.issuer", "%v", err)
	}
	if o.IntrospectionEndpoint != "" {
		// Access tokens and the client's credentials go there: the issuer's rule.
		if u, err := parseHTTPURL(o.IntrospectionEndpoint); err != nil {
			p.add("oidc.introspection_endpoint", "%v", err)
		} else if u.Fragment != "" || u.User != nil {
			p.add("oidc.introspection_endpoint", "must not have a fragment or user info")
		} else if err := httpsOffLoopback(u); err != nil {
			p.add("oidc.introspection_endpoint", "%v", err)
		}
	}
	if o.ClientID == "" {
		p.add("oidc.client_id", "is required")
	}
	c.validateClientAuth(p)
	c.validateProfile(p)
	if !slices.Contains(o.Scopes, "openid") {
		p.add("oidc.scopes", "must include openid")
	}
	for _, s := range o.Scopes {
		if !isScopeToken(s) {
			p.add("oidc.scopes", "has an invalid scope %q (no spaces, quotes or backslashes)", s)
		}
	}
	for _, a := range o.IDTokenSigningAlgs {
		if !slices.Contains(signingAlgs, a) {
			p.add("oidc.id_token_signing_algs", "has %q: allowed are %s (never none or HS*)", a, strings.Join(signingAlgs, ", "))
		}
	}
	if o.PostLogoutRedirectURL == "" {
		if c.PublicURL != "" { // otherwise public_url's own problem says it
			p.add("oidc.post_logout_redirect_url", "is required")
		}
	} else if u, err := parseHTTPURL(o.PostLogoutRedirectURL); err != nil {
		p.add("oidc.post_logout_redirect_url", "%v", err)
	} else if u.Fragment != "" {
		p.add("oidc.post_logout_redirect_url", "must not have a fragment")
	}
	switch {
	case o.ErrorPath == "":
		p.add("oidc.error_path", "is required")
	case !strings.HasPrefix(o.ErrorPath, "/") || strings.HasPrefix(o.ErrorPath, "//") || strings.ContainsAny(o.ErrorPath, `\?#`) || hasControl(o.ErrorPath):
		p.add("oidc.error_path", `must be a local path starting with / (not //, no \, query or fragment), got %q`, o.ErrorPath)
	}
	positive(p, "oidc.http_timeout", o.HTTPTimeout)
	if o.BackchannelBaseURL != "" {
		if u, err := parseHTTPURL(o.BackchannelBaseURL); err != nil {
			p.add("oidc.backchannel_base_url", "%v", err)
		} else if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil || (u.Path != "" && u.Path != "/") {
			p.add("oidc.backchannel_base_url", "must be scheme://host[:port] only: it replaces the scheme and host of the provider's URLs, whose paths are kept")
		}
	}
}

// validateClientAuth checks how the client authenticates (a secret, or private_key_jwt
// with oidc.client_key_file), PAR and the DPoP key.
func (c *Config) validateClientAuth(p *problems) {
	o := &c.OIDC
	privateKeyJWT := o.TokenAuthMethod == "private_key_jwt"
	switch {
	case privateKeyJWT && (o.ClientSecret != "" || o.ClientSecretFile != ""):
		p.add("oidc.client_secret", "must be empty with oidc.token_auth_method private_key_jwt: a client secret is never sent then")
	case privateKeyJWT:
		// No secret: the client authenticates with oidc.client_key_file.
	case o.ClientSecret != "" && o.ClientSecretFile != "" && !c.fromFile.clientSecret:
		p.add("oidc.client_secret", "and oidc.client_secret_file (TH_OIDC_CLIENT_SECRET_FILE) are both set: set one")
	case o.ClientSecret == "" && o.ClientSecretFile != "":
		p.add("oidc.client_secret_file", "was not read: use config.Load")
	case o.ClientSecret == "":
		p.add("oidc.client_secret", "is required (or oidc.client_secret_file, TH_OIDC_CLIENT_SECRET_FILE)")
	}
	if !slices.Contains(tokenAuthMethods, o.TokenAuthMethod) {
		p.add("oidc.token_auth_method", "must be one of %s, got %q", strings.Join(tokenAuthMethods, ", "), o.TokenAuthMethod)
	}
	switch {
	case privateKeyJWT && o.ClientKeyFile == "":
		p.add("oidc.client_key_file", "is required with oidc.token_auth_method private_key_jwt (tokenhandler keygen -client-key prints one)")
	case !privateKeyJWT && o.ClientKeyFile != "":
		p.add("oidc.client_key_file", "is set but oidc.token_auth_method is %q: set private_key_jwt, or remove the key", o.TokenAuthMethod)
	case o.ClientKeyFile != "":
		if _, err := josekey.Load(o.ClientKeyFile); err != nil {
			p.add("oidc.client_key_file", "%v", err)
		}
	}
	if !slices.Contains(parModes, o.PAR) {
		p.add("oidc.par", "must be one of %s, got %q", strings.Join(parModes, ", "), o.PAR)
	}
	if c.DPoP.KeyFile != "" {
		if k, err := josekey.Load(c.DPoP.KeyFile); err != nil {
			p.add("dpop.key_file", "%v", err)
		} else if k.Alg() != josekey.ES256 && k.Alg() != josekey.EdDSA {
			p.add("dpop.key_file", "holds a key that signs %s: DPoP keys must be EC P-256 (ES256) or Ed25519 (EdDSA)", k.Alg())
		}
	}
}

// validateProfile refuses what oidc.profile forbids. FAPI 2.0 Security Profile: no client
// secrets, PAR, sender-constrained (DPoP) tokens, ID tokens signed PS256, ES256 or EdDSA.
// (RFC 9207 iss is checked against discovery at start-up.)
func (c *Config) validateProfile(p *problems) {
	o := &c.OIDC
	if !slices.Contains(profiles, o.Profile) {
		p.add("oidc.profile", `must be "" or fapi2, got %q`, o.Profile)
		return
	}
	if o.Profile != "fapi2" {
		return
	}
	if o.TokenAuthMethod != "private_key_jwt" {
		p.add("oidc.token_auth_method", "is %q, which oidc.profile fapi2 forbids: use private_key_jwt", o.TokenAuthMethod)
	}
	if o.PAR == "off" {
		p.add("oidc.par", "is off, which oidc.profile fapi2 forbids: use required (or auto, which fapi2 makes required)")
	}
	if !o.DPoP {
		p.add("oidc.dpop", "is false, which oidc.profile fapi2 forbids: FAPI 2.0 needs sender-constrained tokens")
	}
	for _, a := range o.IDTokenSigningAlgs {
		if !slices.Contains(fapi2Algs, a) {
			p.add("oidc.id_token_signing_algs", "has %q, which oidc.profile fapi2 forbids: allowed are %s", a, strings.Join(fapi2Algs, ", "))
		}
	}
}

func (c *Config) validateCookies(p *problems) {
	k := &c.Cookies
	if !isCookiePrefix(k.Prefix) {
		p.add("cookies.prefix", "must be 1 to 32 letters, digits, - or _, got %q", k.Prefix)
	}
	switch {
	case len(k.Keys) > 0 && k.KeysFile != "" && !c.fromFile.keys:
		p.add("cookies.keys", "and cookies.keys_file (TH_COOKIES_KEYS_FILE) are both set: set one")
	case len(k.Keys) == 0 && k.KeysFile != "":
		p.add("cookies.keys_file", "was not read: use config.Load")
	case len(k.Keys) == 0:
		p.add("cookies.keys", "needs at least one key (tokenhandler keygen prints one)")
	}
	seen := make(map[Secret]bool)
	for i, key := range k.Keys {
		if _, err := session.ParseKeyPair(string(key)); err != nil {
			p.addIndexed("cookies.keys", i, "", "%v", err)
		}
		if seen[key] {
			p.addIndexed("cookies.keys", i, "", "repeats an earlier key")
		}
		if slices.Contains(DemoCookieKeys, string(key)) && !c.loopbackPublicURL() {
			p.addIndexed("cookies.keys", i, "", "is a published demo key: anyone can forge sessions with it; make your own with tokenhandler keygen (a demo key is accepted only with a loopback public_url)")
		}
		seen[key] = true
	}
}

// DemoCookieKeys are cookie keys published with the project's demos
// (docker-compose.yml). Validate accepts them only with a loopback public_url.
var DemoCookieKeys = []string{
	"p/atM/4EEieHumqWwOTW1Ctkw5MShqIpkRhuMQSniTk=:JM2zcdVBkyxXMF/LfcmgL4vTITl7cJ6c8wgZvGHRn0I=",
}

// loopbackPublicURL reports whether public_url names a loopback host.
func (c *Config) loopbackPublicURL() bool {
	u, err := url.Parse(c.PublicURL)
	return err == nil && u.Host != "" && isLoopbackHost(u.Hostname())
}

func (c *Config) validateSession(p *problems) {
	s := &c.Session
	if !slices.Contains(stores, s.Store) {
		p.add("session.store", "must be one of %s, got %q", strings.Join(stores, ", "), s.Store)
	}
	if s.Store == "redis" && c.Redis.URL == "" {
		p.add("redis.url", "is required with session.store: redis")
	}
	positive(p, "session.lifetime", s.Lifetime)
	positive(p, "session.idle_timeout", s.IdleTimeout)
	positive(p, "session.refresh_skew", s.RefreshSkew)
	positive(p, "session.rotation_grace", s.RotationGrace)
	positive(p, "session.refresh_timeout", s.RefreshTimeout)
	if s.RefreshSkew > 0 && s.Lifetime > 0 && s.RefreshSkew >= s.Lifetime {
		p.add("session.refresh_skew", "(%v) must be shorter than session.lifetime (%v)", s.RefreshSkew, s.Lifetime)
	}
	if m := c.MaxRouteTimeout(); s.RotationGrace > 0 && s.RotationGrace < m {
		p.add("session.rotation_grace", "(%v) must be at least the longest route timeout (%v): a request in flight with a rotated refresh token must still find the new tokens", s.RotationGrace, m)
	}
}

func (c *Config) validateRedis(p *problems) {
	r := &c.Redis
	switch {
	case r.URL != "" && r.URLFile != "" && !c.fromFile.redisURL:
		p.add("redis.url", "and redis.url_file (TH_REDIS_URL_FILE) are both set: set one")
	case r.URL == "" && r.URLFile != "":
		p.add("redis.url_file", "was not read: use config.Load")
	case r.URL != "":
		if err := checkRedisURL(string(r.URL)); err != nil {
			p.add("redis.url", "%v", err)
		}
	}
	positive(p, "redis.dial_timeout", r.DialTimeout)
	positive(p, "redis.read_timeout", r.ReadTimeout)
	positive(p, "redis.write_timeout", r.WriteTimeout)
	if r.MaxRetries < 0 {
		p.add("redis.max_retries", "must not be negative, got %d", r.MaxRetries)
	}
	if r.PoolSize < 0 {
		p.add("redis.pool_size", "must not be negative (0: the go-redis default), got %d", r.PoolSize)
	}
	checkFile(p, "redis.tls_ca_file", r.TLSCAFile)
}

// checkRedisURL accepts redis:// and rediss:// URLs with an address in the host or in
// addr= parameters (Sentinel: master_name=NAME&addr=...; Cluster: several addr=) and an
// optional numeric database path. Messages never repeat the URL: it may hold a password.
func checkRedisURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("does not parse as a URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return errors.New("must start with redis:// or rediss://")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return errors.New("has a malformed query")
	}
	addrs := q["addr"]
	if u.Host != "" {
		addrs = append(addrs, u.Host)
	}
	if len(addrs) == 0 {
		return errors.New("has no address (a host, or addr= parameters)")
	}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			host, port = a, "6379"
		}
		if host == "" || !validPort(port) {
			return errors.New("has an address that is not host[:port]")
		}
	}
	if q.Has("master_name") && q.Get("master_name") == "" {
		return errors.New("has an empty master_name")
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return errors.New("has a path that is not a database number")
		}
	}
	return nil
}

func (c *Config) validateRoutes(p *problems) {
	seen := make(map[string]int)
	for i, r := range c.Routes {
		switch {
		case !strings.HasPrefix(r.Path, "/") || !strings.HasSuffix(r.Path, "/"):
			p.addIndexed("routes", i, "path", "must start and end with /, got %q", r.Path)
		case r.Path == "/":
			p.addIndexed("routes", i, "path", `must not be "/": only configured API prefixes are proxied`)
		case !isCleanPath(strings.TrimSuffix(r.Path, "/")):
			p.addIndexed("routes", i, "path", "must be a clean path of letters, digits and -._~/, got %q", r.Path)
		case c.AuthPrefix != "" && overlaps(r.Path, strings.TrimSuffix(c.AuthPrefix, "/")+"/"):
			p.addIndexed("routes", i, "path", "%q overlaps auth_prefix %q", r.Path, c.AuthPrefix)
		}
		if j, dup := seen[r.Path]; dup {
			p.addIndexed("routes", i, "path", "%q repeats routes[%d]", r.Path, j)
		} else {
			seen[r.Path] = i
		}
		if r.Upstream == "" {
			p.addIndexed("routes", i, "upstream", "is required")
		} else if u, err := parseHTTPURL(r.Upstream); err != nil {
			p.addIndexed("routes", i, "upstream", "%v", err)
		} else if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			p.addIndexed("routes", i, "upstream", "must not have user info, a query or a fragment")
		}
		for _, m := range r.Methods {
			switch {
			case m == "TRACE" || m == "CONNECT":
				p.addIndexed("routes", i, "methods", "must not allow %s", m)
			case !slices.Contains(httpMethods, m):
				p.addIndexed("routes", i, "methods", "has unknown method %q (allowed: %s, upper case)", m, strings.Join(httpMethods, ", "))
			}
		}
		if r.Timeout <= 0 {
			p.addIndexed("routes", i, "timeout", "must be positive, got %v", r.Timeout)
		}
	}
}

// overlaps reports whether one of two path prefixes (both ending in "/") contains the
// other.
func overlaps(a, b string) bool { return strings.HasPrefix(a, b) || strings.HasPrefix(b, a) }

// validateLimits checks the server's timeouts and the proxy's memory bound.
func (c *Config) validateLimits(p *problems) {
	positive(p, "server.read_header_timeout", c.Server.ReadHeaderTimeout)
	positive(p, "server.body_timeout", c.Server.BodyTimeout)
	positive(p, "server.idle_timeout", c.Server.IdleTimeout)
	if m := c.Proxy.ReplayMemory; m < 1<<20 {
		p.add("proxy.replay_memory", "must be at least 1MiB (one replayable body), got %s", m)
	}
}

func (c *Config) validateHTTP(p *problems) {
	for _, s := range c.TrustedProxies {
		pfx, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			p.add("trusted_proxies", "has %q, which is not a CIDR (e.g. 10.0.0.0/8, 192.0.2.7/32)", s)
		case pfx.Bits() == 0:
			p.add("trusted_proxies", "has %q, which trusts every client to set X-Forwarded-*: list your proxies' addresses", s)
		}
	}
	for _, o := range c.CORS.AllowedOrigins {
		if o == "*" || o == "null" {
			p.add("cors.allowed_origins", "must list exact origins, not %q", o)
			continue
		}
		u, err := parseHTTPURL(o)
		switch {
		case err != nil:
			p.add("cors.allowed_origins", "has %q: %v", o, err)
		case u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil:
			p.add("cors.allowed_origins", "has %q, which is not an origin (scheme://host[:port], no path)", o)
		case canonicalOrigin(u) != o:
			p.add("cors.allowed_origins", "has %q: write it as the browser sends it, %q", o, canonicalOrigin(u))
		case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
			p.add("cors.allowed_origins", "has %q: a plain-http origin off loopback can be impersonated on the network; use https://", o)
		}
	}
	h := c.CSRF.Header
	switch {
	case !isToken(h):
		p.add("csrf.header", "must be a valid header name, got %q", h)
	case isUnfitCSRFHeader(h):
		p.add("csrf.header", "%q cannot protect against CSRF: a page can send it without a CORS preflight, or scripts cannot set it", h)
	}
	if c.Static.Dir != "" {
		if fi, err := os.Stat(c.Static.Dir); err != nil {
			p.add("static.dir", "cannot be read: %v", err)
		} else if !fi.IsDir() {
			p.add("static.dir", "%s is not a directory", c.Static.Dir)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		*p = append(*p, errors.New("tls.cert_file (TH_TLS_CERT_FILE) and tls.key_file (TH_TLS_KEY_FILE) must be set together, or neither"))
	}
	checkFile(p, "tls.cert_file", c.TLS.CertFile)
	checkFile(p, "tls.key_file", c.TLS.KeyFile)
	if !slices.Contains(logLevels, c.Log.Level) {
		p.add("log.level", "must be one of %s, got %q", strings.Join(logLevels, ", "), c.Log.Level)
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		p.add("log.format", "must be one of %s, got %q", strings.Join(logFormats, ", "), c.Log.Format)
	}
}

// Notes returns non-fatal remarks about a configuration, for check-config and the start-up
// log: features that are off, settings fit only for development.
func (c *Config) Notes() []string {
	var notes []string
	if c.Redis.URL == "" {
		notes = append(notes,
			"back-channel logout is not mounted: it needs redis.url",
			"refresh coordination is per process: with several replicas, set redis.url so that a rotated refresh token is never replayed")
	}
	if !c.Cookies.Secure {
		notes = append(notes, "cookies.secure is false: cookies lose the Secure attribute and their __Host-/__Secure- prefixes (plain-http local development only)")
	}
	if c.Redis.TLSInsecureSkipVerify {
		notes = append(notes, "redis.tls_insecure_skip_verify is true: the Redis server's certificate is not verified")
	}
	if c.AdminListen == "" {
		notes = append(notes, "admin_listen is empty: no /healthz, /readyz or /metrics")
	} else if host, _, err := net.SplitHostPort(c.AdminListen); err == nil && !isLoopbackHost(host) {
		notes = append(notes, fmt.Sprintf("admin_listen %s is not a loopback address: /metrics is reachable from the network", c.AdminListen))
	}
	if len(c.Routes) == 0 {
		notes = append(notes, "no routes: nothing is proxied, only the "+c.AuthPrefix+" endpoints are served")
	}
	if !slices.Contains(c.OIDC.Scopes, "offline_access") {
		notes = append(notes, "oidc.scopes lacks offline_access: many providers then issue no refresh token, and the session ends when the access token expires")
	}
	if len(c.OIDC.IDTokenSigningAlgs) == 0 {
		notes = append(notes, "oidc.id_token_signing_algs is empty: the provider's advertised algorithms among RS256, ES256, PS256 are accepted")
	}
	switch {
	case c.DPoP.KeyFile != "":
	case c.OIDC.DPoP:
		notes = append(notes, "oidc.dpop is true and dpop.key_file is empty: a DPoP key is generated at start, fit for one replica only (a restart ends every session)")
	case c.DPoPKeyNeeded():
		notes = append(notes, "a route's token.dpop is true and dpop.key_file is empty: a DPoP key is generated at start, fit for one replica only")
	}
	if c.OIDC.BackchannelBaseURL != "" {
		notes = append(notes, "oidc.backchannel_base_url is set: tokenhandler fetches discovery, tokens, keys, userinfo and revocation from "+c.OIDC.BackchannelBaseURL+" instead of the issuer's host")
	}
	if c.OIDC.IntrospectionEndpoint != "" {
		jwt := false
		for _, r := range c.Routes {
			jwt = jwt || r.Token.EffectiveFormat() == "jwt"
		}
		if jwt {
			notes = append(notes, "oidc.introspection_endpoint is set: tokenhandler introspects at "+c.OIDC.IntrospectionEndpoint+" instead of discovery's introspection_endpoint")
		} else {
			notes = append(notes, "oidc.introspection_endpoint is set but no route has token.format jwt: it is not used")
		}
	}
	return notes
}

// parseHTTPURL parses an absolute http or https URL with a host. Its errors are messages
