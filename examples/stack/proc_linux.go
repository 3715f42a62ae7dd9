package main

import "syscall"

// setParentDeathSignal makes Linux stop the child if the stack dies without cleaning up
// (kill -9), so no Dex or tokenhandler is left holding the demo's ports.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGTERM }
