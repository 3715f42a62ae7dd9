package idptest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"
)

// process is one provider process, in a process group of its own so that stopping it
// also stops anything it started.
type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
}

// startProcess runs bin with args and env (the whole environment: the provider does not
// inherit ours, so a stray DSN or ISSUER variable cannot reconfigure it), writing its
// output to logPath.
func startProcess(bin string, args, env []string, logPath string) (*process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("idptest: open log: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.Stdin = nil
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("idptest: start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process group: SIGTERM, then SIGKILL if it has not exited within grace.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	terminateGroup(p.cmd)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	killGroup(p.cmd)
	<-p.done
}

// baseEnv is the environment every provider gets: enough to run, nothing that could
// configure it (Hydra and Dex both read configuration from environment variables).
func baseEnv(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if tmp := os.Getenv("TMPDIR"); tmp != "" {
		env = append(env, "TMPDIR="+tmp)
	}
	return append(env, extra...)
}

// freePorts returns n distinct loopback ports that were free a moment ago. The provider
// binds them later, so another process can take one in between; launch retries with
// new ports when a provider exits before it is ready.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("idptest: pick a free port: %w", err)
		}
		ls = append(ls, l) // held until all are picked, so they are distinct
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

var errExited = errors.New("provider exited before it was ready")
