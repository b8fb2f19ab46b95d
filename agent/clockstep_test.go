package agent

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
)

// steppedClock is a wall clock that runs with the real one, shifted by an
// offset the test sets: the host clock as NTP or a VM restore steps it.
// It counts its reads; a scrape loop reads it once per scrape, after the
// previous scrape was handed on or dropped.
type steppedClock struct {
	offset atomic.Int64 // time.Duration
	reads  atomic.Int64
}

func (c *steppedClock) now() time.Time {
	c.reads.Add(1)
	return time.Now().Add(time.Duration(c.offset.Load()))
}

// set moves the clock to the real time plus offset.
func (c *steppedClock) set(offset time.Duration) { c.offset.Store(int64(offset)) }

// newestSample is the timestamp of the newest stored sample of selector;
// zero if there is none.
func newestSample(prom *harness.Prometheus, selector string) (time.Time, error) {
	series, err := prom.Samples(context.Background(), selector, outageWindow)
	if err != nil {
		return time.Time{}, err
	}
	var newest time.Time
	for _, s := range series {
		if n := len(s.Points); n > 0 && s.Points[n-1].T.After(newest) {
			newest = s.Points[n-1].T
		}
	}
	return newest, nil
}

// TestClockStepDropsOutOfOrderScrapes: the host's wall clock steps back a
// minute, then NTP steps it forward again. Scrapes stamped at or before the
// last one sent are dropped and counted as out_of_order, never sent for the
// receiver to refuse (which would also lose the good samples batched with
// them); once the clock is past the last sent scrape, samples flow again,
// and the step is logged once when it starts and once when it ends.
func TestClockStepDropsOutOfOrderScrapes(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := outageConfig(t, prom.WriteURL(), r)
	clock := &steppedClock{}
	a := runAgent(t, cfg, func(o *Options) { o.Now = clock.now })
	ep := cfg.RemoteWrite[0].Label()
	selector := fmt.Sprintf(`redis_up{instance=%q}`, r.Addr())
	outOfOrder := map[string]string{"endpoint": ep, "reason": buffer.DropOutOfOrder}

	// refusedNothing fails at once when a sample went out of order: the
	// receiver refused it, or the agent counted a rejected batch.
	refusedNothing := func() {
		t.Helper()
		for _, m := range []string{"prometheus_tsdb_out_of_order_samples_total", "prometheus_tsdb_out_of_bound_samples_total"} {
			if v, err := prom.Metric(context.Background(), m); err != nil || v != 0 {
				t.Fatalf("receiver %s = %v (%v), want 0", m, v, err)
			}
		}
		if v := gathered(t, a.reg, "redwire_samples_dropped_total", map[string]string{"reason": "rejected"}); v != 0 {
			t.Fatalf("agent dropped %v samples as rejected, want 0", v)
		}
	}

	harness.WaitFor(t, time.Minute, "redis_up samples in the receiver", func() (bool, error) {
		n := samplesOf(t, prom, "redis_up", r.Addr())
		return n >= 2, fmt.Errorf("%d redis_up samples", n)
	})

	reads := clock.reads.Load()
	clock.set(-time.Minute)
	// Three reads after the step: at least two whole scrapes dropped, so
	// "one warning, not one per scrape" is tested.
	harness.WaitFor(t, time.Minute, "scrapes dropped as out of order", func() (bool, error) {
		refusedNothing()
		dropped, n := gathered(t, a.reg, "redwire_samples_dropped_total", outOfOrder), clock.reads.Load()-reads
		return dropped > 0 && n >= 3, fmt.Errorf("%v samples dropped as out of order over %d scrapes since the step", dropped, n)
	})
	if n := a.logs.Count("wall clock caught up"); n != 0 {
		t.Fatalf("%d recovery log lines while the clock is still behind", n)
	}

	caughtUp := time.Now()
	clock.set(0)
	harness.WaitFor(t, time.Minute, "samples stamped after the clock caught up", func() (bool, error) {
		refusedNothing()
		newest, err := newestSample(prom, selector)
		if err != nil {
			return false, err
		}
		return newest.After(caughtUp) && a.logs.Count("wall clock caught up") == 1,
			fmt.Errorf("newest redis_up sample at %v, clock caught up at %v; %d recovery log lines",
				newest, caughtUp, a.logs.Count("wall clock caught up"))
	})
	for _, line := range []string{"wall clock went back", "wall clock caught up"} {
		if n := a.logs.Count(line); n != 1 {
			t.Errorf("%d log lines %q, want 1", n, line)
		}
	}

	a.stop() // graceful: sends what is queued, so the counters are final
	refusedNothing()
	// Every scrape handed on arrived, and none of the dropped ones did.
	target := map[string]string{"target": r.Addr()}
	if got, taken := delivered(t, prom, r.Addr()), int(gathered(t, a.reg, "redwire_target_scrapes_total", target)); got != taken {
		t.Errorf("receiver has %d redis_up samples, agent handed on %d scrapes", got, taken)
	}
	// taken = sent + dropped + pending, with the dropped scrapes in both.
	assertAccounted(t, a.reg, ep, buffer.DropOutOfOrder)
}
