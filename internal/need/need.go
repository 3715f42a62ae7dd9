// Package need ends a test that lacks a part it requires (a provider binary, a Redis,
// an environment variable): outside CI it skips with the reason, under CI=true it fails,
// so CI never passes by skipping. It also names the environment variables ./test.sh
// exports for those parts. It knows nothing else.
package need

import (
	"os"
	"strconv"
	"testing"
)

// Environment variables that ./test.sh exports. Test-only variables never carry the
// TH_ prefix, which belongs to tokenhandler's configuration.
const (
	EnvHydra = "TOKENHANDLER_TEST_HYDRA" // path of the hydra binary
	EnvDex   = "TOKENHANDLER_TEST_DEX"   // path of the dex binary
	// EnvOIDCProvider is the directory holding node_modules/oidc-provider (npm ci of
	// e2e/idp/oidc-provider/package-lock.json, made by scripts/idp-bin.sh oidc-provider).
	EnvOIDCProvider = "TOKENHANDLER_TEST_OIDC_PROVIDER"
	EnvRedisURL     = "TOKENHANDLER_TEST_REDIS_URL" // redis://127.0.0.1:PORT of a running Redis
	EnvRedisBin     = "TOKENHANDLER_TEST_REDIS_BIN" // path of redis-server, for tests that run their own
)

// InCI reports whether the tests run under CI (CI=true), where a missing part is a
// failure, not a reason to skip.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Missing ends the test because a part it requires is missing: it skips with the
// reason logged, and fails instead when CI=true. what names the part, reason says how
// to provide it.
func Missing(t testing.TB, what, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("need: %s is missing (CI=true, so this fails instead of skipping): %s", what, reason)
	}
	t.Skipf("need: skipped, %s is missing: %s", what, reason)
}

// Env returns the value of the environment variable name, or ends the test through
// Missing when it is unset or empty.
func Env(t testing.TB, name, reason string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Missing(t, name, reason)
	}
	return v
}
