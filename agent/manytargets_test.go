package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/redis"
)

// Sizes of TestDeadTargetsDoNotDelayLiveOnes. Each dead target holds a
// slot for the whole scrape timeout (80 % of the interval), so 40 of them
// need 32 slots all the time, far more than manyMaxScrape: in one shared
// lane they would leave the live targets almost none. That they do not is
// TestDeadTargetsHoldOnlyTheFailingLane; this test shows the real agent
// keeps polling many live and dead targets and reports each right.
//
// The interval is 4 s, not 1 s: under the race detector a scrape costs
// the agent ~6 ms of CPU (BENCHMARKS.md: 1.3 ms without), so 200 scrapes a
// second would take most of a 2-vCPU machine, and `go test ./...` runs
// other packages' tests beside this one.
const (
	manyLive      = 200
	manyDead      = 40
	manyMaxScrape = 12
	manyInterval  = 4 * time.Second
	// steadyScrapes is how many more scrapes every live target must make
	// once all targets have been scraped once: several intervals.
	steadyScrapes = 3
)

// TestDeadTargetsDoNotDelayLiveOnes: many real Redis and many dead targets
// (they accept and never answer) polled by one agent with few slots. Once
// every target has been scraped once, every live target keeps being
// scraped and reported up, every dead one down, in the agent and in the
// receiver. How many live scrapes were skipped is logged, not asserted: on
// a loaded machine scrapes are skipped for want of CPU, lanes or not.
func TestDeadTargetsDoNotDelayLiveOnes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 200 redis-servers")
	}
	live := harness.StartRedisN(t, manyLive)
	var targets []redis.TargetConfig
	liveNames := make([]string, 0, manyLive)
	for _, r := range live {
		targets = append(targets, redis.TargetConfig{Addr: r.URL()})
		liveNames = append(liveNames, r.Addr())
	}
	deadNames := make([]string, 0, manyDead)
	for range manyDead {
		addr := harness.StartBlackhole(t)
		targets = append(targets, redis.TargetConfig{Addr: "redis://" + addr})
		deadNames = append(deadNames, addr)
	}
	prom := harness.StartPrometheus(t)
	reg := startManyAgent(t, manyConfig(t, prom.WriteURL(), manyInterval, manyMaxScrape, targets))

	// Until every target has failed or succeeded once there is nothing to
	// tell the dead from the live, and the dead take main-lane slots: the
	// start-up round may skip live scrapes, so it is not what is measured.
	harness.WaitFor(t, 90*time.Second, "every target scraped once: live up, dead down", func() (bool, error) {
		up := byTarget(t, reg, "redwire_target_up")
		failures := byTarget(t, reg, "redwire_target_consecutive_failures")
		if n := countWhere(liveNames, up, func(v float64, ok bool) bool { return !ok || v != 1 }); n > 0 {
			return false, fmt.Errorf("%d live targets not up yet", n)
		}
		if n := countWhere(liveNames, failures, func(v float64, ok bool) bool { return !ok || v != 0 }); n > 0 {
			return false, fmt.Errorf("%d live targets whose last scrape failed", n)
		}
		if n := countWhere(deadNames, up, func(v float64, ok bool) bool { return !ok || v != 0 }); n > 0 {
			return false, fmt.Errorf("%d dead targets not down yet", n)
		}
		return true, nil
	})
	skipped0 := byTarget(t, reg, "redwire_target_scrapes_skipped_total")
	scrapes0 := byTarget(t, reg, "redwire_target_scrapes_total")
	t.Logf("start-up round: %v live scrapes skipped", sumOf(liveNames, skipped0))

	harness.WaitFor(t, 90*time.Second, fmt.Sprintf("%d more scrapes of every live target", steadyScrapes), func() (bool, error) {
		scrapes := byTarget(t, reg, "redwire_target_scrapes_total")
		skipped := byTarget(t, reg, "redwire_target_scrapes_skipped_total")
		behind := 0
		for _, n := range liveNames {
			if scrapes[n] < scrapes0[n]+steadyScrapes {
				behind++
			}
		}
		if behind > 0 {
			return false, fmt.Errorf("%d live targets behind; %v live scrapes skipped since start-up", behind, sumOf(liveNames, skipped)-sumOf(liveNames, skipped0))
		}
		return true, nil
	})

	skipped := byTarget(t, reg, "redwire_target_scrapes_skipped_total")
	t.Logf("after start-up: %v live scrapes skipped", sumOf(liveNames, skipped)-sumOf(liveNames, skipped0))
	up := byTarget(t, reg, "redwire_target_up")
	failures := byTarget(t, reg, "redwire_target_consecutive_failures")
	for _, n := range liveNames {
		if up[n] != 1 {
			t.Errorf("live target %s: redwire_target_up %v, want 1", n, up[n])
		}
	}
	for _, n := range deadNames {
		if v, ok := up[n]; !ok || v != 0 {
			t.Errorf("dead target %s: redwire_target_up %v (present %v), want 0", n, v, ok)
		}
		// Failures are what send a target to the failing lane.
		if failures[n] == 0 {
			t.Errorf("dead target %s: no consecutive failures, so it would take main-lane slots", n)
		}
	}
	// What the receiver sees agrees: every live target up, every dead one
	// down, in redis_up as dashboards read it.
	queryOne(t, prom, `count(redis_up == 1)`, func(s harness.Series) bool { return s.Value == manyLive })
	queryOne(t, prom, `count(redis_up == 0)`, func(s harness.Series) bool { return s.Value == manyDead })
}

// deadScraper is a dead target: each scrape waits for its deadline. It
// counts scrapes and, across all dead targets, the most that ran at once
// after their first, which is in the main lane by design.
type deadScraper struct {
	name    string
	scrapes atomic.Int32
	again   *atomic.Int32 // scrapes after a first one, running now
	most    *atomic.Int32 // the most again ever was
}

func (d *deadScraper) Name() string { return d.name }

func (d *deadScraper) Scrape(ctx context.Context, now time.Time) (*sample.Scrape, error) {
	if d.scrapes.Load() > 0 {
		n := d.again.Add(1)
		for {
			m := d.most.Load()
			if n <= m || d.most.CompareAndSwap(m, n) {
				break
			}
		}
		defer d.again.Add(-1)
	}
	defer d.scrapes.Add(1)
	<-ctx.Done()
	return sample.NewScrape(now, labels.EmptyLabels()), ctx.Err()
}

// liveScraper answers at once and counts its scrapes.
type liveScraper struct {
	name    string
	scrapes atomic.Int32
}

func (l *liveScraper) Name() string { return l.name }

func (l *liveScraper) Scrape(_ context.Context, now time.Time) (*sample.Scrape, error) {
	l.scrapes.Add(1)
	return sample.NewScrape(now, labels.EmptyLabels()), nil
}

// TestDeadTargetsHoldOnlyTheFailingLane: the lanes of the scrape pool,
// counted rather than timed. Dead targets, once failed, together hold at
// most the failing lane's max(1, n/4) slots, whatever the machine's speed
// (a semaphore bound), though they want far more; the main lane is left
// to the live targets, which all keep being scraped, as do the dead.
func TestDeadTargetsHoldOnlyTheFailingLane(t *testing.T) {
	const (
		interval = 40 * time.Millisecond
		timeout  = interval * 8 / 10 // as the default: 80 %
		rounds   = 5
	)
	failingSlots := int32(max(1, manyMaxScrape/4))
	slots := newScrapePool(manyMaxScrape)
	m := newMetrics(prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	run := func(s scraper) {
		l := &scrapeLoop{
			target: s, interval: interval, degradedInterval: interval, timeout: timeout,
			modes: newModes(), slots: slots, m: m, sink: func(sample.Batch) {},
			log: slog.New(slog.DiscardHandler),
		}
		wg.Go(func() { l.run(ctx) })
	}
	var again, most atomic.Int32
	dead := make([]*deadScraper, manyDead)
	for i := range dead {
		dead[i] = &deadScraper{name: fmt.Sprint("dead", i), again: &again, most: &most}
		run(dead[i])
	}
	live := make([]*liveScraper, manyDead/2)
	for i := range live {
		live[i] = &liveScraper{name: fmt.Sprint("live", i)}
		run(live[i])
	}
	harness.WaitFor(t, time.Minute, fmt.Sprintf("%d scrapes of every target", rounds), func() (bool, error) {
		if n := most.Load(); n > failingSlots {
			t.Fatalf("%d dead targets were scraped at once after their first scrape; the failing lane has %d slots", n, failingSlots)
		}
		for _, d := range dead {
			if n := d.scrapes.Load(); n < rounds {
				return false, fmt.Errorf("dead %s: %d scrapes", d.name, n)
			}
		}
		for _, l := range live {
			if n := l.scrapes.Load(); n < rounds {
				return false, fmt.Errorf("live %s: %d scrapes", l.name, n)
			}
		}
		return true, nil
	})
	cancel()
	wg.Wait()
	if n := most.Load(); n > failingSlots {
		t.Fatalf("%d dead targets were scraped at once after their first scrape; the failing lane has %d slots", n, failingSlots)
	}
	t.Logf("at most %d dead targets scraped at once after their first (failing lane: %d slots)", most.Load(), failingSlots)
}

// TestLaneOrder: a busy lane serves fewest failures first, then the
// target waiting longest since its last scrape, then first come; a waiter
// that gives up takes nothing with it.
func TestLaneOrder(t *testing.T) {
	l := newLane(1)
	if !l.acquire(t.Context(), 0, time.Time{}) {
		t.Fatal("a free slot was not taken")
	}
	t0 := time.Now()
	waiters := []struct {
		name     string
		failures int
		since    time.Time
	}{
		{"long dead", 9, t0.Add(-time.Hour)},
		{"blip, scraped recently", 1, t0},
		{"blip, waiting longer", 1, t0.Add(-time.Minute)},
		{"long dead, arrived later", 9, t0.Add(-time.Hour)},
	}
	gaveUp, cancel := context.WithCancel(t.Context())
	quitter := make(chan bool, 1)
	go func() { quitter <- l.acquire(gaveUp, 0, time.Time{}) }() // would be first
	waitQueued(t, l, 1)
	served := make(chan string, len(waiters))
	for i, w := range waiters {
		go func() {
			if l.acquire(t.Context(), w.failures, w.since) {
				served <- w.name
				l.release()
			}
		}()
		waitQueued(t, l, i+2) // one at a time: arrival order is known
	}
	cancel()
	if <-quitter {
		t.Fatal("a waiter whose context ended got a slot")
	}
	l.release()
	want := []string{"blip, waiting longer", "blip, scraped recently", "long dead", "long dead, arrived later"}
	for i, name := range want {
		if got := <-served; got != name {
			t.Fatalf("slot %d went to %q, want %q", i+1, got, name)
		}
	}
	if !l.acquire(t.Context(), 0, time.Time{}) {
		t.Fatal("the slot was not free again after every waiter released it")
	}
}

// waitQueued waits until n acquires wait on l.
func waitQueued(t *testing.T, l *lane, n int) {
	t.Helper()
	harness.WaitFor(t, 10*time.Second, fmt.Sprintf("%d waiters", n), func() (bool, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.wait.Len() == n, nil
	})
}

// manyConfig is a finalized config polling targets every interval with at
// most maxScrapes at once, writing to writeURL.
func manyConfig(tb testing.TB, writeURL string, interval time.Duration, maxScrapes int, targets []redis.TargetConfig) *Config {
	tb.Helper()
	u, err := url.Parse(writeURL)
	if err != nil {
		tb.Fatal(err)
	}
	ep := remotewrite.NewEndpointConfig(u)
	// 200 targets of ~300 samples a second are 60,000 samples a second;
	// the default queue (10,000 samples, 2,000 a request, one request at
	// a time) falls behind and spills to disk, and every scrape then waits
	// for a disk write while holding its slot. Neither the lanes nor the
	// CPU cost of a scrape is about that, so the queue is sized to keep up.
	ep.QueueConfig.Capacity = 200_000
	ep.QueueConfig.MaxSamplesPerSend = 10_000
	ep.QueueConfig.BatchSendDeadline = model.Duration(100 * time.Millisecond)
	cfg := &Config{
		Global: GlobalConfig{
			ScrapeInterval:       model.Duration(interval),
			MaxConcurrentScrapes: maxScrapes,
		},
		Targets:     targets,
		RemoteWrite: []remotewrite.EndpointConfig{ep},
		Web:         WebConfig{ListenAddress: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(tb))},
	}
	cfg.Buffer.Path = tb.TempDir()
	if err := cfg.Finalize(); err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// startManyAgent runs the agent until the test or benchmark ends and
// returns its registry once the agent is ready: only then may the registry
// be gathered (the buffer collector is filled during start-up).
func startManyAgent(tb testing.TB, cfg *Config) *prometheus.Registry {
	tb.Helper()
	return runAgent(tb, cfg).reg
}

// byTarget reads one per-target counter or gauge of the agent's registry
// as target -> value, in one Gather.
func byTarget(tb testing.TB, reg prometheus.Gatherer, name string) map[string]float64 {
	tb.Helper()
	return byLabel(tb, reg, name, "target")
}

// byLabel reads the counter or gauge name as value of label -> value.
func byLabel(tb testing.TB, reg prometheus.Gatherer, name, label string) map[string]float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					out[lp.GetValue()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// countWhere counts the names whose value (ok: present) satisfies bad.
func countWhere(names []string, vals map[string]float64, bad func(v float64, ok bool) bool) int {
	return len(slices.DeleteFunc(slices.Clone(names), func(n string) bool {
		v, ok := vals[n]
		return !bad(v, ok)
	}))
}

// sumOf adds the values of names.
func sumOf(names []string, vals map[string]float64) float64 {
	s := 0.0
	for _, n := range names {
		s += vals[n]
	}
	return s
}
