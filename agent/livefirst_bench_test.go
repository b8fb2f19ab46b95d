package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
)

// freshBacklog is a 24-hour backlog of one Redis at the default 10 s
// interval: 8640 scrapes, about 2.6 million samples.
const (
	freshBacklogScrapes = 8640
	freshBacklogEvery   = 10 * time.Second
)

// BenchmarkLiveFirstFreshAfterBacklog measures what replay.order
// live_first is for: how long after the receiver's return the first
// fresh sample is visible in it, with a 24-hour backlog on disk, against
// fifo, where fresh samples wait for the whole drain. The receiver is a
// real Prometheus 3.x with a 25 h out-of-order window; fresh scrapes
// arrive every second. It reports, for the order in REDWIRE_REPLAY_ORDER
// (default live_first; run once with fifo to compare) and the replay
// rate in REDWIRE_REPLAY_RATE (samples/s; default none):
//
//	fresh-s  from the start of the send to the first fresh sample the
//	         receiver answers to a query
//	drain-s  until the backlog is empty
//
// Goal (issue 15): fresh-s ≤ batch_send_deadline + 3 s with live_first,
// whatever the backlog's size. Run with -benchtime=1x.
func BenchmarkLiveFirstFreshAfterBacklog(b *testing.B) {
	order := ReplayOrder(ReplayLiveFirst)
	if o := os.Getenv("REDWIRE_REPLAY_ORDER"); o != "" {
		order = ReplayOrder(o)
	}
	// REDWIRE_REPLAY_RATE is replay.max_samples_per_second (0: none): a
	// link or a receiver slower than this machine's loopback.
	rate, _ := strconv.ParseFloat(os.Getenv("REDWIRE_REPLAY_RATE"), 64)
	r := newReplayBenchFor(b, harness.StartPrometheusWith(b, harness.PrometheusOptions{Version3: true, OutOfOrderWindow: 25 * time.Hour}))
	var fresh, drain []float64
	iter := 0
	for b.Loop() {
		b.StopTimer()
		iter++
		instance := fmt.Sprintf("fresh-%s-%d", order, iter)
		f, d := runFreshAfterBacklog(b, r, order, rate, instance)
		fresh, drain = append(fresh, f.Seconds()), append(drain, d.Seconds())
		b.StartTimer()
	}
	slices.Sort(fresh)
	slices.Sort(drain)
	b.ReportMetric(fresh[len(fresh)/2], "fresh-s")
	b.ReportMetric(drain[len(drain)/2], "drain-s")
}

// runFreshAfterBacklog writes the backlog for instance, starts the
// endpoint's sender with a fresh scrape every second, and returns when
// the first fresh sample was visible and when the backlog was drained.
func runFreshAfterBacklog(b *testing.B, r *replayBench, order ReplayOrder, rate float64, instance string) (fresh, drained time.Duration) {
	b.Helper()
	base := labels.FromStrings("instance", instance, "job", "redis")
	store, _, err := buffer.OpenStore(filepath.Join(b.TempDir(), "b.bbolt"), buffer.StoreOptions{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-freshBacklogScrapes * freshBacklogEvery)
	for k := range freshBacklogScrapes {
		batch := r.scrape(start.Add(time.Duration(k)*freshBacklogEvery), 0, base)
		if _, err := store.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	q := r.ec.QueueConfig
	buf := buffer.New(store, buffer.Options{Capacity: q.Capacity, MaxBatch: q.MaxSamplesPerSend, StoreBatch: DefaultReplayMaxSamplesPerSend,
		Deadline: time.Duration(q.BatchSendDeadline)})
	defer buf.Close()
	live := order == ReplayLiveFirst
	buf.SetLiveFirst(live)
	reg := prometheus.NewRegistry()
	s := &sender{
		name: "bench", client: r.client, buf: buf, threshold: 3, liveFirst: live,
		identity:    labels.FromStrings("job", "redwire", "instance", instance),
		policy:      remotewrite.Policy{MinBackoff: time.Duration(q.MinBackoff), MaxBackoff: time.Duration(q.MaxBackoff)},
		replayBatch: DefaultReplayMaxSamplesPerSend, replayRate: rate,
		modes: newModes(), m: newMetrics(reg), log: slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	sending := make(chan struct{})
	go func() { defer close(sending); s.run(ctx) }()
	go func() { // a fresh scrape every second, as a live target gives
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if _, err := buf.Append(r.scrape(time.Now(), 0, base)); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	freshSel := fmt.Sprintf(`redis_uptime_in_seconds{instance=%q}`, instance)
	for fresh == 0 || drained == 0 {
		if fresh == 0 {
			v, err := r.prom.Query(ctx, fmt.Sprintf("timestamp(%s) > %d", freshSel, t0.Unix()-1))
			if err == nil && len(v) > 0 {
				fresh = time.Since(t0)
			}
		}
		if drained == 0 && buf.Stats().Store.Batches == 0 {
			drained = time.Since(t0)
		}
		if time.Since(t0) > 30*time.Minute {
			b.Fatalf("%s: after 30 minutes, fresh %v, drained %v", order, fresh, drained)
		}
		time.Sleep(50 * time.Millisecond) // a poll of the receiver, not a synchronisation
	}
	cancel()
	<-sending
	b.Logf("%s, replay rate %v/s, 24 h backlog of %d scrapes: first fresh sample visible after %v, backlog drained after %v", order, rate, freshBacklogScrapes, fresh, drained)
	return fresh, drained
}
