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
	"syscall"
	"time"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
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
// (idptest.EnvHydra, idptest.EnvDex), as ./test.sh does: when it does not, it builds the
// provider with scripts/idp-bin.sh (cached outside the clone; minutes when cold).
func NeedProvider(ctx context.Context, root, kind string) error {
	env := map[string]string{idptest.KindHydra: idptest.EnvHydra, idptest.KindDex: idptest.EnvDex}[kind]
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

// Process is one child process, in a process group of its own, killed by the kernel if
// the command dies without cleaning up (Pdeathsig), stopped at the TB's cleanup.
type Process struct {
	Name string
	Log  string // path of its output
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs bin with args; env is added to a minimal environment (PATH, HOME, TMPDIR)
// so that no stray TH_ variable of the caller's reaches it.
func Start(t *TB, name, bin string, args, env []string) *Process {
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	defer f.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}, env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Stop)
	return p
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the process group: SIGTERM, SIGKILL after 5 s.
func (p *Process) Stop() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Tail returns the last n bytes of the process's output.
func (p *Process) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

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
	if err := waitOK(ctx, th.Proc, th.Admin+"/readyz"); err != nil {
		t.Fatalf("%s: %v; its output ends:\n%s", name, err, th.Proc.Tail(4000))
	}
	return th
}

// waitOK polls u until it answers 200, p exits or ctx ends.
func waitOK(ctx context.Context, p *Process, u string) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for {
		if p.Exited() {
			return errors.New("exited before it was ready")
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: GET %s: %w", u, ctx.Err())
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartRedis runs a redis-server of its own on a free loopback port (the binary from
// idptest.EnvRedisBin, or redis-server on PATH) and returns its redis:// URL.
func StartRedis(t *TB) string {
	bin := os.Getenv(idptest.EnvRedisBin)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			idptest.Need(t, "redis-server", "install it (apt-get install redis-server) or set "+idptest.EnvRedisBin)
		}
	}
	for attempt := 0; attempt < 3; attempt++ {
		ln := Listener(t)
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		p := Start(t, fmt.Sprintf("redis-%d", port), bin, []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, nil)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && !p.Exited() {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
				c.Close()
				return fmt.Sprintf("redis://127.0.0.1:%d", port)
			}
			time.Sleep(50 * time.Millisecond) // polling a port that has no event to wait on
		}
		p.Stop()
	}
	t.Fatalf("redis-server did not start")
	return ""
}
