package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokenhandler/tokenhandler/internal/need"
)

func TestDexConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dex.yaml")
	in := dexConfig{
		Issuer: "http://localhost:5556/dex", Listen: "127.0.0.1:5556", TokenTTL: "5s",
		Username: username, PasswordHash: passwordHash, ClientID: clientID,
		ClientSecret: "s3cret", PublicURL: "http://localhost:8080",
	}
	if err := writeDexConfig(path, in); err != nil {
		t.Fatalf("writeDexConfig() = %v", err)
	}
	b, _ := os.ReadFile(path)
	var got struct {
		Issuer  string `yaml:"issuer"`
		Storage struct{ Type string }
		Web     struct{ HTTP string }
		Expiry  struct {
			IDTokens      string `yaml:"idTokens"`
			RefreshTokens struct {
				ReuseInterval string `yaml:"reuseInterval"`
			} `yaml:"refreshTokens"`
		}
		OAuth2 struct {
			SkipApprovalScreen bool `yaml:"skipApprovalScreen"`
			PKCE               struct{ Enforce bool }
		} `yaml:"oauth2"`
		StaticPasswords []struct{ Email, Hash string } `yaml:"staticPasswords"`
		StaticClients   []struct {
			ID                     string
			Secret                 string
			RedirectURIs           []string `yaml:"redirectURIs"`
			PostLogoutRedirectURIs []string `yaml:"postLogoutRedirectURIs"`
		} `yaml:"staticClients"`
	}
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatalf("generated dex.yaml is not YAML: %v\n%s", err, b)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"issuer", got.Issuer, in.Issuer},
		{"storage", got.Storage.Type, "memory"},
		{"web.http", got.Web.HTTP, in.Listen},
		{"expiry.idTokens", got.Expiry.IDTokens, "5s"},
		{"reuseInterval", got.Expiry.RefreshTokens.ReuseInterval, "0s"},
		{"skipApprovalScreen", got.OAuth2.SkipApprovalScreen, true},
		{"pkce.enforce", got.OAuth2.PKCE.Enforce, true},
		{"password hash", got.StaticPasswords[0].Hash, passwordHash},
		{"client secret", got.StaticClients[0].Secret, "s3cret"},
		{"redirect", got.StaticClients[0].RedirectURIs[0], "http://localhost:8080/auth/callback"},
		{"post logout", got.StaticClients[0].PostLogoutRedirectURIs[0], "http://localhost:8080/"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("dex.yaml %s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestChildEnvDropsConfiguration(t *testing.T) {
	t.Setenv("TH_OIDC_ISSUER", "http://evil.example")
	t.Setenv("DEX_SESSIONS_ENABLED", "false")
	t.Setenv("STACK_TEST_KEEP", "1")
	env := strings.Join(childEnv(), "\n")
	for _, bad := range []string{"TH_OIDC_ISSUER", "DEX_SESSIONS_ENABLED"} {
		if strings.Contains(env, bad) {
			t.Errorf("childEnv() passes %s on", bad)
		}
	}
	if !strings.Contains(env, "STACK_TEST_KEEP=1") {
		t.Errorf("childEnv() dropped an unrelated variable")
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-ports=some"},
		{"-token-ttl=0s"},
		{"extra"},
	} {
		err := run(context.Background(), args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}

// TestStackRunsAndStops starts the whole stack with the real Dex, checks what a user
// meets before signing in (the SPA, no session, a 401 from the API, metrics), then
// cancels it like Ctrl-C and checks every child is gone. The browser tests
// (e2e/browser) sign in through it.
func TestStackRunsAndStops(t *testing.T) {
	// The demo's Dex, the one ./run.sh starts (test.sh exports it); else the tests' Dex.
	dex := os.Getenv("TOKENHANDLER_DEX")
	if dex == "" {
		dex = need.Env(t, need.EnvDex, "run ./test.sh, or export TOKENHANDLER_DEX=$(scripts/idp-bin.sh dex-demo)")
	}
	if testing.Short() {
		t.Skip("starts Dex and tokenhandler")
	}
	root, th := buildTokenhandler(t)
	info, cancel, done, _ := startStack(t, "-dex", dex, "-tokenhandler", th, "-root", root)
	defer cancel()

	get := func(url string, header ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(info.URL + "/"); code != 200 || !strings.Contains(body, `id="call-api"`) {
		t.Errorf("GET / = %d, want 200 with the example SPA", code)
	}
	if code, body := get(info.URL + "/auth/session"); code != 200 || !strings.Contains(body, `"authenticated":false`) {
		t.Errorf("GET /auth/session = %d %s, want 200 authenticated false", code, body)
	}
	if code, _ := get(info.URL+"/api/claims", "X-CSRF", "1"); code != http.StatusUnauthorized {
		t.Errorf("GET /api/claims without a session = %d, want 401", code)
	}
	if code, _ := get(info.APIURL+"/claims", "Authorization", "Bearer not-a-jwt"); code != http.StatusUnauthorized {
		t.Errorf("example API with a bad token = %d, want 401", code)
	}
	if code, body := get(info.MetricsURL); code != 200 || !strings.Contains(body, "tokenhandler_http_requests_total") {
		t.Errorf("GET %s = %d, want 200 with tokenhandler_http_requests_total", info.MetricsURL, code)
	}
	if code, body := get(info.Issuer + "/.well-known/openid-configuration"); code != 200 || !strings.Contains(body, "end_session_endpoint") {
		t.Errorf("Dex discovery = %d, want 200 with end_session_endpoint (DEX_SESSIONS_ENABLED)", code)
	}
	stopStack(t, info, cancel, done, childPIDs(t, info.LogDir, th))
}

// buildTokenhandler builds ./cmd/tokenhandler into the test's directory and returns the
// repository root and the binary.
func buildTokenhandler(t *testing.T) (root, bin string) {
	t.Helper()
	root, err := findRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(t.TempDir(), "tokenhandler")
	build := exec.Command("go", "build", "-o", bin, "./cmd/tokenhandler")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tokenhandler: %v\n%s", err, out)
	}
	return root, bin
}

// startStack runs the stack with -ports=auto -json -token-ttl=5s and args until its
// JSON line says it is ready. cancel is Ctrl-C; done gets run's result.
func startStack(t *testing.T, args ...string) (info Info, cancel context.CancelFunc, done <-chan error, stderr *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr = &bytes.Buffer{} // read only after done
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, append([]string{"-ports=auto", "-json", "-token-ttl=5s"}, args...),
			func(string) string { return "" }, pw, stderr)
		pw.Close()
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			cancel()
			t.Fatalf("the stack stopped before it was ready: %v\n%s", <-errc, stderr.String())
		}
		if err := json.Unmarshal([]byte(line), &info); err != nil {
			cancel()
			t.Fatalf("-json line %q: %v", line, err)
		}
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatalf("the stack was not ready within 2 minutes")
	}
	return info, cancel, errc, stderr
}

// stopStack cancels the stack like Ctrl-C and checks that it returns nil, that the
// processes pids are gone and that its log directory was removed.
func stopStack(t *testing.T, info Info, cancel context.CancelFunc, done <-chan error, pids []int) {
	t.Helper()
	cancel() // Ctrl-C
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run() after cancel = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stack did not stop within 30 s")
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("process %d still runs after the stack stopped", pid)
		}
	}
	if _, err := os.Stat(info.LogDir); !os.IsNotExist(err) {
		t.Errorf("log directory %s left behind after a clean stop", info.LogDir)
	}
}

// childPIDs finds, from /proc, the processes whose command line names one of needles:
// the stack's directory (Dex's config) and tokenhandler's binary.
func childPIDs(t *testing.T, needles ...string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc: cannot check that children stop")
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, n := range needles {
			if bytes.Contains(cmdline, []byte(n)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	if len(pids) != len(needles) {
		t.Errorf("found processes %v for %q, want one each (Dex, tokenhandler)", pids, needles)
	}
	return pids
}
