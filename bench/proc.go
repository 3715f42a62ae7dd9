//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// procs tracks every child of the harness so that it stops them all, whatever
// happens.
type procs struct{ testbench.Group }

// stopGrace is how long a child gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// start runs bin with args and env (added to testbench.BaseEnv), its output in logPath.
func (ps *procs) start(name, bin string, args, env []string, logPath string) (*testbench.Process, error) {
	return ps.Start(testbench.Spec{Name: name, Bin: bin, Args: args, Env: testbench.BaseEnv(env...), LogPath: logPath})
}

// waitHTTP polls url every 5 ms until it answers want, p exits, or timeout passes. It
// returns when the answer came; its error ends with the end of p's output.
func waitHTTP(ctx context.Context, p *testbench.Process, url string, want int, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	at, err := testbench.WaitHTTP(ctx, p, url, want, 5*time.Millisecond)
	if err != nil && p != nil {
		return at, fmt.Errorf("bench: %w\n%s", err, p.Tail(30))
	}
	return at, err
}

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuTime is the CPU time (user + system) process pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("bench: read stat of %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: count fields
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("bench: malformed /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bench: malformed /proc stat")
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// peakRSS is the process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("bench: read status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: VmHWM: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("bench: no VmHWM")
}
