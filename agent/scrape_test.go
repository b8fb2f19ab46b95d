package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// hangingScraper is a target that never answers: each scrape lasts until
// its deadline, and it records how many scrapes run at once.
type hangingScraper struct {
	name    string
	active  *atomic.Int32
	maxSeen *atomic.Int32
	total   *atomic.Int32
}

func (h hangingScraper) Name() string { return h.name }

func (h hangingScraper) Scrape(ctx context.Context, now time.Time) (*sample.Scrape, error) {
	n := h.active.Add(1)
	for {
		m := h.maxSeen.Load()
		if n <= m || h.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	<-ctx.Done()
	h.active.Add(-1)
	h.total.Add(1)
	return sample.NewScrape(now, labels.EmptyLabels()), ctx.Err()
}

// TestScrapePoolBoundsConcurrency: max_concurrent_scrapes is a hard bound,
// and hanging targets release their slot at the scrape deadline.
func TestScrapePoolBoundsConcurrency(t *testing.T) {
	var active, maxSeen, total atomic.Int32
	slots := newScrapePool(2) // one main slot, one failing slot
	m := newMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 5 {
		l := &scrapeLoop{
			target:   hangingScraper{fmt.Sprint("t", i), &active, &maxSeen, &total},
			interval: 10 * time.Millisecond, degradedInterval: 10 * time.Millisecond,
			timeout: 20 * time.Millisecond, modes: newModes(), slots: slots, m: m, sink: func(sample.Batch) {},
			log: slog.New(slog.DiscardHandler),
		}
		wg.Go(func() { l.run(ctx) })
	}
	harness.WaitFor(t, 30*time.Second, "every target scraped several times", func() (bool, error) {
		return total.Load() >= 25, nil
	})
	cancel()
	wg.Wait()
	if got := maxSeen.Load(); got != 2 {
		t.Errorf("at most %d scrapes ran at once; want exactly the pool size 2", got)
	}
}

func TestOffsetIsStableAndWithinInterval(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := range 100 {
		name := fmt.Sprintf("10.0.0.%d:6379", i)
		o := offset(name, 10*time.Second)
		if o < 0 || o >= 10*time.Second || o != offset(name, 10*time.Second) {
			t.Fatalf("offset(%s) = %s", name, o)
		}
		seen[o.Truncate(time.Second)] = true
	}
	if len(seen) < 5 {
		t.Errorf("100 targets fall into only %d one-second slots of a 10 s interval", len(seen))
	}
}

// TestAdmitRefusesAtOrBeforeTheLastSent walks the clock guard's boundary:
// a scrape stamped at the very millisecond of the last one sent would put
// a second sample at the same timestamp of every series, which the
// receiver refuses (a duplicate with another value) or keeps only once.
// It is dropped like one stamped before, and the guard lets scrapes
// through again only once the clock is strictly past the last sent one.
func TestAdmitRefusesAtOrBeforeTheLastSent(t *testing.T) {
	l := &scrapeLoop{log: slog.New(slog.DiscardHandler)}
	for i, step := range []struct {
		t     int64
		admit bool
	}{
		{1000, true},
		{1000, false}, // at the last sent
		{999, false},  // before it
		{1000, false}, // at it again, while behind
		{1001, true},  // strictly after: caught up
		{1001, false},
	} {
		last := l.sentT
		if got := l.admit(step.t, 5); got != step.admit {
			t.Errorf("step %d: admit(%d) with the last sent at %d = %v, want %v", i, step.t, last, got, step.admit)
		}
	}
	if l.sentT != 1001 {
		t.Errorf("last sent = %d, want 1001: a refused scrape must not move it", l.sentT)
	}
}
