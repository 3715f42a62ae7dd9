package testbench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrExited is wrapped by the errors of waits that ended because the process exited.
var ErrExited = errors.New("process exited")

// Spec describes a process to start.
type Spec struct {
	Name string   // for error messages; empty: Bin
	Bin  string   // the program
	Args []string // its arguments
	// Env is the whole environment of the process (see BaseEnv): nothing of ours is
	// inherited unless it is listed here.
	Env []string
	Dir string // working directory; empty: ours
	// LogPath is the file the process's stdout and stderr are appended to. Required.
	LogPath string
	// Output, if not nil, also receives the process's output (a -v flag's copy).
	Output io.Writer
	// DeathSignal is what Linux sends the process when ours dies without stopping it
	// (kill -9, a test timeout). Zero: SIGKILL. Other systems do not support it.
	DeathSignal syscall.Signal
}

// Process is a started child, in a process group of its own so that stopping it also
// stops whatever it started.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // Wait's result, valid after done
}

// Start starts the process that spec describes.
func Start(spec Spec) (*Process, error) {
	name := spec.Name
	if name == "" {
		name = spec.Bin
	}
	if spec.LogPath == "" {
		return nil, fmt.Errorf("testbench: start %s: no LogPath", name)
	}
	f, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testbench: start %s: open log: %w", name, err)
	}
	var out io.Writer = f
	if spec.Output != nil {
		out = io.MultiWriter(f, spec.Output)
	}
	cmd := exec.Command(spec.Bin, spec.Args...)
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // nil would mean ours
	}
	cmd.Dir = spec.Dir
	cmd.Stdout, cmd.Stderr = out, out
	setProcessGroup(cmd, spec.DeathSignal)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("testbench: start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, logPath: spec.LogPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Name is the process's name in messages.
func (p *Process) Name() string { return p.name }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// LogPath is the file that holds the process's output.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit status (nil for 0); valid once Done is closed.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the process group: SIGTERM, then SIGKILL if the process has not exited
// within grace. It returns once the process has exited.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
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

// Kill ends the process group at once, as a crash would, and waits for the exit.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	killGroup(p.cmd)
	<-p.done
}

// Tail returns the last n lines of the process's output, for error messages.
func (p *Process) Tail(n int) string { return TailFile(p.logPath, n) }

// TailFile returns the last n lines of the file at path.
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Group tracks processes so that they can all be stopped, whatever happens.
type Group struct {
	mu   sync.Mutex
	list []*Process
}

// Start starts a process as Start does and adds it to the group.
func (g *Group) Start(spec Spec) (*Process, error) {
	p, err := Start(spec)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.list = append(g.list, p)
	g.mu.Unlock()
	return p, nil
}

// StopAll stops every process of the group still running, newest first.
func (g *Group) StopAll(grace time.Duration) {
	g.mu.Lock()
	list := g.list
	g.list = nil
	g.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].Stop(grace)
	}
}

// BaseEnv is the environment a child gets of ours: enough to run (PATH, HOME, TMPDIR),
// nothing that could configure it (tokenhandler reads TH_*, the providers read their
// own variables), and extra.
func BaseEnv(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if tmp := os.Getenv("TMPDIR"); tmp != "" {
		env = append(env, "TMPDIR="+tmp)
	}
	return append(env, extra...)
}
