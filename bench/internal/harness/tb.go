// Package harness is what the abuse drill (bench/abuse) and the soak (bench/soak) need
// on top of internal/testbench (processes, ports, readiness) and e2e/idptest (real
// providers, sign-in), and nothing more: a testing.TB so that idptest runs outside go
// test, tokenhandler and redis-server as child processes configured for these runs, a
// small upstream, and readers for /proc and the admin /metrics. It owns no product code
// and is imported by those two commands only.
package harness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TB is a testing.TB for a command: e2e/idptest takes one to start providers and sign
// in, and a command has no *testing.T. Fatal and Skip end the goroutine that Run started
// (runtime.Goexit, as in go test); both count as a failure, since a command that cannot
// run its scenario has failed. Log lines go to the writer given to Run.
type TB struct {
	// testing.TB is embedded only for the interface's unexported method; it is nil and
	// every exported method is defined below, so it is never called.
	testing.TB

	name string
	ctx  context.Context
	out  io.Writer

	mu       sync.Mutex
	failed   bool
	skipped  bool
	cleanups []func()
	dirs     []string
}

var _ testing.TB = (*TB)(nil)

// Run calls f with a TB named name in a goroutine of its own, waits for it, cancels the
// TB's context, runs the cleanups (last registered first) and removes the temporary
// directories, unless keep. It returns an error when f failed, skipped or panicked.
func Run(ctx context.Context, name string, out io.Writer, keep bool, f func(t *TB)) error {
	ctx, cancel := context.WithCancel(ctx)
	t := &TB{name: name, ctx: ctx, out: out}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("panic: %v", r)
			}
		}()
		f(t)
	}()
	<-done
	cancel()
	t.mu.Lock()
	cleanups := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	if keep {
		t.Logf("kept the temporary directories: %v", t.dirs)
	} else {
		for _, d := range t.dirs {
			os.RemoveAll(d)
		}
	}
	switch {
	case t.skipped:
		return fmt.Errorf("%s: could not run: a part is missing (see above)", name)
	case t.Failed():
		return fmt.Errorf("%s: failed (see above)", name)
	}
	return nil
}

func (t *TB) Name() string                 { return t.name }
func (t *TB) Context() context.Context     { return t.ctx }
func (t *TB) Output() io.Writer            { return t.out }
func (t *TB) Helper()                      {}
func (t *TB) Attr(string, string)          {}
func (t *TB) Log(args ...any)              { fmt.Fprintln(t.out, append([]any{t.name + ":"}, args...)...) }
func (t *TB) Logf(format string, a ...any) { fmt.Fprintf(t.out, t.name+": "+format+"\n", a...) }
func (t *TB) Error(args ...any)            { t.Log(args...); t.Fail() }
func (t *TB) Errorf(format string, a ...any) {
	t.Logf(format, a...)
	t.Fail()
}
func (t *TB) Fatal(args ...any)              { t.Log(args...); t.FailNow() }
func (t *TB) Fatalf(format string, a ...any) { t.Logf(format, a...); t.FailNow() }
func (t *TB) Skip(args ...any)               { t.Log(args...); t.SkipNow() }
func (t *TB) Skipf(format string, a ...any)  { t.Logf(format, a...); t.SkipNow() }

func (t *TB) Fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}

func (t *TB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// FailNow marks the run failed and ends the calling goroutine, which must be the one
// Run started (as with testing.T).
func (t *TB) FailNow() {
	t.Fail()
	runtime.Goexit()
}

func (t *TB) SkipNow() {
	t.mu.Lock()
	t.skipped = true
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *TB) Skipped() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.skipped
}

func (t *TB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *TB) TempDir() string {
	d, err := os.MkdirTemp("", "tokenhandler-"+t.name+"-")
	if err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	t.mu.Lock()
	t.dirs = append(t.dirs, d)
	t.mu.Unlock()
	return d
}

// ArtifactDir returns a temporary directory, like TempDir.
func (t *TB) ArtifactDir() string { return t.TempDir() }

func (t *TB) Setenv(key, value string) {
	prev, had := os.LookupEnv(key)
	os.Setenv(key, value)
	t.Cleanup(func() {
		if had {
			os.Setenv(key, prev)
		} else {
			os.Unsetenv(key)
		}
	})
}

func (t *TB) Chdir(dir string) {
	prev, err := os.Getwd()
	if err != nil {
		t.Fatalf("Chdir: %v", err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatalf("Chdir: %v", err)
	}
	t.Cleanup(func() { os.Chdir(prev) })
}

// Wait waits d, or fails the run when it is cancelled first.
func (t *TB) Wait(d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-t.Context().Done():
		t.Fatalf("cancelled: %v", context.Cause(t.Context()))
	case <-time.After(d):
	}
}

// SignalContext is the context of a command's run: cancelled by SIGINT or SIGTERM, and
// after timeout.
func SignalContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancel(); stop() }
}

// ExitOnFlagError ends the command for a flag error: status 0 for -h, 2 otherwise (the
// flag package has printed the problem and the usage already).
func ExitOnFlagError(err error) {
	if err == nil {
		return
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	os.Exit(2)
}
