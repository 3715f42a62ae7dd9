package drill

import "syscall"

// sysProcAttr puts a child in a process group of its own, and has the kernel kill it
// when the test binary dies without running its cleanups (a timeout, a panic, a
// SIGTERM): orphaned replicas and Sentinels would otherwise outlive the test. Pdeathsig
// is tied to the OS thread that started the child; the Go runtime does not end its
// threads while the process lives, unless a goroutine exits while locked to one, which
// this package never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
