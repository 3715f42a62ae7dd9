package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/tokenhandler/tokenhandler/config"
	"github.com/tokenhandler/tokenhandler/josekey"
	"github.com/tokenhandler/tokenhandler/session"
)

const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="

type env map[string]string

func (e env) getenv(k string) string { return e[k] }

func (e env) environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// runCmd runs the program with args and env and returns stdout, stderr, the exit status
// main would use and the error.
func runCmd(t *testing.T, e env, args ...string) (stdout, stderr string, code int, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(context.Background(), args, e.getenv, e.environ(), &out, &errb)
	code = exitCode(err, &errb)
	return out.String(), errb.String(), code, err
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokenhandler.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const validYAML = `
public_url: "https://app.example.com"
oidc:
  issuer: "https://idp.example.com"
  client_id: "spa"
routes:
  - path: /api/
    upstream: http://127.0.0.1:9000
`

func TestKeygen(t *testing.T) {
	seen := make(map[string]bool)
	for range 2 {
		out, _, code, err := runCmd(t, nil, "keygen")
		if err != nil || code != 0 {
			t.Fatalf("keygen = %v (exit %d), want success", err, code)
		}
		if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Errorf("keygen output = %q, want exactly one line", out)
		}
		key := strings.TrimSuffix(out, "\n")
		kp, err := session.ParseKeyPair(key)
		if err != nil {
			t.Fatalf("session.ParseKeyPair(keygen output) error = %v", err)
		}
		hash, block := kp.Hash, kp.Block
		if len(hash) != 32 || len(block) != 32 {
			t.Errorf("keygen key halves = %d, %d bytes, want 32, 32", len(hash), len(block))
		}
		if seen[key] {
			t.Errorf("keygen printed the same key twice")
		}
		seen[key] = true
		// The key works in the configuration as printed.
		e := env{"TH_COOKIES_KEYS": key, "TH_OIDC_CLIENT_SECRET": "s3cret"}
		if _, stderr, _, err := runCmd(t, e, "check-config", "--config", writeConfig(t, validYAML)); err != nil {
			t.Errorf("check-config with the keygen key = %v\n%s", err, stderr)
		}
	}
	if _, _, code, err := runCmd(t, nil, "keygen", "extra"); code != 2 {
		t.Errorf("keygen extra = %v (exit %d), want a usage error (exit 2)", err, code)
	}
}

func TestCheckConfig(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		e := env{"TH_OIDC_CLIENT_SECRET": "s3cret", "TH_COOKIES_KEYS": testKey, "TH_UNKNOWN_THING": "x"}
		out, stderr, code, err := runCmd(t, e, "check-config", "--config", writeConfig(t, validYAML))
		if err != nil || code != 0 {
			t.Fatalf("check-config = %v (exit %d), want success; stderr %s", err, code, stderr)
		}
		if !strings.HasPrefix(out, "config OK\n") {
			t.Errorf("check-config output = %q, want it to start with config OK", out)
		}
		for _, want := range []string{"note: back-channel logout is not mounted: it needs redis.url", "warning: unknown environment variable TH_UNKNOWN_THING ignored"} {
			if !strings.Contains(out, want) {
				t.Errorf("check-config output = %q, want %q", out, want)
			}
		}
		if strings.Contains(out+stderr, "s3cret") {
			t.Errorf("check-config output repeats the client secret")
		}
	})
	t.Run("every problem, one a line", func(t *testing.T) {
		bad := writeConfig(t, `
public_url: "http://app.example.com"
oidc:
  issuer: "http://idp.example.com"
  client_secret: "hunter2"
routes:
  - path: /auth/
    upstream: http://127.0.0.1:9000
    methods: [TRACE]
`)
		out, stderr, code, err := runCmd(t, env{"TH_TYPO": "1"}, "check-config", "-config", bad)
		if err == nil || code != 1 {
			t.Fatalf("check-config = %v (exit %d), want exit 1", err, code)
		}
		if out != "" {
			t.Errorf("check-config stdout = %q, want nothing", out)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		for _, want := range []string{
			"warning: unknown environment variable TH_TYPO ignored",
			"tokenhandler: invalid configuration (6 problems):",
			"public_url (TH_PUBLIC_URL) is http:// on a non-loopback host",
			"oidc.issuer (TH_OIDC_ISSUER) must be https://",
			"oidc.client_id (TH_OIDC_CLIENT_ID) is required",
			"cookies.keys (TH_COOKIES_KEYS) needs at least one key",
			`routes[0].path (TH_ROUTES) "/auth/" overlaps auth_prefix "/auth"`,
			"routes[0].methods (TH_ROUTES) must not allow TRACE",
		} {
			if !containsPrefix(lines, want) {
				t.Errorf("check-config stderr lines = %q, want one starting %q", lines, want)
			}
		}
		if strings.Contains(stderr, "hunter2") {
			t.Errorf("check-config stderr repeats the client secret: %s", stderr)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		_, stderr, code, err := runCmd(t, nil, "check-config", "--config", writeConfig(t, "oidc:\n  isuer: x\n"))
		if code != 1 || !strings.Contains(stderr, "unknown key oidc.isuer") {
			t.Errorf("check-config = %v (exit %d), stderr %q, want exit 1 naming oidc.isuer", err, code, stderr)
		}
	})
	t.Run("bad env value", func(t *testing.T) {
		_, stderr, code, _ := runCmd(t, env{"TH_SESSION_LIFETIME": "forever"}, "check-config")
		if code != 1 || !strings.Contains(stderr, "TH_SESSION_LIFETIME (session.lifetime)") {
			t.Errorf("check-config = exit %d, stderr %q, want exit 1 naming TH_SESSION_LIFETIME", code, stderr)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		if _, _, code, _ := runCmd(t, nil, "check-config", "--config", filepath.Join(t.TempDir(), "none.yaml")); code != 1 {
			t.Errorf("check-config with a missing file = exit %d, want 1", code)
		}
	})
	t.Run("example file", func(t *testing.T) {
		_, stderr, code, _ := runCmd(t, nil, "check-config", "--config", "../../config/example.yaml")
		if code != 1 || !strings.Contains(stderr, "(2 problems)") {
			t.Errorf("check-config example.yaml = exit %d, stderr %q, want only its two placeholders reported", code, stderr)
		}
	})
}

func containsPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestServeRefusesInvalidConfig(t *testing.T) {
	// serve is the default command: a flag first, or no argument at all, means serve.
	for _, args := range [][]string{
		{"serve", "--config", writeConfig(t, "oidc: {client_id: spa}\n")},
		{"--config", writeConfig(t, "oidc: {client_id: spa}\n")},
		{},
	} {
		_, stderr, code, err := runCmd(t, env{"TH_BOGUS": "1"}, args...)
		if code != 1 || !strings.Contains(stderr, "oidc.issuer (TH_OIDC_ISSUER) is required") {
			t.Errorf("run(%q) = %v (exit %d), stderr %q, want exit 1 naming oidc.issuer", args, err, code, stderr)
		}
		if !strings.Contains(stderr, "warning: unknown environment variable TH_BOGUS") {
			t.Errorf("run(%q) stderr = %q, want the unknown-variable warning", args, stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, code, err := runCmd(t, nil, "version")
	if err != nil || code != 0 || !strings.HasPrefix(out, "tokenhandler dev") {
		t.Errorf("version = %q, %v (exit %d), want tokenhandler dev...", out, err, code)
	}
	old := version
	version = "v1.2.3"
	t.Cleanup(func() { version = old })
	if out, _, _, _ := runCmd(t, nil, "version"); !strings.HasPrefix(out, "tokenhandler v1.2.3") {
		t.Errorf("version with -X main.version=v1.2.3 = %q, want tokenhandler v1.2.3...", out)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate" (commands: serve, check-config, keygen, version, help)`},
		{[]string{"help"}, 0, "Usage: tokenhandler <command>", ""},
		{[]string{"-h"}, 0, "Usage: tokenhandler <command>", ""},
		{[]string{"--help"}, 0, "check-config", ""},
		{[]string{"serve", "-h"}, 0, "", "-config file"},
		{[]string{"serve", "--nope"}, 2, "", "flag provided but not defined: -nope"},
		{[]string{"check-config", "extra"}, 2, "", `check-config: unexpected argument "extra"`},
		{[]string{"version", "x"}, 2, "", "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, stderr, code, err := runCmd(t, nil, tc.args...)
			if code != tc.code {
				t.Errorf("run(%q) = %v, exit %d, want exit %d", tc.args, err, code, tc.code)
			}
			if !strings.Contains(out, tc.inStdout) {
				t.Errorf("run(%q) stdout = %q, want %q", tc.args, out, tc.inStdout)
			}
			if !strings.Contains(stderr, tc.inStderr) {
				t.Errorf("run(%q) stderr = %q, want %q", tc.args, stderr, tc.inStderr)
			}
		})
	}
	if code := exitCode(flag.ErrHelp, &bytes.Buffer{}); code != 0 {
		t.Errorf("exitCode(flag.ErrHelp) = %d, want 0", code)
	}
}

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	l := newLogger(config.Log{Level: "warn", Format: "json"}, &b)
	l.Info("hidden")
	l.Warn("shown", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatalf("json logger output %q: %v", b.String(), err)
	}
	if rec["msg"] != "shown" || rec["k"] != "v" {
		t.Errorf("json logger record = %v, want msg shown, k v (and no info record)", rec)
	}
	b.Reset()
	l = newLogger(config.Log{Level: "debug", Format: "text"}, &b)
	l.Debug("dbg", "k", "v")
	if got := b.String(); !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "msg=dbg") {
		t.Errorf("text logger output = %q, want a DEBUG text record", got)
	}
}

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	for _, tc := range []struct {
		env       map[string]string
		gogc      int
		memLimit  int64
		wantLimit int64 // the runtime's limit afterwards
	}{
		{env: nil, gogc: gcPercent, memLimit: softMemoryLimit, wantLimit: softMemoryLimit},
		{env: map[string]string{"GOMEMLIMIT": "1GiB"}, gogc: gcPercent, memLimit: -1, wantLimit: math.MaxInt64},
		{env: map[string]string{"GOGC": "100"}, gogc: -1, memLimit: -1, wantLimit: math.MaxInt64},
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		gogc, limit := tuneGC(func(k string) string { return tc.env[k] })
		if gogc != tc.gogc || limit != tc.memLimit {
			t.Errorf("tuneGC(%v) = %d, %d, want %d, %d", tc.env, gogc, limit, tc.gogc, tc.memLimit)
		}
		if got := debug.SetMemoryLimit(-1); got != tc.wantLimit {
			t.Errorf("tuneGC(%v): memory limit %d, want %d", tc.env, got, tc.wantLimit)
		}
	}
}

func TestKeygenJOSEKeys(t *testing.T) {
	dir := t.TempDir()
	// A client key: PEM on stdout, its registration JWK on stderr; check-config takes it
	// for private_key_jwt under the fapi2 profile, with a DPoP key made the same way.
	pemOut, jwkOut, code, err := runCmd(t, nil, "keygen", "-client-key", "PS256")
	if err != nil || code != 0 {
		t.Fatalf("keygen -client-key = %v (exit %d)", err, code)
	}
	clientKey := filepath.Join(dir, "client.pem")
	_ = os.WriteFile(clientKey, []byte(pemOut), 0o600)
	k, err := josekey.Load(clientKey)
	if err != nil {
		t.Fatalf("the printed client key does not load: %v", err)
	}
	if !strings.Contains(jwkOut, string(k.RegistrationJWK())) || strings.Contains(jwkOut, "PRIVATE") {
		t.Errorf("keygen -client-key stderr = %q, want the public JWK %s only", jwkOut, k.RegistrationJWK())
	}
	if out, _, _, err := runCmd(t, nil, "keygen", "-public-jwk", clientKey); err != nil || strings.TrimSpace(out) != string(k.RegistrationJWK()) {
		t.Errorf("keygen -public-jwk = %q, %v; want %s", out, err, k.RegistrationJWK())
	}
	dpopOut, _, _, err := runCmd(t, nil, "keygen", "-dpop-key", "EdDSA")
	if err != nil {
		t.Fatal(err)
	}
	dpopKey := filepath.Join(dir, "dpop.pem")
	_ = os.WriteFile(dpopKey, []byte(dpopOut), 0o600)
	e := env{"TH_COOKIES_KEYS": testKey, "TH_OIDC_TOKEN_AUTH_METHOD": "private_key_jwt", "TH_OIDC_CLIENT_KEY_FILE": clientKey,
		"TH_OIDC_PROFILE": "fapi2", "TH_OIDC_PAR": "required", "TH_OIDC_DPOP": "true", "TH_DPOP_KEY_FILE": dpopKey}
	if _, stderr, _, err := runCmd(t, e, "check-config", "--config", writeConfig(t, validYAML)); err != nil {
		t.Errorf("check-config with the printed keys = %v\n%s", err, stderr)
	}
	// The profile refuses a client secret, PAR off and no DPoP, naming each key.
	e = env{"TH_COOKIES_KEYS": testKey, "TH_OIDC_CLIENT_SECRET": "s3cret", "TH_OIDC_PROFILE": "fapi2", "TH_OIDC_PAR": "off"}
	_, stderr, code, err := runCmd(t, e, "check-config", "--config", writeConfig(t, validYAML))
	for _, key := range []string{"oidc.token_auth_method (TH_OIDC_TOKEN_AUTH_METHOD)", "oidc.par (TH_OIDC_PAR)", "oidc.dpop (TH_OIDC_DPOP)"} {
		if err == nil || code != 1 || !strings.Contains(stderr, key) {
			t.Errorf("check-config fapi2 with a secret = %v (exit %d), want a problem naming %s\n%s", err, code, key, stderr)
		}
	}
	for _, args := range [][]string{{"keygen", "-dpop-key", "PS256"}, {"keygen", "-client-key", "HS256"}, {"keygen", "-client-key", "ES256", "-dpop-key", "ES256"}} {
		if _, _, code, err := runCmd(t, nil, args...); code != 2 {
			t.Errorf("%q = %v (exit %d), want a usage error", args, err, code)
		}
	}
}
