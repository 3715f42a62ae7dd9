//go:build !unix

package testbench

import (
	"os/exec"
	"syscall"
)

func setProcessGroup(*exec.Cmd, syscall.Signal) {}

func terminateGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
