package idptest

import (
	"os"
	"strconv"
	"testing"
)

// Environment variables that ./test.sh exports. Test-only variables never carry the
// TH_ prefix, which belongs to tokenhandler's configuration.
const (
	EnvHydra     = "TOKENHANDLER_TEST_HYDRA"     // path of the hydra binary
	EnvDex       = "TOKENHANDLER_TEST_DEX"       // path of the dex binary
	EnvRedisURL  = "TOKENHANDLER_TEST_REDIS_URL" // redis://127.0.0.1:PORT of a running Redis
	EnvRedisBin  = "TOKENHANDLER_TEST_REDIS_BIN" // path of redis-server, for tests that run their own
	envCI        = "CI"
	envBinHelper = "scripts/idp-bin.sh"
)

// InCI reports whether the tests run under CI (CI=true), where a missing part is a
// failure, not a reason to skip.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv(envCI))
	return ci
}

// Need ends the test because a part it requires (a binary, an environment variable) is
// missing: it skips with the reason logged, and fails instead when CI=true, so CI never
// passes by skipping. what names the part, reason says how to provide it.
func Need(t testing.TB, what, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("idptest: %s is missing (CI=true, so this fails instead of skipping): %s", what, reason)
	}
	t.Skipf("idptest: skipped, %s is missing: %s", what, reason)
}

// NeedEnv returns the value of the environment variable name, or ends the test through
// Need when it is unset or empty.
func NeedEnv(t testing.TB, name, reason string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Need(t, name, reason)
	}
	return v
}

// binary returns the provider binary of kind from its environment variable.
func binary(t testing.TB, kind string) string {
	t.Helper()
	env := map[string]string{"hydra": EnvHydra, "dex": EnvDex}[kind]
	path := NeedEnv(t, env, "run ./test.sh, or export "+env+"=$("+envBinHelper+" "+kind+")")
	if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		Need(t, kind+" binary", env+"="+path+" is not an executable file")
	}
	return path
}
