package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// joined returns the problems of a Validate error, one string each.
func joined(err error) []string {
	if err == nil {
		return nil
	}
	var out []string
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range u.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

func containsLine(lines []string, sub string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, sub) })
}

// validConfig is a complete, valid configuration.
func validConfig() *Config {
	c := Default()
	c.PublicURL = "https://app.example.com"
	c.OIDC.Issuer = "https://idp.example.com/realms/demo"
	c.OIDC.ClientID = "spa"
	c.OIDC.ClientSecret = "s3cret"
	c.OIDC.PostLogoutRedirectURL = "https://app.example.com/"
	c.Cookies.Keys = []Secret{testKey}
	c.Routes = []Route{{Path: "/api/", Upstream: "http://127.0.0.1:9000", Timeout: 30 * time.Second}}
	return c
}

func TestValidateValid(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	key := filepath.Join(dir, "key.pem")
	for _, f := range []string{cert, key} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		modify func(c *Config)
	}{
		{"minimal", func(c *Config) {}},
		{"everything set", func(c *Config) {
			c.OIDC.TokenAuthMethod = "client_secret_post"
			c.OIDC.IDTokenSigningAlgs = []string{"RS256", "EdDSA", "PS512"}
			c.OIDC.ErrorPath = "/login-failed"
			c.OIDC.BackchannelBaseURL = "http://keycloak:8080"
			c.Session.Store = "redis"
			c.Redis.URL = "rediss://:pw@redis.internal:6380/2"
			c.Redis.TLSCAFile = cert
			c.Routes = append(c.Routes,
				Route{Path: "/graphql/v1/", Upstream: "https://api.internal/base", Methods: []string{"GET", "POST", "OPTIONS"}, Timeout: 5 * time.Second, StripPrefix: true},
				Route{Path: "/authz/", Upstream: "http://[::1]:9001", Timeout: time.Second}, // shares letters with /auth, not a segment
			)
			c.TrustedProxies = []string{"10.0.0.0/8", "fd00::/8", "192.0.2.7/32"}
			c.CORS.AllowedOrigins = []string{"https://admin.example.com", "http://localhost:5173"}
			c.CSRF.Header = "X-Requested-By"
			c.Static.Dir = dir
			c.TLS = TLS{CertFile: cert, KeyFile: key}
			c.Log = Log{Level: "debug", Format: "text"}
			c.AdminListen = ""
		}},
		{"public_url with trailing slash", func(c *Config) { c.PublicURL = "https://app.example.com/" }},
		{"http loopback public_url, secure cookies", func(c *Config) { c.PublicURL = "http://localhost:8080" }},
		{"http 127.0.0.2 public_url", func(c *Config) { c.PublicURL = "http://127.0.0.2:8080" }},
		{"http [::1] public_url", func(c *Config) { c.PublicURL = "http://[::1]:8080" }},
		{"http public_url with insecure cookies", func(c *Config) {
			c.PublicURL = "http://app.test:8080"
			c.Cookies.Secure = false
		}},
		{"http loopback issuer", func(c *Config) { c.OIDC.Issuer = "http://127.0.0.1:5556/dex" }},
		{"http localhost issuer", func(c *Config) { c.OIDC.Issuer = "http://localhost:8081/realms/x" }},
		{"sentinel redis url", func(c *Config) { c.Redis.URL = "redis://:pw@s1:26379?master_name=mymaster&addr=s2:26379&addr=s3:26379" }},
		{"cluster redis url", func(c *Config) { c.Redis.URL = "redis://?addr=n1:6379&addr=n2:6379" }},
		{"rotation grace equal to the longest route timeout", func(c *Config) {
			c.Routes[0].Timeout = 60 * time.Second
		}},
		{"both listeners on a free port", func(c *Config) { c.Listen, c.AdminListen = "127.0.0.1:0", "127.0.0.1:0" }},
		{"two key ring", func(c *Config) {
			c.Cookies.Keys = append(c.Cookies.Keys, "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8:YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := &Config{
		Listen:      "8080",
		AdminListen: "8080",
		PublicURL:   "https://app.example.com/spa?x=1",
		AuthPrefix:  "/auth/",
		OIDC: OIDC{
			TokenAuthMethod:       "client_secret_jwt",
			PAR:                   "sideways",
			Profile:               "fapi1",
			Scopes:                []string{"profile", "bad scope"},
			IDTokenSigningAlgs:    []string{"RS256", "none", "HS256"},
			PostLogoutRedirectURL: "/relative",
			ErrorPath:             "//evil.example.com",
			BackchannelBaseURL:    "ftp://idp",
		},
		Cookies: Cookies{Prefix: "th;", Keys: []Secret{"nocolon", testKey, testKey, Secret(DemoCookieKeys[0])}},
		Session: Session{Store: "memcached", Lifetime: time.Minute, RefreshSkew: time.Hour, RotationGrace: time.Second, RefreshTimeout: -time.Second},
		Redis:   Redis{URL: "http://:hunter2@redis", MaxRetries: -1, PoolSize: -1},
		Routes: []Route{
			{Path: "/auth/x/", Upstream: "http://127.0.0.1:1", Timeout: time.Minute},
			{Path: "api", Upstream: "127.0.0.1:9000", Timeout: time.Second},
			{Path: "/", Upstream: "http://127.0.0.1:1", Timeout: time.Second},
			{Path: "/v1/", Upstream: "http://u:p@127.0.0.1:1", Methods: []string{"TRACE", "get", "CONNECT"}, Timeout: 0},
			{Path: "/v1/", Upstream: "http://127.0.0.1:1", Timeout: time.Second},
			{Path: "/a/../b/", Upstream: "http://127.0.0.1:1", Timeout: time.Second},
		},
		TrustedProxies: []string{"10.0.0.1", "not-a-cidr", "0.0.0.0/0", "::/0", "10.0.0.0/8"},
		CORS:           CORS{AllowedOrigins: []string{"*", "https://a.example.com/", "HTTPS://B.example.com", "https://c.example.com:443", "http://d.example.com", "http://localhost:3000"}},
		CSRF:           CSRF{Header: "Content-Type"},
		Static:         Static{Dir: filepath.Join(t.TempDir(), "missing")},
		TLS:            TLS{CertFile: "cert.pem"},
		Log:            Log{Level: "verbose", Format: "xml"},
	}
	want := []string{
		"listen (TH_LISTEN) must be host:port",
		"admin_listen (TH_ADMIN_LISTEN) must be host:port",
		"admin_listen (TH_ADMIN_LISTEN) must differ from listen",
		"public_url (TH_PUBLIC_URL) must be an origin",
		"auth_prefix (TH_AUTH_PREFIX) must not end with /",
		"oidc.issuer (TH_OIDC_ISSUER) is required",
		"oidc.client_id (TH_OIDC_CLIENT_ID) is required",
		"oidc.client_secret (TH_OIDC_CLIENT_SECRET) is required",
		"oidc.token_auth_method (TH_OIDC_TOKEN_AUTH_METHOD) must be one of client_secret_basic, client_secret_post, private_key_jwt",
		`oidc.par (TH_OIDC_PAR) must be one of auto, required, off, got "sideways"`,
		`oidc.profile (TH_OIDC_PROFILE) must be "" or fapi2, got "fapi1"`,
		"oidc.scopes (TH_OIDC_SCOPES) must include openid",
		`oidc.scopes (TH_OIDC_SCOPES) has an invalid scope "bad scope"`,
		`oidc.id_token_signing_algs (TH_OIDC_ID_TOKEN_SIGNING_ALGS) has "none"`,
		`oidc.id_token_signing_algs (TH_OIDC_ID_TOKEN_SIGNING_ALGS) has "HS256"`,
		"oidc.post_logout_redirect_url (TH_OIDC_POST_LOGOUT_REDIRECT_URL) must be an absolute http:// or https:// URL",
		"oidc.error_path (TH_OIDC_ERROR_PATH) must be a local path",
		"oidc.http_timeout (TH_OIDC_HTTP_TIMEOUT) must be a positive duration",
		"oidc.backchannel_base_url (TH_OIDC_BACKCHANNEL_BASE_URL) must be an absolute http:// or https:// URL",
		"cookies.prefix (TH_COOKIES_PREFIX) must be 1 to 32 letters",
		`cookies.keys[0] (TH_COOKIES_KEYS) is not "<base64 hash key>:<base64 block key>" (no colon)`,
		"cookies.keys[2] (TH_COOKIES_KEYS) repeats an earlier key",
		"cookies.keys[3] (TH_COOKIES_KEYS) is a published demo key",
		"session.store (TH_SESSION_STORE) must be one of cookie, redis",
		"session.idle_timeout (TH_SESSION_IDLE_TIMEOUT) must be a positive duration",
		"session.refresh_timeout (TH_SESSION_REFRESH_TIMEOUT) must be a positive duration",
		"session.refresh_skew (TH_SESSION_REFRESH_SKEW) (1h0m0s) must be shorter than session.lifetime (1m0s)",
		"session.rotation_grace (TH_SESSION_ROTATION_GRACE) (1s) must be at least the longest route timeout (1m0s)",
		"redis.url (TH_REDIS_URL) must start with redis:// or rediss://",
		"redis.dial_timeout (TH_REDIS_DIAL_TIMEOUT) must be a positive duration",
		"redis.read_timeout (TH_REDIS_READ_TIMEOUT) must be a positive duration",
		"redis.write_timeout (TH_REDIS_WRITE_TIMEOUT) must be a positive duration",
		"redis.max_retries (TH_REDIS_MAX_RETRIES) must not be negative",
		"redis.pool_size (TH_REDIS_POOL_SIZE) must not be negative",
		`routes[0].path (TH_ROUTES) "/auth/x/" overlaps auth_prefix "/auth/"`,
		`routes[1].path (TH_ROUTES) must start and end with /`,
		`routes[1].upstream (TH_ROUTES) must be an absolute http:// or https:// URL`,
		`routes[2].path (TH_ROUTES) must not be "/"`,
		`routes[3].upstream (TH_ROUTES) must not have user info`,
		`routes[3].methods (TH_ROUTES) must not allow TRACE`,
		`routes[3].methods (TH_ROUTES) has unknown method "get"`,
		`routes[3].methods (TH_ROUTES) must not allow CONNECT`,
		`routes[3].timeout (TH_ROUTES) must be positive`,
		`routes[4].path (TH_ROUTES) "/v1/" repeats routes[3]`,
		`routes[5].path (TH_ROUTES) must be a clean path`,
		"token_signing.ttl (TH_TOKEN_SIGNING_TTL) must be a positive duration",
		`trusted_proxies (TH_TRUSTED_PROXIES) has "10.0.0.1", which is not a CIDR`,
		`trusted_proxies (TH_TRUSTED_PROXIES) has "not-a-cidr", which is not a CIDR`,
		`trusted_proxies (TH_TRUSTED_PROXIES) has "0.0.0.0/0", which trusts every client`,
		`trusted_proxies (TH_TRUSTED_PROXIES) has "::/0", which trusts every client`,
		`cors.allowed_origins (TH_CORS_ALLOWED_ORIGINS) must list exact origins, not "*"`,
		`cors.allowed_origins (TH_CORS_ALLOWED_ORIGINS) has "https://a.example.com/", which is not an origin`,
		`cors.allowed_origins (TH_CORS_ALLOWED_ORIGINS) has "HTTPS://B.example.com": write it as the browser sends it, "https://b.example.com"`,
		`cors.allowed_origins (TH_CORS_ALLOWED_ORIGINS) has "https://c.example.com:443": write it as the browser sends it, "https://c.example.com"`,
		`cors.allowed_origins (TH_CORS_ALLOWED_ORIGINS) has "http://d.example.com": a plain-http origin off loopback`,
		`csrf.header (TH_CSRF_HEADER) "Content-Type" cannot protect against CSRF`,
		"server.read_header_timeout (TH_SERVER_READ_HEADER_TIMEOUT) must be a positive duration",
		"server.body_timeout (TH_SERVER_BODY_TIMEOUT) must be a positive duration",
		"server.idle_timeout (TH_SERVER_IDLE_TIMEOUT) must be a positive duration",
		"proxy.replay_memory (TH_PROXY_REPLAY_MEMORY) must be at least 1MiB",
		"static.dir (TH_STATIC_DIR) cannot be read",
		"tls.cert_file (TH_TLS_CERT_FILE) and tls.key_file (TH_TLS_KEY_FILE) must be set together",
		"tls.cert_file (TH_TLS_CERT_FILE) cannot be read",
		`log.level (TH_LOG_LEVEL) must be one of debug, info, warn, error, got "verbose"`,
		`log.format (TH_LOG_FORMAT) must be one of json, text, got "xml"`,
	}
	got := joined(c.Validate())
	for _, w := range want {
		if !containsLine(got, w) {
			t.Errorf("Validate() lacks %q", w)
		}
	}
	for _, g := range got {
		if !slices.ContainsFunc(want, func(w string) bool { return strings.Contains(g, w) }) {
			t.Errorf("Validate() has an unexpected problem %q", g)
		}
		if !strings.Contains(g, " (TH_") {
			t.Errorf("Validate() problem %q does not name its environment variable", g)
		}
		if strings.Contains(g, "hunter2") {
			t.Errorf("Validate() problem %q repeats a secret", g)
		}
	}
	if t.Failed() {
		t.Logf("Validate() =\n%s", strings.Join(got, "\n"))
	}
}

func TestValidateRules(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string // a substring of one problem; "" means valid
	}{
		// public_url and the loopback rule for Secure cookies over http.
		{"http public_url, non-loopback, secure", func(c *Config) { c.PublicURL = "http://app.example.com" }, "public_url (TH_PUBLIC_URL) is http:// on a non-loopback host"},
		{"http public_url, 10.x, secure", func(c *Config) { c.PublicURL = "http://10.0.0.1:8080" }, "public_url (TH_PUBLIC_URL) is http:// on a non-loopback host"},
		{"http public_url, localhost.evil.com", func(c *Config) { c.PublicURL = "http://localhost.evil.com" }, "non-loopback host"},
		{"http public_url, 127.0.0.1", func(c *Config) { c.PublicURL = "http://127.0.0.1:8080" }, ""},
		{"public_url missing", func(c *Config) { c.PublicURL = "" }, "public_url (TH_PUBLIC_URL) is required"},
		{"public_url relative", func(c *Config) { c.PublicURL = "app.example.com" }, "public_url (TH_PUBLIC_URL) must be an absolute"},
		{"public_url with path", func(c *Config) { c.PublicURL = "https://app.example.com/app/" }, "must be an origin"},
		{"public_url with fragment", func(c *Config) { c.PublicURL = "https://app.example.com/#x" }, "must be an origin"},
		{"public_url upper case", func(c *Config) { c.PublicURL = "https://App.Example.com" }, `must be written as the browser writes it: "https://app.example.com"`},
		{"public_url default port", func(c *Config) { c.PublicURL = "https://app.example.com:443" }, "must be written as the browser writes it"},
		{"public_url bad port", func(c *Config) { c.PublicURL = "https://app.example.com:99999" }, "has a bad port"},
		{"public_url javascript", func(c *Config) { c.PublicURL = "javascript:alert(1)" }, "must be an absolute http"},
		// the published demo cookie key: loopback only
		{"demo key, https public_url", func(c *Config) { c.Cookies.Keys = []Secret{Secret(DemoCookieKeys[0])} }, "cookies.keys[0] (TH_COOKIES_KEYS) is a published demo key"},
		{"demo key, localhost", func(c *Config) {
			c.PublicURL, c.OIDC.PostLogoutRedirectURL = "http://localhost:8080", "http://localhost:8080/"
			c.Cookies.Keys = []Secret{Secret(DemoCookieKeys[0])}
		}, ""},
		// trusted proxies and CORS origins that would trust anyone
		{"trusted_proxies /0", func(c *Config) { c.TrustedProxies = []string{"0.0.0.0/0"} }, "which trusts every client"},
		{"trusted_proxies /8", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8"} }, ""},
		{"cors http off loopback", func(c *Config) { c.CORS.AllowedOrigins = []string{"http://admin.example.com"} }, "a plain-http origin off loopback"},
		{"cors http loopback", func(c *Config) { c.CORS.AllowedOrigins = []string{"http://127.0.0.1:5173"} }, ""},
		// server and proxy limits
		{"body_timeout zero", func(c *Config) { c.Server.BodyTimeout = 0 }, "server.body_timeout (TH_SERVER_BODY_TIMEOUT) must be a positive duration"},
		{"replay_memory under 1MiB", func(c *Config) { c.Proxy.ReplayMemory = 1<<20 - 1 }, "proxy.replay_memory (TH_PROXY_REPLAY_MEMORY) must be at least 1MiB"},
		// issuer
		{"http issuer, non-loopback", func(c *Config) { c.OIDC.Issuer = "http://idp.example.com" }, "oidc.issuer (TH_OIDC_ISSUER) must be https://"},
		{"http issuer, 127.1.2.3", func(c *Config) { c.OIDC.Issuer = "http://127.1.2.3:5556" }, ""},
		{"http issuer, [::1]", func(c *Config) { c.OIDC.Issuer = "http://[::1]:5556" }, ""},
		{"issuer with query", func(c *Config) { c.OIDC.Issuer = "https://idp.example.com?x=1" }, "oidc.issuer (TH_OIDC_ISSUER) must not have a query"},
		// introspection_endpoint: tokens and client credentials go there, as to the issuer
		{"introspection endpoint https", func(c *Config) { c.OIDC.IntrospectionEndpoint = "https://hydra-admin.internal/admin/oauth2/introspect" }, ""},
		{"introspection endpoint http loopback", func(c *Config) { c.OIDC.IntrospectionEndpoint = "http://127.0.0.1:4445/admin/oauth2/introspect" }, ""},
		{"introspection endpoint http off loopback", func(c *Config) { c.OIDC.IntrospectionEndpoint = "http://hydra-admin:4445/admin/oauth2/introspect" },
			"oidc.introspection_endpoint (TH_OIDC_INTROSPECTION_ENDPOINT) must be https://"},
		{"introspection endpoint relative", func(c *Config) { c.OIDC.IntrospectionEndpoint = "/admin/oauth2/introspect" },
			"oidc.introspection_endpoint (TH_OIDC_INTROSPECTION_ENDPOINT) must be an absolute http:// or https:// URL"},
		{"introspection endpoint with user info", func(c *Config) { c.OIDC.IntrospectionEndpoint = "https://u:p@idp.example.com/introspect" },
			"oidc.introspection_endpoint (TH_OIDC_INTROSPECTION_ENDPOINT) must not have a fragment or user info"},
		{"introspection endpoint with fragment", func(c *Config) { c.OIDC.IntrospectionEndpoint = "https://idp.example.com/introspect#x" },
			"oidc.introspection_endpoint (TH_OIDC_INTROSPECTION_ENDPOINT) must not have a fragment or user info"},
		// auth_prefix
		{"auth_prefix /", func(c *Config) { c.AuthPrefix = "/" }, `auth_prefix (TH_AUTH_PREFIX) must not be "/"`},
		{"auth_prefix relative", func(c *Config) { c.AuthPrefix = "auth" }, "auth_prefix (TH_AUTH_PREFIX) must start with /"},
		{"auth_prefix dot segment", func(c *Config) { c.AuthPrefix = "/a/../auth" }, "must be a clean path"},
		{"auth_prefix nested", func(c *Config) { c.AuthPrefix = "/bff/auth" }, ""},
		// routes and the auth prefix
		{"route equal to auth prefix", func(c *Config) { c.Routes[0].Path = "/auth/" }, `routes[0].path (TH_ROUTES) "/auth/" overlaps auth_prefix`},
		{"route containing auth prefix", func(c *Config) { c.AuthPrefix = "/api/auth" }, `routes[0].path (TH_ROUTES) "/api/" overlaps auth_prefix "/api/auth"`},
		{"route under auth prefix", func(c *Config) { c.Routes[0].Path = "/auth/api/" }, "overlaps auth_prefix"},
		{"route sharing letters with auth prefix", func(c *Config) { c.Routes[0].Path = "/authors/" }, ""},
		{"route TRACE", func(c *Config) { c.Routes[0].Methods = []string{"GET", "TRACE"} }, "routes[0].methods (TH_ROUTES) must not allow TRACE"},
		{"route CONNECT", func(c *Config) { c.Routes[0].Methods = []string{"CONNECT"} }, "must not allow CONNECT"},
		{"route upstream without host", func(c *Config) { c.Routes[0].Upstream = "http:///x" }, "routes[0].upstream (TH_ROUTES) has no host"},
		{"route upstream missing", func(c *Config) { c.Routes[0].Upstream = "" }, "routes[0].upstream (TH_ROUTES) is required"},
		{"route double slash", func(c *Config) { c.Routes[0].Path = "/api//v1/" }, "must be a clean path"},
		{"route encoded", func(c *Config) { c.Routes[0].Path = "/api%2f/" }, "must be a clean path"},
		{"nested routes", func(c *Config) {
			c.Routes = append(c.Routes, Route{Path: "/api/v2/", Upstream: "http://127.0.0.1:2", Timeout: time.Second})
		}, ""},
		{"rotation grace below a route timeout", func(c *Config) { c.Routes[0].Timeout = 2 * time.Minute }, "session.rotation_grace (TH_SESSION_ROTATION_GRACE) (1m0s) must be at least the longest route timeout (2m0s)"},
		// session and redis
		{"redis store without url", func(c *Config) { c.Session.Store = "redis" }, "redis.url (TH_REDIS_URL) is required with session.store: redis"},
		{"refresh_skew equal to lifetime", func(c *Config) { c.Session.RefreshSkew = c.Session.Lifetime }, "must be shorter than session.lifetime"},
		{"zero lifetime", func(c *Config) { c.Session.Lifetime = 0 }, "session.lifetime (TH_SESSION_LIFETIME) must be a positive duration"},
		{"redis url without address", func(c *Config) { c.Redis.URL = "redis://" }, "redis.url (TH_REDIS_URL) has no address"},
		{"redis url bad db", func(c *Config) { c.Redis.URL = "redis://h:6379/zero" }, "not a database number"},
		{"redis url bad port", func(c *Config) { c.Redis.URL = "redis://:pw@h:port" }, "redis.url (TH_REDIS_URL)"},
		{"redis url empty master_name", func(c *Config) { c.Redis.URL = "redis://h?master_name=" }, "empty master_name"},
		{"redis ca file missing", func(c *Config) { c.Redis.TLSCAFile = "/nonexistent/ca.pem" }, "redis.tls_ca_file (TH_REDIS_TLS_CA_FILE) cannot be read"},
		// oidc
		{"client secret file not read", func(c *Config) { c.OIDC.ClientSecret = ""; c.OIDC.ClientSecretFile = "/x" }, "oidc.client_secret_file (TH_OIDC_CLIENT_SECRET_FILE) was not read"},
		{"both secret and file", func(c *Config) { c.OIDC.ClientSecretFile = "/x" }, "are both set"},
		{"error path with scheme", func(c *Config) { c.OIDC.ErrorPath = "https://evil.example.com/" }, "oidc.error_path (TH_OIDC_ERROR_PATH) must be a local path"},
		{"error path backslash", func(c *Config) { c.OIDC.ErrorPath = `/\evil.example.com` }, "must be a local path"},
		{"error path with query", func(c *Config) { c.OIDC.ErrorPath = "/x?y=1" }, "must be a local path"},
		{"error path newline", func(c *Config) { c.OIDC.ErrorPath = "/x\n" }, "must be a local path"},
		{"post logout empty", func(c *Config) { c.OIDC.PostLogoutRedirectURL = "" }, "oidc.post_logout_redirect_url (TH_OIDC_POST_LOGOUT_REDIRECT_URL) is required"},
		{"backchannel relative", func(c *Config) { c.OIDC.BackchannelBaseURL = "keycloak:8080" }, "oidc.backchannel_base_url (TH_OIDC_BACKCHANNEL_BASE_URL)"},
		{"backchannel with a path", func(c *Config) { c.OIDC.BackchannelBaseURL = "http://gw:8080/idp" }, "oidc.backchannel_base_url (TH_OIDC_BACKCHANNEL_BASE_URL) must be scheme://host[:port] only"},
		{"no keys", func(c *Config) { c.Cookies.Keys = nil }, "cookies.keys (TH_COOKIES_KEYS) needs at least one key"},
		{"short key", func(c *Config) { c.Cookies.Keys = []Secret{"AAAA:BBBB"} }, "cookies.keys[0] (TH_COOKIES_KEYS) hash key: is 3 bytes, want 32"},
		// http
		{"csrf header with space", func(c *Config) { c.CSRF.Header = "X CSRF" }, "csrf.header (TH_CSRF_HEADER) must be a valid header name"},
		{"csrf header safelisted", func(c *Config) { c.CSRF.Header = "accept" }, "cannot protect against CSRF"},
		{"csrf header forbidden", func(c *Config) { c.CSRF.Header = "Sec-Fetch-Site" }, "cannot protect against CSRF"},
		{"cors null", func(c *Config) { c.CORS.AllowedOrigins = []string{"null"} }, "must list exact origins"},
		{"cors ipv6 origin", func(c *Config) { c.CORS.AllowedOrigins = []string{"http://[::1]:3000"} }, ""},
		{"static dir is a file", func(c *Config) { c.Static.Dir = writeFile(t, "f", "x") }, "static.dir (TH_STATIC_DIR)"},
		{"tls key without cert", func(c *Config) { c.TLS.KeyFile = "key.pem" }, "must be set together"},
		{"admin listen bad", func(c *Config) { c.AdminListen = "localhost" }, "admin_listen (TH_ADMIN_LISTEN) must be host:port"},
		{"listen empty", func(c *Config) { c.Listen = "" }, "listen (TH_LISTEN) is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(c)
			got := joined(c.Validate())
			if tc.want == "" {
				if len(got) != 0 {
					t.Errorf("Validate() = %q, want nil", got)
				}
				return
			}
			if !containsLine(got, tc.want) {
				t.Errorf("Validate() = %q, want a problem containing %q", got, tc.want)
			}
		})
	}
}

// The cookie key messages config validation shows, from the one parser.
func TestParseKeyPairMessages(t *testing.T) {
	k32 := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	std := base64.StdEncoding.EncodeToString
	url := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name      string
		in        string
		hash, blk []byte
		err       string
	}{
		{"std padded", std(k32(1)) + ":" + std(k32(2)), k32(1), k32(2), ""},
		{"url raw", url(k32(0xfb)) + ":" + url(k32(0xff)), k32(0xfb), k32(0xff), ""},
		{"surrounding space", "  " + std(k32(1)) + ":" + std(k32(2)) + "\n", k32(1), k32(2), ""},
		{"missing colon", std(k32(1)) + std(k32(2)), nil, nil, "no colon"},
		{"two colons", std(k32(1)) + ":" + std(k32(2)) + ":" + std(k32(3)), nil, nil, "more than one colon"},
		{"short hash key", std(k32(1)[:16]) + ":" + std(k32(2)), nil, nil, "hash key: is 16 bytes, want 32"},
		{"long block key", std(k32(1)) + ":" + std(append(k32(2), 3)), nil, nil, "block key: is 33 bytes, want 32"},
		{"bad base64", "!!!!" + ":" + std(k32(2)), nil, nil, "hash key: is not base64"},
		{"bad base64 block", std(k32(1)) + ":" + std(k32(2))[:43] + "*", nil, nil, "block key: is not base64"},
		{"empty", "", nil, nil, "no colon"},
		{"empty halves", ":", nil, nil, "hash key"},
		{"equal halves", std(k32(1)) + ":" + std(k32(1)), nil, nil, "must differ"},
		{"placeholder", "<base64 32-byte hash key>:<base64 32-byte block key>", nil, nil, "hash key: is not base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kp, err := session.ParseKeyPair(tc.in)
			hash, block := kp.Hash, kp.Block
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseKeyPair(%q) error = %v, want %q", tc.in, err, tc.err)
				}
				if strings.Contains(err.Error(), tc.in) && tc.in != "" && tc.in != ":" {
					t.Errorf("ParseKeyPair(%q) error = %q repeats the key", tc.in, err)
				}
				return
			}
			if err != nil || !bytes.Equal(hash, tc.hash) || !bytes.Equal(block, tc.blk) {
				t.Errorf("ParseKeyPair(%q) = %x, %x, %v, want %x, %x, nil", tc.in, hash, block, err, tc.hash, tc.blk)
			}
		})
	}
}

func TestHelpers(t *testing.T) {
	tests := []struct {
		public, prefix   string
		origin, redirect string
	}{
		{"https://app.example.com", "/auth", "https://app.example.com", "https://app.example.com/auth/callback"},
		{"https://app.example.com/", "/auth", "https://app.example.com", "https://app.example.com/auth/callback"},
		{"http://localhost:8080", "/bff/auth", "http://localhost:8080", "http://localhost:8080/bff/auth/callback"},
		{"http://[::1]:8080/", "/auth", "http://[::1]:8080", "http://[::1]:8080/auth/callback"},
	}
	for _, tc := range tests {
		c := &Config{PublicURL: tc.public, AuthPrefix: tc.prefix}
		if got := c.PublicOrigin(); got != tc.origin {
			t.Errorf("PublicOrigin() for %q = %q, want %q", tc.public, got, tc.origin)
		}
		if got := c.RedirectURL(); got != tc.redirect {
			t.Errorf("RedirectURL() for %q %q = %q, want %q", tc.public, tc.prefix, got, tc.redirect)
		}
	}
	c := validConfig()
	c.Routes = append(c.Routes, Route{Timeout: 45 * time.Second}, Route{Timeout: time.Second})
	if got := c.MaxRouteTimeout(); got != 45*time.Second {
		t.Errorf("MaxRouteTimeout() = %v, want 45s", got)
	}
	if got := EnvName("oidc.client_secret"); got != "TH_OIDC_CLIENT_SECRET" {
		t.Errorf("EnvName(oidc.client_secret) = %q, want TH_OIDC_CLIENT_SECRET", got)
	}
}

func TestNotes(t *testing.T) {
	c := validConfig()
	notes := c.Notes()
	if !slices.Contains(notes, "back-channel logout is not mounted: it needs redis.url") {
		t.Errorf("Notes() = %q, want the back-channel logout note without redis.url", notes)
	}
	c.Redis.URL = "redis://127.0.0.1:6379"
	c.Cookies.Secure = false
	c.Redis.TLSInsecureSkipVerify = true
	c.AdminListen = ":9090"
	c.OIDC.Scopes = []string{"openid"}
	notes = c.Notes()
	if containsLine(notes, "back-channel") {
		t.Errorf("Notes() = %q, want no back-channel note with redis.url", notes)
	}
	for _, want := range []string{"cookies.secure is false", "tls_insecure_skip_verify", "admin_listen :9090 is not a loopback address", "lacks offline_access"} {
		if !containsLine(notes, want) {
			t.Errorf("Notes() = %q, want one containing %q", notes, want)
		}
	}
}

func TestExampleFile(t *testing.T) {
	cfg, warnings, err := Load("example.yaml", nil, nil)
	if err != nil {
		t.Fatalf("Load(example.yaml) error = %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("Load(example.yaml) warnings = %q", warnings)
	}
	// The example shows every key with the defaults of the documented example.
	want := Default()
	want.PublicURL = "https://app.example.com"
	want.OIDC.Issuer = "https://idp.example.com/realms/demo"
	want.OIDC.ClientID = "spa"
	want.OIDC.PostLogoutRedirectURL = "https://app.example.com/"
	want.OIDC.IDTokenSigningAlgs = []string{}
	want.Cookies.Keys = []Secret{"<base64 32-byte hash key>:<base64 32-byte block key>"}
	want.Routes = []Route{{Path: "/api/", Upstream: "http://127.0.0.1:9000", Methods: []string{}, Timeout: 30 * time.Second,
		Token: RouteToken{Via: "session", Resource: []string{}, Audience: []string{}, Format: "as_issued", JWTFrom: "mint"}}}
	want.TokenSigning.Keys = []string{}
	want.TrustedProxies = []string{}
	want.CORS.AllowedOrigins = []string{}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load(example.yaml) =\n%+v\nwant\n%+v", cfg, want)
	}
	// Only the placeholders are wrong: no secret, and a placeholder key.
	got := joined(cfg.Validate())
	wantProblems := []string{
		"oidc.client_secret (TH_OIDC_CLIENT_SECRET) is required",
		"cookies.keys[0] (TH_COOKIES_KEYS) hash key: is not base64",
	}
	if len(got) != len(wantProblems) {
		t.Errorf("Validate(example) = %q, want exactly %q", got, wantProblems)
	}
	for _, w := range wantProblems {
		if !containsLine(got, w) {
			t.Errorf("Validate(example) = %q, want %q", got, w)
		}
	}
	// Filling in the placeholders makes it valid.
	cfg.OIDC.ClientSecret = "s3cret"
	cfg.Cookies.Keys = []Secret{testKey}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate(example with secrets) = %v, want nil", err)
	}
}

func TestValidateErrorIsJoined(t *testing.T) {
	c := validConfig()
	c.OIDC.Issuer, c.OIDC.ClientID = "", ""
	err := c.Validate()
	if n := len(joined(err)); n != 2 {
		t.Errorf("Validate() = %d problems, want 2", n)
	}
	if err == nil || errors.Unwrap(err) != nil { // a join, not a wrap
		t.Errorf("Validate() = %v, want an errors.Join", err)
	}
}
