package agent

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/sample"
)

// progress is how far an endpoint's delivery has got, for those who
// watch it: the newest sample the receiver has taken (the delivery lag
// is how old that is) and the pace of the current replay (how long the
// rest of the backlog will take at that pace). The sender writes it;
// /metrics and /api/v1/status read it.
type progress struct {
	mu      sync.Mutex
	newestT int64 // ms; 0 until the receiver took a sample
	// lastTaken is when the receiver last took samples; zero before.
	lastTaken time.Time
	// The current replay: when its first batch from the store was taken,
	// and how many samples from the store were taken since.
	replayFrom time.Time
	replayed   int64
	// parked: samples were parked this run, and the log said so.
	parked bool
}

// firstPark reports whether this is the run's first park of the
// endpoint, which the log explains once; reloads keep the answer.
func (p *progress) firstPark() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	first := !p.parked
	p.parked = true
	return first
}

// taken records a part of a batch the receiver took.
func (p *progress) taken(part *sample.Batch, fromStore bool, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastTaken = now
	for i := range part.Samples {
		p.newestT = max(p.newestT, part.Samples[i].T)
	}
	if fromStore {
		if p.replayFrom.IsZero() {
			p.replayFrom = now
		}
		p.replayed += int64(part.Len())
	}
}

// replayEnded forgets the pace of a replay that is over.
func (p *progress) replayEnded() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replayFrom, p.replayed = time.Time{}, 0
}

// lastSent is when the receiver last took samples; zero before it took
// any.
func (p *progress) lastSent() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastTaken
}

// lag is now minus the newest sample the receiver took; ok is false
// before it took any.
func (p *progress) lag(now time.Time) (seconds float64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.newestT == 0 {
		return 0, false
	}
	return max(0, now.Sub(time.UnixMilli(p.newestT)).Seconds()), true
}

// drainEstimate is how long a backlog of the given samples takes at the
// current replay's pace; ok is false when no replay is under way long
// enough to have a pace.
func (p *progress) drainEstimate(backlog int64, now time.Time) (seconds float64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := now.Sub(p.replayFrom).Seconds()
	if p.replayFrom.IsZero() || p.replayed == 0 || elapsed <= 0 {
		return 0, false
	}
	return float64(backlog) / (float64(p.replayed) / elapsed), true
}

var (
	lagDesc = prometheus.NewDesc("redwire_delivery_lag_seconds",
		"Age of the newest sample the endpoint's receiver has taken: how far behind the receiver's view is. Absent until it took one.", []string{"endpoint"}, nil)
	drainDesc = prometheus.NewDesc("redwire_backlog_drain_estimate_seconds",
		"Time the endpoint's disk backlog takes to drain at the current replay's pace. Absent when no replay is under way.", []string{"endpoint"}, nil)
)
