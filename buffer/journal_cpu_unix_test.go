//go:build unix

package buffer

import (
	"syscall"
	"testing"
	"time"
)

// processCPU is the user plus system CPU time this process has used: a
// benchmark reports it per operation beside the wall time, which on a
// shared machine measures the neighbours as much as the code.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
