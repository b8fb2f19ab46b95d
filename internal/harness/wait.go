package harness

import (
	"context"
	"errors"
	"testing"
	"time"
)

// waitInterval is how often WaitFor re-checks: a test finishes at most
// this long after its condition holds, and a receiver being queried sees at
// most ten queries a second.
const waitInterval = 100 * time.Millisecond

// WaitFor calls cond until it returns true, at once and then every ~100ms,
// and fails the test if that has not happened within timeout. It is the only
// way tests wait: a sleep is either too long (slow tests) or too short
// (flaky ones), a bounded poll is neither.
//
// An error from cond does not stop the polling, it says why the condition
// does not hold yet; the last one is in the failure message, so return
// errors that describe what was seen ("2 series", "value 3, want 4").
// WaitFor must be called from the test's goroutine.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(waitInterval)
	defer tick.Stop()
	lastErr := errors.New("the condition never held")
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, lastErr)
		case <-tick.C:
		}
	}
}
