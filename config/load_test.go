package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// envMap is a getenv and an environ over a map.
type envMap map[string]string

func (m envMap) getenv(k string) string { return m[k] }

func (m envMap) environ() []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, yamlText string, env envMap) (*Config, []string, error) {
	t.Helper()
	path := ""
	if yamlText != "" {
		path = writeFile(t, "tokenhandler.yaml", yamlText)
	}
	return Load(path, env.getenv, env.environ())
}

func TestLoadDefaults(t *testing.T) {
	cfg, warnings, err := Load("", nil, nil)
	if err != nil {
		t.Fatalf("Load(\"\") error = %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("Load(\"\") warnings = %q, want none", warnings)
	}
	want := Default()
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load(\"\") = %+v, want %+v", cfg, want)
	}
	// The documented defaults, spelled out so that Default cannot drift unnoticed.
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Listen, ":8080"},
		{"admin_listen", cfg.AdminListen, "127.0.0.1:9090"},
		{"auth_prefix", cfg.AuthPrefix, "/auth"},
		{"oidc.token_auth_method", cfg.OIDC.TokenAuthMethod, "client_secret_basic"},
		{"oidc.scopes", cfg.OIDC.Scopes, []string{"openid", "profile", "email", "offline_access"}},
		{"oidc.error_path", cfg.OIDC.ErrorPath, "/"},
		{"oidc.http_timeout", cfg.OIDC.HTTPTimeout, 10 * time.Second},
		{"oidc.backchannel_base_url", cfg.OIDC.BackchannelBaseURL, ""},
		{"cookies.prefix", cfg.Cookies.Prefix, "th"},
		{"cookies.secure", cfg.Cookies.Secure, true},
		{"session.store", cfg.Session.Store, "cookie"},
		{"session.lifetime", cfg.Session.Lifetime, 12 * time.Hour},
		{"session.idle_timeout", cfg.Session.IdleTimeout, time.Hour},
		{"session.refresh_skew", cfg.Session.RefreshSkew, 30 * time.Second},
		{"session.rotation_grace", cfg.Session.RotationGrace, 60 * time.Second},
		{"session.refresh_timeout", cfg.Session.RefreshTimeout, 10 * time.Second},
		{"redis.key_prefix", cfg.Redis.KeyPrefix, "th:"},
		{"redis.dial_timeout", cfg.Redis.DialTimeout, 500 * time.Millisecond},
		{"redis.read_timeout", cfg.Redis.ReadTimeout, 500 * time.Millisecond},
		{"redis.write_timeout", cfg.Redis.WriteTimeout, 500 * time.Millisecond},
		{"redis.max_retries", cfg.Redis.MaxRetries, 1},
		{"csrf.header", cfg.CSRF.Header, "X-CSRF"},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "json"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("Load(\"\").%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadPrecedence(t *testing.T) {
	const file = `
public_url: "https://file.example.com"
oidc:
  client_id: "from-file"
  scopes: [openid, email]
session:
  refresh_skew: "45s"
cookies:
  secure: false
routes:
  - path: /api/
    upstream: http://127.0.0.1:9000
  - path: /b/
    upstream: http://127.0.0.1:9001
    timeout: 5s
    methods: [GET]
    strip_prefix: true
`
	tests := []struct {
		name  string
		env   envMap
		check func(t *testing.T, c *Config)
	}{
		{"file only", envMap{}, func(t *testing.T, c *Config) {
			if c.OIDC.ClientID != "from-file" || c.Session.RefreshSkew != 45*time.Second || c.Cookies.Secure {
				t.Errorf("Load = client_id %q skew %v secure %v, want from-file 45s false", c.OIDC.ClientID, c.Session.RefreshSkew, c.Cookies.Secure)
			}
			if !slices.Equal(c.OIDC.Scopes, []string{"openid", "email"}) {
				t.Errorf("Load scopes = %q, want [openid email] (a file list replaces the default)", c.OIDC.Scopes)
			}
			want := []Route{
				{Path: "/api/", Upstream: "http://127.0.0.1:9000", Timeout: DefaultRouteTimeout},
				{Path: "/b/", Upstream: "http://127.0.0.1:9001", Timeout: 5 * time.Second, Methods: []string{"GET"}, StripPrefix: true},
			}
			if !reflect.DeepEqual(c.Routes, want) {
				t.Errorf("Load routes = %+v, want %+v", c.Routes, want)
			}
			if c.OIDC.PostLogoutRedirectURL != "https://file.example.com/" {
				t.Errorf("Load post_logout_redirect_url = %q, want public_url + /", c.OIDC.PostLogoutRedirectURL)
			}
			if c.Session.Lifetime != 12*time.Hour {
				t.Errorf("Load lifetime = %v, want the default 12h for a key absent from the file", c.Session.Lifetime)
			}
		}},
		{"env beats file", envMap{
			"TH_OIDC_CLIENT_ID":             "from-env",
			"TH_SESSION_REFRESH_SKEW":       "10s",
			"TH_COOKIES_SECURE":             "true",
			"TH_OIDC_SCOPES":                "openid, profile,,offline_access",
			"TH_PUBLIC_URL":                 "http://localhost:8080/",
			"TH_ROUTES":                     `[{"path":"/x/","upstream":"http://127.0.0.1:1","strip_prefix":true,"methods":["GET","POST"],"timeout":"5s"},{"path":"/y/","upstream":"http://127.0.0.1:2"}]`,
			"TH_OIDC_ERROR_PATH":            "/oops",
			"TH_REDIS_MAX_RETRIES":          "3",
			"TH_TRUSTED_PROXIES":            "10.0.0.0/8,192.168.0.0/16",
			"TH_CORS_ALLOWED_ORIGINS":       "https://a.example.com",
			"TH_OIDC_ID_TOKEN_SIGNING_ALGS": "ES256",
		}, func(t *testing.T, c *Config) {
			if c.OIDC.ClientID != "from-env" || c.Session.RefreshSkew != 10*time.Second || !c.Cookies.Secure {
				t.Errorf("Load = client_id %q skew %v secure %v, want from-env 10s true", c.OIDC.ClientID, c.Session.RefreshSkew, c.Cookies.Secure)
			}
			if !slices.Equal(c.OIDC.Scopes, []string{"openid", "profile", "offline_access"}) {
				t.Errorf("Load scopes = %q, want [openid profile offline_access]", c.OIDC.Scopes)
			}
			want := []Route{
				{Path: "/x/", Upstream: "http://127.0.0.1:1", StripPrefix: true, Methods: []string{"GET", "POST"}, Timeout: 5 * time.Second},
				{Path: "/y/", Upstream: "http://127.0.0.1:2", Timeout: DefaultRouteTimeout},
			}
			if !reflect.DeepEqual(c.Routes, want) {
				t.Errorf("Load routes = %+v, want %+v (TH_ROUTES replaces the file's list)", c.Routes, want)
			}
			if c.OIDC.PostLogoutRedirectURL != "http://localhost:8080/" {
				t.Errorf("Load post_logout_redirect_url = %q, want http://localhost:8080/", c.OIDC.PostLogoutRedirectURL)
			}
			if c.Redis.MaxRetries != 3 || c.OIDC.ErrorPath != "/oops" {
				t.Errorf("Load = max_retries %d error_path %q, want 3 /oops", c.Redis.MaxRetries, c.OIDC.ErrorPath)
			}
			if !slices.Equal(c.TrustedProxies, []string{"10.0.0.0/8", "192.168.0.0/16"}) || !slices.Equal(c.CORS.AllowedOrigins, []string{"https://a.example.com"}) {
				t.Errorf("Load = trusted_proxies %q cors %q", c.TrustedProxies, c.CORS.AllowedOrigins)
			}
		}},
		{"empty env var counts as unset", envMap{"TH_OIDC_CLIENT_ID": ""}, func(t *testing.T, c *Config) {
			if c.OIDC.ClientID != "from-file" {
				t.Errorf("Load client_id = %q, want from-file", c.OIDC.ClientID)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, warnings, err := load(t, file, tc.env)
			if err != nil {
				t.Fatalf("Load error = %v", err)
			}
			if len(warnings) != 0 {
				t.Errorf("Load warnings = %q, want none", warnings)
			}
			tc.check(t, cfg)
		})
	}
}

// allEnv is every environment variable Load reads, in struct order. It is the list the
// README documents; a new key must be added here on purpose.
var allEnv = []string{
	"TH_LISTEN", "TH_ADMIN_LISTEN", "TH_PUBLIC_URL", "TH_AUTH_PREFIX",
	"TH_OIDC_ISSUER", "TH_OIDC_CLIENT_ID", "TH_OIDC_CLIENT_SECRET", "TH_OIDC_CLIENT_SECRET_FILE",
	"TH_OIDC_TOKEN_AUTH_METHOD", "TH_OIDC_CLIENT_KEY_FILE", "TH_OIDC_PAR", "TH_OIDC_DPOP",
	"TH_OIDC_PROFILE", "TH_OIDC_SCOPES", "TH_OIDC_ID_TOKEN_SIGNING_ALGS",
	"TH_OIDC_POST_LOGOUT_REDIRECT_URL", "TH_OIDC_ERROR_PATH", "TH_OIDC_HTTP_TIMEOUT",
	"TH_OIDC_BACKCHANNEL_BASE_URL", "TH_OIDC_INTROSPECTION_ENDPOINT",
	"TH_COOKIES_PREFIX", "TH_COOKIES_KEYS", "TH_COOKIES_KEYS_FILE", "TH_COOKIES_SECURE",
	"TH_SESSION_STORE", "TH_SESSION_LIFETIME", "TH_SESSION_IDLE_TIMEOUT", "TH_SESSION_REFRESH_SKEW",
	"TH_SESSION_ROTATION_GRACE", "TH_SESSION_REFRESH_TIMEOUT",
	"TH_REDIS_URL", "TH_REDIS_URL_FILE", "TH_REDIS_KEY_PREFIX", "TH_REDIS_DIAL_TIMEOUT",
	"TH_REDIS_READ_TIMEOUT", "TH_REDIS_WRITE_TIMEOUT", "TH_REDIS_MAX_RETRIES", "TH_REDIS_POOL_SIZE",
	"TH_REDIS_TLS_CA_FILE", "TH_REDIS_TLS_INSECURE_SKIP_VERIFY",
	"TH_ROUTES", "TH_DPOP_KEY_FILE", "TH_TOKEN_SIGNING_KEYS", "TH_TOKEN_SIGNING_TTL", "TH_SERVER_READ_HEADER_TIMEOUT", "TH_SERVER_BODY_TIMEOUT", "TH_SERVER_IDLE_TIMEOUT",
	"TH_PROXY_REPLAY_MEMORY", "TH_TRUSTED_PROXIES", "TH_CORS_ALLOWED_ORIGINS", "TH_CSRF_HEADER", "TH_STATIC_DIR",
	"TH_TLS_CERT_FILE", "TH_TLS_KEY_FILE", "TH_LOG_LEVEL", "TH_LOG_FORMAT",
	"TH_TRACING_ENABLED",
}

// testLeaf is a key found by the test's own walk of the yaml tags, independent of Load's.
type testLeaf struct {
	key   string
	index []int
	typ   reflect.Type
}

func walkYAML(t reflect.Type, prefix string, index []int) []testLeaf {
	var out []testLeaf
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if !f.IsExported() || tag == "" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		idx := append(append([]int{}, index...), i)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, walkYAML(f.Type, key, idx)...)
			continue
		}
		out = append(out, testLeaf{key, idx, f.Type})
	}
	return out
}

func TestEveryKeyHasAnEnvOverride(t *testing.T) {
	keys := walkYAML(reflect.TypeFor[Config](), "", nil)
	var names []string
	for _, k := range keys {
		names = append(names, "TH_"+strings.ToUpper(strings.ReplaceAll(k.key, ".", "_")))
	}
	if !slices.Equal(names, allEnv) {
		t.Errorf("environment variables of Config = %q, want %q", names, allEnv)
	}
	var loadNames []string
	for _, l := range leaves() {
		loadNames = append(loadNames, l.env)
	}
	if !slices.Equal(loadNames, names) {
		t.Errorf("leaves() = %q, want %q", loadNames, names)
	}

	for i, k := range keys {
		env := names[i]
		t.Run(env, func(t *testing.T) {
			var value string
			var want any
			switch {
			case strings.HasSuffix(k.key, "_file"):
				value = writeFile(t, "f", "line-one\n")
				want = value
			case k.typ == reflect.TypeFor[time.Duration]():
				value, want = "7s", 7*time.Second
			case k.typ == reflect.TypeFor[ByteSize]():
				value, want = "7MiB", ByteSize(7<<20)
			case k.typ.Kind() == reflect.String:
				value = "env-" + k.key
				want = reflect.ValueOf(value).Convert(k.typ).Interface()
			case k.typ.Kind() == reflect.Bool:
				def := reflect.ValueOf(Default()).Elem().FieldByIndex(k.index).Bool()
				value, want = "false", false
				if !def {
					value, want = "true", true
				}
			case k.typ.Kind() == reflect.Int:
				value, want = "7", 7
			case k.typ == reflect.TypeFor[[]Route]():
				value = `[{"path":"/env/","upstream":"http://127.0.0.1:7","timeout":"7s"}]`
				want = []Route{{Path: "/env/", Upstream: "http://127.0.0.1:7", Timeout: 7 * time.Second}}
			case k.typ.Kind() == reflect.Slice && k.typ.Elem().Kind() == reflect.String:
				value = "a, b"
				sl := reflect.MakeSlice(k.typ, 2, 2)
				sl.Index(0).SetString("a")
				sl.Index(1).SetString("b")
				want = sl.Interface()
			default:
				t.Fatalf("key %s has type %s, which this test cannot set: extend it", k.key, k.typ)
			}
			env := envMap{env: value}
			cfg, warnings, err := Load("", env.getenv, env.environ())
			if err != nil {
				t.Fatalf("Load with %s=%q error = %v", names[i], value, err)
			}
			if len(warnings) != 0 {
				t.Errorf("Load with %s warnings = %q, want none", names[i], warnings)
			}
			got := reflect.ValueOf(cfg).Elem().FieldByIndex(k.index).Interface()
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load with %s=%q: %s = %#v, want %#v", names[i], value, k.key, got, want)
			}
			def := reflect.ValueOf(Default()).Elem().FieldByIndex(k.index).Interface()
			if reflect.DeepEqual(got, def) {
				t.Errorf("Load with %s: %s = the default %#v: the override did nothing", names[i], k.key, def)
			}
		})
	}
}

func TestLoadFileForms(t *testing.T) {
	keyA := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	keyB := "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=:YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8="
	secretFile := writeFile(t, "secret", "  s3cret\n\n")
	keysFile := writeFile(t, "keys", "# current key\n"+keyA+"\n\n   # old key, still opens\n  "+keyB+"  \n")
	urlFile := writeFile(t, "url", "redis://:pw@127.0.0.1:6379/0\n")

	env := envMap{
		"TH_OIDC_CLIENT_SECRET_FILE": secretFile,
		"TH_COOKIES_KEYS_FILE":       keysFile,
		"TH_REDIS_URL_FILE":          urlFile,
	}
	cfg, _, err := Load("", env.getenv, env.environ())
	if err != nil {
		t.Fatalf("Load error = %v", err)
	}
	if cfg.OIDC.ClientSecret != "s3cret" {
		t.Errorf("Load client_secret = %q, want the trimmed file content", string(cfg.OIDC.ClientSecret))
	}
	if want := []Secret{Secret(keyA), Secret(keyB)}; !slices.Equal(cfg.Cookies.Keys, want) {
		t.Errorf("Load keys = %q, want %q (comments and blank lines skipped)", cfg.Cookies.Keys, want)
	}
	if cfg.Redis.URL != "redis://:pw@127.0.0.1:6379/0" {
		t.Errorf("Load redis.url = %q, want the file content", string(cfg.Redis.URL))
	}
	// A value read from its file is not "both set".
	for _, e := range joined(cfg.Validate()) {
		for _, key := range []string{"client_secret", "cookies.keys", "redis.url"} {
			if strings.Contains(e, key) && strings.Contains(e, "both set") {
				t.Errorf("Validate() = %q, want no both-set problem for values read from files", e)
			}
		}
	}

	t.Run("both set", func(t *testing.T) {
		env := envMap{
			"TH_OIDC_CLIENT_SECRET":      "direct",
			"TH_OIDC_CLIENT_SECRET_FILE": secretFile,
			"TH_COOKIES_KEYS":            keyA,
			"TH_COOKIES_KEYS_FILE":       keysFile,
			"TH_REDIS_URL":               "redis://127.0.0.1:6379",
			"TH_REDIS_URL_FILE":          urlFile,
		}
		cfg, _, err := Load("", env.getenv, env.environ())
		if err != nil {
			t.Fatalf("Load error = %v", err)
		}
		if cfg.OIDC.ClientSecret != "direct" {
			t.Errorf("Load client_secret = %q, want the direct value kept", string(cfg.OIDC.ClientSecret))
		}
		errs := joined(cfg.Validate())
		for _, want := range []string{
			"oidc.client_secret (TH_OIDC_CLIENT_SECRET) and oidc.client_secret_file (TH_OIDC_CLIENT_SECRET_FILE) are both set",
			"cookies.keys (TH_COOKIES_KEYS) and cookies.keys_file (TH_COOKIES_KEYS_FILE) are both set",
			"redis.url (TH_REDIS_URL) and redis.url_file (TH_REDIS_URL_FILE) are both set",
		} {
			if !containsLine(errs, want) {
				t.Errorf("Validate() = %q, want a problem %q", errs, want)
			}
		}
	})

	t.Run("missing and empty files", func(t *testing.T) {
		tests := []struct {
			env  envMap
			want string
		}{
			{envMap{"TH_OIDC_CLIENT_SECRET_FILE": filepath.Join(t.TempDir(), "nope")}, "oidc.client_secret_file (TH_OIDC_CLIENT_SECRET_FILE)"},
			{envMap{"TH_REDIS_URL_FILE": writeFile(t, "empty", " \n")}, "redis.url_file (TH_REDIS_URL_FILE): file"},
			{envMap{"TH_COOKIES_KEYS_FILE": writeFile(t, "comments", "# nothing\n\n")}, "cookies.keys_file (TH_COOKIES_KEYS_FILE): file"},
		}
		for _, tc := range tests {
			_, _, err := Load("", tc.env.getenv, tc.env.environ())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load(%v) error = %v, want one mentioning %q", tc.env, err, tc.want)
			}
		}
	})
}

func TestLoadWarnings(t *testing.T) {
	env := envMap{
		"TH_OIDC_CLIENT_ID":  "spa",
		"TH_OIDC_CLIENTID":   "oops",
		"TH_FROBNICATE":      "secret-value",
		"HOME":               "/root",
		"TOKENHANDLER_DEBUG": "1",
	}
	cfg, warnings, err := Load("", env.getenv, env.environ())
	if err != nil {
		t.Fatalf("Load error = %v", err)
	}
	want := []string{
		"unknown environment variable TH_FROBNICATE ignored",
		"unknown environment variable TH_OIDC_CLIENTID ignored (did you mean TH_OIDC_CLIENT_ID?)",
	}
	if !slices.Equal(warnings, want) {
		t.Errorf("Load warnings = %q, want %q", warnings, want)
	}
	if strings.Contains(strings.Join(warnings, " "), "secret-value") {
		t.Errorf("Load warnings = %q repeat a variable's value", warnings)
	}
	if cfg.OIDC.ClientID != "spa" {
		t.Errorf("Load client_id = %q, want spa", cfg.OIDC.ClientID)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		env     envMap
		want    []string
		notWant string
	}{
		{name: "unknown top-level key", yaml: "listen: :1\nlistne: :2\n", want: []string{"line 2: unknown key listne"}},
		{name: "unknown nested key", yaml: "oidc:\n  issuer: x\n  client_secert: y\n", want: []string{"line 3: unknown key oidc.client_secert"}},
		{name: "unknown key in a route", yaml: "routes:\n  - path: /a/\n    upstream: http://x\n  - path: /b/\n    upstrem: http://y\n", want: []string{"unknown key routes[1].upstrem"}},
		{name: "near miss suggested", yaml: "oidc:\n  client-id: x\n", want: []string{`unknown key oidc.client-id (did you mean "client_id"?)`}},
		{name: "every unknown key at once", yaml: "a: 1\nb: 2\n", want: []string{"unknown key a", "unknown key b"}},
		{name: "bad yaml duration", yaml: "session:\n  lifetime: forever\n", want: []string{`line 2: session.lifetime: want a duration such as "30s"`}},
		{name: "integer duration refused", yaml: "session:\n  lifetime: 30\n", want: []string{"line 2: session.lifetime: want a duration"}},
		{name: "bad yaml bool", yaml: "cookies:\n  secure: maybe\n", want: []string{"line 2: cookies.secure: want true or false"}},
		{name: "bad yaml int", yaml: "redis:\n  max_retries: 1.5\n", want: []string{"line 2: redis.max_retries: want an integer"}},
		{name: "scalar for a list", yaml: "oidc:\n  scopes: openid\n", want: []string{"line 2: oidc.scopes: want a list"}},
		{name: "mapping for routes", yaml: "routes: {path: /a/}\n", want: []string{"line 1: routes: want a list"}},
		{name: "bad route timeout", yaml: "routes:\n  - path: /a/\n    timeout: soon\n", want: []string{"line 3: routes[0].timeout: want a duration"}},
		{name: "scalar for a section", yaml: "oidc: yes\n", want: []string{"line 1: oidc: want a mapping"}},
		{name: "not a mapping at all", yaml: "- a\n- b\n", want: []string{"the document: want a mapping"}},
		{name: "keys as a string, not echoed", yaml: "cookies:\n  keys: \"hunter2:hunter3\"\n", want: []string{"line 2: cookies.keys: want a list"}, notWant: "hunter2"},
		{name: "secret as a list, not echoed", yaml: "oidc:\n  client_secret: [hunter2]\n", want: []string{"line 2: oidc.client_secret: want a string"}, notWant: "hunter2"},
		{name: "syntax error", yaml: "listen: [\n", want: []string{"tokenhandler.yaml"}},
		{name: "two documents", yaml: "listen: :1\n---\nlisten: :2\n", want: []string{"more than one YAML document"}},
		{name: "bad env duration", env: envMap{"TH_SESSION_REFRESH_SKEW": "soon"}, want: []string{"TH_SESSION_REFRESH_SKEW (session.refresh_skew): not a duration"}},
		{name: "bad env bool", env: envMap{"TH_COOKIES_SECURE": "yes please"}, want: []string{"TH_COOKIES_SECURE (cookies.secure): not a boolean"}},
		{name: "bad env int", env: envMap{"TH_REDIS_MAX_RETRIES": "one"}, want: []string{"TH_REDIS_MAX_RETRIES (redis.max_retries): not an integer"}},
		{name: "bad env JSON", env: envMap{"TH_ROUTES": `[{"path":"/a/"`}, want: []string{"TH_ROUTES (routes): not a JSON array"}},
		{name: "unknown key in TH_ROUTES", env: envMap{"TH_ROUTES": `[{"path":"/a/","upstrem":"http://x"}]`}, want: []string{"TH_ROUTES (routes)", "upstrem"}},
		{name: "bad timeout in TH_ROUTES", env: envMap{"TH_ROUTES": `[{"path":"/a/","timeout":"5"}]`}, want: []string{"TH_ROUTES (routes)", "timeout"}},
		{name: "TH_ROUTES not an array", env: envMap{"TH_ROUTES": `{"path":"/a/"}`}, want: []string{"TH_ROUTES (routes)"}},
		{name: "unknown key in TH_ROUTES token", env: envMap{"TH_ROUTES": `[{"path":"/a/","token":{"via":"exchange","audiense":["x"]}}]`}, want: []string{"TH_ROUTES (routes)", "audiense"}},
		{name: "TH_ROUTES trailing data", env: envMap{"TH_ROUTES": `[] []`}, want: []string{"TH_ROUTES (routes)", "after the array"}},
		{name: "every bad variable at once", env: envMap{"TH_LOG_LEVEL": "debug", "TH_OIDC_HTTP_TIMEOUT": "x", "TH_REDIS_POOL_SIZE": "y"},
			want: []string{"TH_OIDC_HTTP_TIMEOUT", "TH_REDIS_POOL_SIZE"}},
		{name: "secret values never echoed", env: envMap{"TH_SESSION_LIFETIME": "hunter2"}, want: []string{"TH_SESSION_LIFETIME"}, notWant: "hunter2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := load(t, tc.yaml, tc.env)
			if err == nil {
				t.Fatalf("Load error = nil, want one mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load error = %q, want it to mention %q", err, w)
				}
			}
			if tc.notWant != "" && strings.Contains(err.Error(), tc.notWant) {
				t.Errorf("Load error = %q, must not contain %q", err, tc.notWant)
			}
		})
	}
}

func TestLoadEdgeCases(t *testing.T) {
	t.Run("empty file", func(t *testing.T) {
		cfg, _, err := load(t, "# nothing but a comment\n", nil)
		if err != nil || !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("Load(comment-only file) = %+v, %v, want defaults", cfg, err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		if _, _, err := Load(filepath.Join(t.TempDir(), "none.yaml"), nil, nil); err == nil {
			t.Error("Load(missing file) error = nil, want one")
		}
	})
	t.Run("explicit zero route timeout is kept for Validate", func(t *testing.T) {
		cfg, _, err := load(t, "routes:\n  - path: /a/\n    upstream: http://127.0.0.1:1\n    timeout: 0s\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Routes[0].Timeout != 0 {
			t.Errorf("Load route timeout = %v, want 0 (explicit)", cfg.Routes[0].Timeout)
		}
		if !containsLine(joined(cfg.Validate()), "routes[0].timeout (TH_ROUTES) must be positive") {
			t.Errorf("Validate() = %q, want a problem with routes[0].timeout", joined(cfg.Validate()))
		}
	})
	t.Run("merge keys are checked", func(t *testing.T) {
		_, _, err := load(t, "x: &a {listen: ':1', bogus: 1}\n", nil)
		if err == nil || !strings.Contains(err.Error(), "unknown key x") {
			t.Errorf("Load error = %v, want unknown key x", err)
		}
		_, _, err = load(t, "oidc:\n  <<: {client_id: a, bogus: 1}\n", nil)
		if err == nil || !strings.Contains(err.Error(), "unknown key oidc.bogus") {
			t.Errorf("Load error = %v, want unknown key oidc.bogus", err)
		}
	})
	t.Run("secret does not print", func(t *testing.T) {
		cfg := Default()
		cfg.OIDC.ClientSecret = "hunter2"
		cfg.Cookies.Keys = []Secret{"k1:k2"}
		cfg.Redis.URL = "redis://:pw@host"
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			if s := sprintf(verb, cfg); strings.Contains(s, "hunter2") || strings.Contains(s, "k1:k2") || strings.Contains(s, ":pw@") {
				t.Errorf("Sprintf(%q, cfg) = %s, want secrets redacted", verb, s)
			}
		}
	})
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		bad  bool
	}{
		{in: "64MiB", want: 64 << 20},
		{in: "512KiB", want: 512 << 10},
		{in: "1GiB", want: 1 << 30},
		{in: "1048576", want: 1 << 20},
		{in: " 2 MB ", want: 2 << 20},
		{in: "7B", want: 7},
		{in: "", bad: true},
		{in: "MiB", bad: true},
		{in: "-1MiB", bad: true},
		{in: "1.5MiB", bad: true},
		{in: "1TiB", bad: true},
		{in: "99999999999999GiB", bad: true},
	}
	for _, tc := range tests {
		var b ByteSize
		err := b.UnmarshalText([]byte(tc.in))
		switch {
		case tc.bad && err == nil:
			t.Errorf("UnmarshalText(%q) = %d, want an error", tc.in, b)
		case !tc.bad && (err != nil || b != tc.want):
			t.Errorf("UnmarshalText(%q) = %d, %v, want %d", tc.in, b, err, tc.want)
		}
	}
	if got := ByteSize(64 << 20).String(); got != "64MiB" {
		t.Errorf("String() = %q, want 64MiB", got)
	}
}

func TestReplayMemoryFromYAML(t *testing.T) {
	for in, want := range map[string]ByteSize{`"8MiB"`: 8 << 20, `2097152`: 2 << 20} {
		path := writeFile(t, "c.yaml", "proxy:\n  replay_memory: "+in+"\n")
		cfg, _, err := Load(path, envMap{}.getenv, nil)
		if err != nil {
			t.Fatalf("Load(replay_memory: %s) error = %v", in, err)
		}
		if cfg.Proxy.ReplayMemory != want {
			t.Errorf("Load(replay_memory: %s) = %d, want %d", in, cfg.Proxy.ReplayMemory, want)
		}
	}
	path := writeFile(t, "c.yaml", "proxy:\n  replay_memory: lots\n")
	if _, _, err := Load(path, envMap{}.getenv, nil); err == nil || !strings.Contains(err.Error(), "proxy.replay_memory") {
		t.Errorf("Load(replay_memory: lots) error = %v, want one naming proxy.replay_memory", err)
	}
}
