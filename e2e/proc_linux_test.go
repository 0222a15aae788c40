//go:build linux

package e2e

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill the worker when the test process dies
// without running its cleanups (a panic, go test's -timeout), so no worker
// outlives the test binary.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
