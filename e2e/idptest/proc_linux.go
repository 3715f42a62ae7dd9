package idptest

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the provider in a process group of its own, and has the kernel
// kill it when the test binary dies without running its cleanups (a test timeout, a
// panic, kill -9). Pdeathsig is tied to the OS thread that started the child; the Go
// runtime does not end its threads while the process lives, unless a goroutine exits
// while locked to one, which this package never does.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func terminateGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

func killGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
