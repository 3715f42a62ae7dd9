package testbench

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the child in a process group of its own, and has the kernel send
// it sig (zero: SIGKILL) when we die without stopping it. Pdeathsig is tied to the OS
// thread that started the child; the Go runtime does not end its threads while the
// process lives, unless a goroutine exits while locked to one, which this package never
// does.
func setProcessGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if sig == 0 {
		sig = syscall.SIGKILL
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig}
}

func terminateGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

func killGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
