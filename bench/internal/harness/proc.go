//go:build linux

package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/internal/need"
	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// RepoRoot returns the root of the tokenhandler clone the command runs in.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("harness: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	b, err := os.ReadFile(mod)
	if err != nil || !bytes.Contains(b, []byte("module github.com/tokenhandler/tokenhandler\n")) {
		return "", errors.New("harness: run from inside the tokenhandler clone")
	}
	return filepath.Dir(mod), nil
}

// NeedProvider makes sure the environment names the provider binary of kind
// (need.EnvHydra, need.EnvDex), as ./test.sh does: when it does not, it builds the
// provider with scripts/idp-bin.sh (cached outside the clone; minutes when cold).
func NeedProvider(ctx context.Context, root, kind string) error {
	env := map[string]string{idptest.KindHydra: need.EnvHydra, idptest.KindDex: need.EnvDex}[kind]
	if env == "" {
		return fmt.Errorf("harness: unknown provider %q", kind)
	}
	if os.Getenv(env) != "" {
		return nil
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "idp-bin.sh"), kind)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("harness: scripts/idp-bin.sh %s: %w", kind, err)
	}
	return os.Setenv(env, strings.TrimSpace(string(out)))
}

// BuildTokenhandler builds ./cmd/tokenhandler of the clone at root into dir, or returns
// prebuilt when it is not empty (another version, to compare).
func BuildTokenhandler(ctx context.Context, root, dir, prebuilt string) (string, error) {
	if prebuilt != "" {
		return filepath.Abs(prebuilt)
	}
	bin := filepath.Join(dir, "tokenhandler")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tokenhandler")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: go build ./cmd/tokenhandler: %w\n%s", err, out)
	}
	return bin, nil
}

// Process is one child process (internal/testbench: a process group of its own,
// killed by the kernel if the command dies without cleaning up), stopped at the TB's
// cleanup.
type Process struct {
	*testbench.Process
}

// Start runs bin with args; env is added to testbench.BaseEnv (PATH, HOME, TMPDIR), so
// that no stray TH_ variable of the caller's reaches it.
func Start(t *TB, name, bin string, args, env []string) *Process {
	p, err := testbench.Start(testbench.Spec{Name: name, Bin: bin, Args: args, Env: testbench.BaseEnv(env...),
		LogPath: filepath.Join(t.TempDir(), name+".log")})
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { p.Stop(stopGrace) })
	return &Process{p}
}

const stopGrace = 5 * time.Second

// Listener reserves a loopback port: the caller closes it just before a child binds it.
func Listener(t *TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return ln
}

// Tokenhandler is one running tokenhandler.
type Tokenhandler struct {
	URL   string // public origin (public_url)
	Admin string // admin origin, plain HTTP
	Proc  *Process
}

// StartTokenhandler runs bin (a build of ./cmd/tokenhandler) as `serve` on the
// reserved listeners pub and admin, configured by env alone (TH_* variables; TH_LISTEN
// and TH_ADMIN_LISTEN are set here), and waits until its /readyz answers 200.
// publicURL is its public_url; its scheme must match the listener (TLS or not).
func StartTokenhandler(t *TB, name, bin string, pub, admin net.Listener, env map[string]string) *Tokenhandler {
	th := &Tokenhandler{Admin: "http://" + admin.Addr().String()}
	vars := []string{"TH_LISTEN=" + pub.Addr().String(), "TH_ADMIN_LISTEN=" + admin.Addr().String()}
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	th.URL = env["TH_PUBLIC_URL"]
	pub.Close()
	admin.Close()
	th.Proc = Start(t, name, bin, []string{"serve"}, vars)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := testbench.WaitHTTP(ctx, th.Proc.Process, th.Admin+"/readyz", http.StatusOK, 50*time.Millisecond); err != nil {
		t.Fatalf("%s: %v; its output ends:\n%s", name, err, th.Proc.Tail(40))
	}
	return th
}

// StartRedis runs a redis-server of its own on a free loopback port (the binary from
// need.EnvRedisBin, or redis-server on PATH) and returns its redis:// URL.
func StartRedis(t *TB) string {
	bin := os.Getenv(need.EnvRedisBin)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			need.Missing(t, "redis-server", "install it (apt-get install redis-server) or set "+need.EnvRedisBin)
		}
	}
	for attempt := 0; attempt < 3; attempt++ {
		port, err := testbench.FreePort()
		if err != nil {
			t.Fatalf("%v", err)
		}
		p := Start(t, fmt.Sprintf("redis-%d", port), bin, []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, nil)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err = testbench.Poll(ctx, 50*time.Millisecond, func(context.Context) (bool, error) {
			if p.Exited() {
				return false, testbench.ErrExited
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil, nil
		})
		cancel()
		if err == nil {
			return "redis://" + addr
		}
		p.Stop(stopGrace)
	}
	t.Fatalf("redis-server did not start")
	return ""
}

// Prepare is the start of every command's run: the provider kind ready (built or
// installed) and tokenhandler built (or prebuilt, when given), whose path it returns. It
// fails the run on either.
func Prepare(t *TB, providerKind, prebuilt string) string {
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := NeedProvider(t.Context(), root, providerKind); err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("building ./cmd/tokenhandler")
	bin, err := BuildTokenhandler(t.Context(), root, t.TempDir(), prebuilt)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return bin
}
