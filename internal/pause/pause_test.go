package pause

import (
	"context"
	"testing"
	"time"
)

func TestForEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if For(ctx, time.Hour) {
		t.Error("For waited the whole hour of a context already done")
	}
	if !For(context.Background(), time.Millisecond) {
		t.Error("For reported a cut-short wait with nothing to cut it")
	}
}
