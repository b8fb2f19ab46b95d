//go:build linux

package harness

import "syscall"

// sysProcAttr makes the kernel SIGKILL a server when the test binary dies.
// t.Cleanup does not run when `go test -timeout` panics or the run is
// interrupted, and an orphaned redis-server would keep its port and dir.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
