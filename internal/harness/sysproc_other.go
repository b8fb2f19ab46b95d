//go:build !linux

package harness

import "syscall"

// sysProcAttr has no parent-death signal to offer outside Linux; servers
// then rely on t.Cleanup alone.
func sysProcAttr() *syscall.SysProcAttr {
	return nil
}
