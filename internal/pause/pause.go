// Package pause is the one wait of redwire's retry loops and pacers: a
// sleep that the context cuts short, so that shutdown and reloads never
// wait out a backoff.
package pause

import (
	"context"
	"time"
)

// For waits d, or less if ctx ends first; it reports whether it waited
// the whole d.
func For(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
