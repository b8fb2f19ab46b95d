package agent

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// TestProgressLagAndDrain: the lag is the age of the newest sample taken,
// whatever order parts arrive in; the drain estimate is the backlog at the
// replay's pace so far, and there is none outside a replay.
func TestProgressLagAndDrain(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	part := func(ts ...int64) *sample.Batch {
		var b sample.Batch
		for _, ms := range ts {
			b.Samples = append(b.Samples, sample.Sample{Labels: labels.FromStrings("__name__", "x"), T: ms})
		}
		return &b
	}
	var p progress
	if _, ok := p.lag(t0); ok {
		t.Error("a lag before anything was taken")
	}
	p.taken(part(t0.UnixMilli()-5000, t0.UnixMilli()-2000), false, t0)
	p.taken(part(t0.UnixMilli()-9000), false, t0) // an older part later: the newest stays
	if lag, ok := p.lag(t0); !ok || lag != 2 {
		t.Errorf("lag %v %v, want 2 s", lag, ok)
	}
	if _, ok := p.drainEstimate(1000, t0); ok {
		t.Error("a drain estimate outside a replay")
	}
	p.taken(part(1, 2, 3, 4, 5), true, t0)
	p.taken(part(6, 7, 8, 9, 10), true, t0.Add(2*time.Second)) // 10 samples in 2 s: 5/s
	if d, ok := p.drainEstimate(50, t0.Add(2*time.Second)); !ok || d != 10 {
		t.Errorf("drain estimate of 50 samples at 5/s: %v %v, want 10 s", d, ok)
	}
	p.replayEnded()
	if _, ok := p.drainEstimate(50, t0.Add(3*time.Second)); ok {
		t.Error("a drain estimate after the replay ended")
	}
}
