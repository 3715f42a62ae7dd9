package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is tokenhandler's whole configuration: plain values, one field per key of the
// YAML file (see the yaml tags; example.yaml shows them all). Start from Default or Load.
type Config struct {
	// Listen is the address of the public listener (the SPA's origin).
	Listen string `yaml:"listen"`
	// AdminListen is the address of /healthz, /readyz and /metrics. Empty: no admin
	// listener.
	AdminListen string `yaml:"admin_listen"`
	// PublicURL is the origin the browser sees, e.g. "https://app.example.com" (a
	// trailing "/" is allowed, nothing else after the host).
	PublicURL string `yaml:"public_url"`
	// AuthPrefix is the path under which the OAuth agent's endpoints live ("/auth").
	AuthPrefix string `yaml:"auth_prefix"`

	OIDC    OIDC    `yaml:"oidc"`
	Cookies Cookies `yaml:"cookies"`
	Session Session `yaml:"session"`
	Redis   Redis   `yaml:"redis"`
	// Routes are the proxied API prefixes. In the environment, TH_ROUTES is a JSON array.
	Routes []Route `yaml:"routes"`
	DPoP   DPoP    `yaml:"dpop"`
	// TokenSigning signs the JWTs of routes with token.format jwt, jwt_from mint.
	TokenSigning TokenSigning `yaml:"token_signing"`
	Server       Server       `yaml:"server"`
	Proxy        Proxy        `yaml:"proxy"`
	// TrustedProxies are CIDRs whose X-Forwarded-* headers are kept.
	TrustedProxies []string `yaml:"trusted_proxies"`
	CORS           CORS     `yaml:"cors"`
	CSRF           CSRF     `yaml:"csrf"`
	Static         Static   `yaml:"static"`
	TLS            TLS      `yaml:"tls"`
	Log            Log      `yaml:"log"`
	Tracing        Tracing  `yaml:"tracing"`

	// fromFile records which secrets Load read from their _file form, so that Validate
	// can tell "set both" from "read from the file".
	fromFile struct{ clientSecret, keys, redisURL bool }
}

// OIDC is the provider and the client registered with it.
type OIDC struct {
	// Issuer is the provider's issuer URL; discovery is fetched from
	// Issuer + "/.well-known/openid-configuration".
	Issuer       string `yaml:"issuer"`
	ClientID     string `yaml:"client_id"`
	ClientSecret Secret `yaml:"client_secret"`
	// ClientSecretFile names a file holding the client secret (whitespace trimmed).
	ClientSecretFile string `yaml:"client_secret_file"`
	// TokenAuthMethod is "client_secret_basic", "client_secret_post" or
	// "private_key_jwt" (RFC 7523, signed with ClientKeyFile; no client secret).
	TokenAuthMethod string `yaml:"token_auth_method"`
	// ClientKeyFile names the PEM private key of private_key_jwt: RSA (RS256, or PS256
	// when the provider offers it), EC P-256 (ES256) or Ed25519 (EdDSA).
	ClientKeyFile string `yaml:"client_key_file"`
	// PAR is "auto" (push the authorization request, RFC 9126, when discovery advertises
	// a pushed_authorization_request_endpoint), "required" (refuse to start without one)
	// or "off".
	PAR string `yaml:"par"`
	// DPoP binds the session's tokens to dpop.key_file (RFC 9449): every token request
	// carries a proof, and upstreams get "Authorization: DPoP" with a fresh proof.
	DPoP bool `yaml:"dpop"`
	// Profile "fapi2" refuses what the FAPI 2.0 Security Profile forbids; "" none.
	Profile string   `yaml:"profile"`
	Scopes  []string `yaml:"scopes"`
	// IDTokenSigningAlgs restricts the ID token's alg. Empty: discovery's list
	// intersected with {RS256, ES256, PS256}.
	IDTokenSigningAlgs []string `yaml:"id_token_signing_algs"`
	// PostLogoutRedirectURL is where the provider sends the browser after logout.
	// Load defaults it to PublicURL + "/".
	PostLogoutRedirectURL string `yaml:"post_logout_redirect_url"`
	// ErrorPath is the SPA page the callback redirects to on failure, with
	// ?auth_error=CODE appended. A path only: no query, no fragment.
	ErrorPath string `yaml:"error_path"`
	// HTTPTimeout bounds each call to the provider.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// BackchannelBaseURL, if set, is a scheme://host[:port] that replaces the scheme and
	// host (the paths are kept) of the URLs tokenhandler itself fetches: discovery, token,
	// JWKS, userinfo and revocation. For Docker networks, where the browser and
	// tokenhandler reach the provider under different names. The issuer and the
	// browser-facing endpoints (authorization, end-session) are unchanged.
	BackchannelBaseURL string `yaml:"backchannel_base_url"`
	// IntrospectionEndpoint, if set, is the RFC 7662 introspection endpoint of every
	// introspection (routes with token.format jwt), used as is instead of discovery's
	// introspection_endpoint (BackchannelBaseURL does not rewrite it). For providers whose
	// introspection is not in discovery, such as Ory Hydra's admin API. https://; http://
	// only on loopback, as for Issuer. The client authenticates there as at the token
	// endpoint. "": discovery's.
	IntrospectionEndpoint string `yaml:"introspection_endpoint"`
}

// Cookies is the cookie key ring and naming.
type Cookies struct {
	// Prefix is the middle part of every cookie name (__Host-Http-<prefix>-at).
	Prefix string `yaml:"prefix"`
	// Keys is the key ring, each "<base64 hash key>:<base64 block key>" (see session.ParseKeyPair).
	// The first key seals; all keys open.
	Keys []Secret `yaml:"keys"`
	// KeysFile names a file of key pairs, one a line; blank lines and # comments ignored.
	KeysFile string `yaml:"keys_file"`
	// Secure sets the Secure attribute and the __Host-/__Secure- prefixes. Default true;
	// false is for plain-http local development only.
	Secure bool `yaml:"secure"`
}

// Session is the session's lifetime and refresh behaviour.
type Session struct {
	// Store is "cookie" (tokens in encrypted cookies) or "redis" (tokens in Redis).
	Store string `yaml:"store"`
	// Lifetime is the absolute session lifetime; refreshes never extend it.
	Lifetime time.Duration `yaml:"lifetime"`
	// IdleTimeout ends an unused session (redis store).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// RefreshSkew: an access token this close to expiry is refreshed before use.
	RefreshSkew time.Duration `yaml:"refresh_skew"`
	// RotationGrace is how long requests still carrying a rotated refresh token receive
	// the new tokens instead of replaying the old one. At least the longest route timeout.
	RotationGrace time.Duration `yaml:"rotation_grace"`
	// RefreshTimeout bounds one refresh, which is never cancelled once sent.
	RefreshTimeout time.Duration `yaml:"refresh_timeout"`
}

// Redis is the optional Redis connection.
type Redis struct {
	// URL is redis:// or rediss://; empty: no Redis. Sentinel:
	// ?master_name=NAME&addr=host2:port...; Cluster: several addr= without master_name.
	URL Secret `yaml:"url"`
	// URLFile names a file holding the URL (it may contain a password).
	URLFile      string        `yaml:"url_file"`
	KeyPrefix    string        `yaml:"key_prefix"`
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxRetries is the number of retries after a failed command; 0 means none (note
	// that go-redis spells "none" as -1 and reads 0 as its default of 3).
	MaxRetries int `yaml:"max_retries"`
	// PoolSize is the connection pool size; 0 means go-redis's default.
	PoolSize int `yaml:"pool_size"`
	// TLSCAFile names a PEM file of CAs trusted for rediss://; empty: the system pool.
	TLSCAFile string `yaml:"tls_ca_file"`
	// TLSInsecureSkipVerify turns off certificate verification for rediss://.
	TLSInsecureSkipVerify bool `yaml:"tls_insecure_skip_verify"`
}

// DefaultRouteTimeout is a route's timeout when the route does not set one.
const DefaultRouteTimeout = 30 * time.Second

// Route is one proxied API prefix.
type Route struct {
	// Path is the prefix matched, starting and ending with "/", e.g. "/api/".
	Path string `yaml:"path"`
	// Upstream is the API's base URL, e.g. "http://127.0.0.1:9000".
	Upstream string `yaml:"upstream"`
	// StripPrefix removes Path (less its final "/") before forwarding.
	StripPrefix bool `yaml:"strip_prefix"`
	// Methods allowed; empty: every method but TRACE and CONNECT.
	Methods []string `yaml:"methods"`
	// Timeout bounds the time until the upstream's response headers arrive
	// (DefaultRouteTimeout when absent).
	Timeout time.Duration `yaml:"timeout"`
	// Token is the route's token policy; the zero value forwards the session's access
	// token as issued.
	Token RouteToken `yaml:"token"`
}

// UnmarshalYAML decodes a route, with Timeout defaulting to DefaultRouteTimeout.
func (r *Route) UnmarshalYAML(n *yaml.Node) error {
	type plain Route // no methods: no recursion
	p := plain{Timeout: DefaultRouteTimeout}
	if err := n.Decode(&p); err != nil {
		return err
	}
	*r = Route(p)
	return nil
}

// UnmarshalJSON decodes a route from TH_ROUTES: the same keys as in YAML, timeout a Go
// duration string, unknown keys refused.
func (r *Route) UnmarshalJSON(b []byte) error {
	var j struct {
		Path        string     `json:"path"`
		Upstream    string     `json:"upstream"`
		StripPrefix bool       `json:"strip_prefix"`
		Methods     []string   `json:"methods"`
		Timeout     *string    `json:"timeout"`
		Token       RouteToken `json:"token"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	*r = Route{Path: j.Path, Upstream: j.Upstream, StripPrefix: j.StripPrefix, Methods: j.Methods, Timeout: DefaultRouteTimeout, Token: j.Token}
	if j.Timeout != nil {
		d, err := time.ParseDuration(*j.Timeout)
		if err != nil {
			return fmt.Errorf("route %q: timeout: %w", j.Path, err)
		}
		r.Timeout = d
	}
	return nil
}

// DPoP is the key DPoP proofs are made with (oidc.dpop).
type DPoP struct {
	// KeyFile names a PEM private key, EC P-256 (ES256) or Ed25519 (EdDSA), shared by
	// every replica. Empty: a key generated at start, fit for one replica only (the
	// tokens of a session are bound to it, and a restart ends every session).
	KeyFile string `yaml:"key_file"`
}

// Server is the public listener's limits. There is no write timeout: it would cut
// streams (SSE, WebSocket, downloads).
type Server struct {
	// ReadHeaderTimeout bounds the time to read a request's headers; a connection that
	// sends nothing for this long holds no per-request state.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// BodyTimeout cuts a request whose body makes no progress for this long.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// IdleTimeout closes a keep-alive connection idle for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// Proxy is the proxy's memory limits.
type Proxy struct {
	// ReplayMemory bounds all replay buffers together (request bodies kept for a retry
	// after a reactive refresh); past it a request is forwarded unbuffered and not
	// replayed.
	ReplayMemory ByteSize `yaml:"replay_memory"`
}

// ByteSize is a size in bytes, written as a number with an optional unit: "64MiB",
// "512KiB", "1GiB", "1048576" (B, KiB, MiB and GiB; KB, MB and GB mean the same
// powers of two).
type ByteSize int64

// UnmarshalText parses a size such as "64MiB".
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(s[len(num):])
	mult, ok := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "KB": 1 << 10, "MiB": 1 << 20, "MB": 1 << 20, "GiB": 1 << 30, "GB": 1 << 30}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n < 0 || n > (1<<62)/mult {
		return errors.New(`not a size (want e.g. "64MiB", "512KiB", "1048576")`)
	}
	*b = ByteSize(n * mult)
	return nil
}

// String writes the size with the largest unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// CORS is cross-origin access for SPAs served from another origin.
type CORS struct {
	// AllowedOrigins are exact origins (scheme://host[:port]); empty: CORS off.
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// CSRF is the anti-CSRF header every proxied request and /auth POST must carry.
type CSRF struct {
	Header string `yaml:"header"`
}

// Static serves the SPA's own files.
type Static struct {
	// Dir is a directory to serve; empty: no static files.
	Dir string `yaml:"dir"`
}

// TLS makes the public listener serve HTTPS itself.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Log is the logger's configuration.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or text.
	Format string `yaml:"format"`
}

// Tracing is OpenTelemetry tracing. Where spans go and how many are kept is set by the
// standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, ...).
type Tracing struct {
	// Enabled turns tracing on: OTLP/HTTP export, W3C traceparent to the upstreams and
	// the provider. Off by default: then tracing costs nothing.
	Enabled bool `yaml:"enabled"`
}

// Secret is a string that never prints: String, GoString and LogValue return
// "[redacted]". Convert with string(s) where the value is needed.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString returns "[redacted]" so that %#v does not print the secret either.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Default returns the configuration with every default of the documented example set and
// nothing else: no public_url, issuer, client or keys.
func Default() *Config {
	return &Config{
		Listen:      ":8080",
		AdminListen: "127.0.0.1:9090",
		AuthPrefix:  "/auth",
		OIDC: OIDC{
			TokenAuthMethod: "client_secret_basic",
			PAR:             "auto",
			Scopes:          []string{"openid", "profile", "email", "offline_access"},
			ErrorPath:       "/",
			HTTPTimeout:     10 * time.Second,
		},
		Cookies: Cookies{Prefix: "th", Secure: true},
		Session: Session{
			Store:          "cookie",
			Lifetime:       12 * time.Hour,
			IdleTimeout:    time.Hour,
			RefreshSkew:    30 * time.Second,
			RotationGrace:  60 * time.Second,
			RefreshTimeout: 10 * time.Second,
		},
		Redis: Redis{
			KeyPrefix:    "th:",
			DialTimeout:  500 * time.Millisecond,
			ReadTimeout:  500 * time.Millisecond,
			WriteTimeout: 500 * time.Millisecond,
			MaxRetries:   1,
		},
		Server: Server{
			ReadHeaderTimeout: 10 * time.Second,
			BodyTimeout:       30 * time.Second,
			IdleTimeout:       120 * time.Second,
		},
		TokenSigning: TokenSigning{TTL: 5 * time.Minute},
		Proxy:        Proxy{ReplayMemory: 64 << 20},
		CSRF:         CSRF{Header: "X-CSRF"},
		Log:          Log{Level: "info", Format: "json"},
	}
}

// PublicOrigin returns the scheme://host[:port] of PublicURL, lower-cased as a browser
// sends it in Origin, or "" if PublicURL does not parse.
func (c *Config) PublicOrigin() string {
	u, err := url.Parse(c.PublicURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}

// RedirectURL returns the OAuth redirect_uri: public origin + auth prefix + "/callback".
func (c *Config) RedirectURL() string {
	return c.PublicOrigin() + c.AuthPrefix + "/callback"
}

// MaxRouteTimeout returns the longest route timeout, or 0 without routes.
func (c *Config) MaxRouteTimeout() time.Duration {
	var m time.Duration
	for _, r := range c.Routes {
		m = max(m, r.Timeout)
	}
	return m
}
