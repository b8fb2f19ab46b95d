package agent

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// replayBacklog starts a receiver and stores a backlog of scrapes (a
// minute old, one a second) of perScrape series redis_test_series, labelled
// instance; it returns the receiver, the store and a client for it.
func replayBacklog(t *testing.T, instance string, scrapes, perScrape int) (*harness.Prometheus, *buffer.Store, *remotewrite.Client) {
	t.Helper()
	prom := harness.StartPrometheus(t)
	store, _, err := buffer.OpenStore(filepath.Join(t.TempDir(), "b.bbolt"), buffer.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute)
	base := labels.FromStrings("instance", instance, "job", "redis")
	for k := range scrapes {
		sc := sample.NewScrape(start.Add(time.Duration(k)*time.Second), base)
		for i := range perScrape {
			sc.Gauge("redis_test_series", "test", float64(k), "i", fmt.Sprint(i))
		}
		if _, err := store.Append(sc.Batch()); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := url.Parse(prom.WriteURL())
	client, err := remotewrite.NewClient(remotewrite.NewEndpointConfig(u), "test")
	if err != nil {
		t.Fatal(err)
	}
	return prom, store, client
}

// TestReplayRateLimit: with replay.max_samples_per_second set, a backlog
// drains no faster than the limit (a receiver's ingestion limit would
// otherwise reject the excess), in order, and completely.
func TestReplayRateLimit(t *testing.T) {
	const (
		scrapes    = 10
		perScrape  = 100
		rate       = 500.0 // samples/s: the backlog needs ≥ 2 s
		instanceID = "rate-limited"
	)
	prom, store, client := replayBacklog(t, instanceID, scrapes, perScrape)
	buf := buffer.New(store, buffer.Options{Capacity: 1000, MaxBatch: 250, Deadline: time.Second})
	defer buf.Close()
	e := &sender{name: "rl", client: client, buf: buf, threshold: 3,
		policy: remotewrite.Policy{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, replayRate: rate, modes: newModes(),
		m: newMetrics(prometheus.NewRegistry()), log: slog.New(slog.DiscardHandler)}

	t0 := time.Now()
	ctx := context.Background()
	buf.Drain()
	e.run(ctx)
	total := float64(scrapes * perScrape)
	if min := time.Duration(total / rate * float64(time.Second)); time.Since(t0) < min {
		t.Errorf("drained %v samples in %s; the %v/s limit allows no less than %s", total, time.Since(t0), rate, min)
	}
	vec, err := prom.Query(ctx, fmt.Sprintf(`count(count_over_time(redis_test_series{instance=%q}[5m]) == %d)`, instanceID, scrapes))
	if err != nil || len(vec) != 1 || vec[0].Value != perScrape {
		t.Errorf("receiver: %v %v; want %d series with %d samples each", vec, err, perScrape, scrapes)
	}
}

// TestReplaySendsEveryBatchOnce drains a backlog of many requests, each
// prepared while the one before is in flight and acked in the background
// while the next is sent: every sample must reach the receiver, and
// none twice (a read of the store before an ack landed would resend).
// Acks are slowed down, as on a busy disk, so that they are still
// pending when the sender looks at the store.
func TestReplaySendsEveryBatchOnce(t *testing.T) {
	const (
		scrapes    = 40
		perScrape  = 100
		instanceID = "acked-behind"
	)
	prom, store, client := replayBacklog(t, instanceID, scrapes, perScrape)
	// 250 samples a request: 16 requests, each but the first prepared ahead.
	buf := buffer.New(store, buffer.Options{Capacity: 1000, MaxBatch: 250, StoreBatch: 250, Deadline: time.Second})
	defer buf.Close()
	reg := prometheus.NewRegistry()
	e := &sender{name: "once", client: client, buf: buf, threshold: 3,
		policy: remotewrite.Policy{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, modes: newModes(), m: newMetrics(reg), log: slog.New(slog.DiscardHandler),
		slowAcks: func() { time.Sleep(20 * time.Millisecond) }}
	buf.Drain()
	e.run(context.Background())

	if e.state.mode == modeReplay {
		t.Error("the backlog was sent but the replay never ended (its end was judged before the acks were in)")
	}
	// A batch sent twice is refused by Prometheus as out of order, so it
	// shows as rejected, not as success.
	results := byLabel(t, reg, "redwire_remote_write_samples_total", "result")
	if want := map[string]float64{"success": scrapes * perScrape}; !maps.Equal(results, want) {
		t.Errorf("samples sent by result: %v, want %v: each sample once", results, want)
	}
	if st := buf.Stats().Store; st.Batches != 0 {
		t.Errorf("store still holds %d batches", st.Batches)
	}
	vec, err := prom.Query(context.Background(), fmt.Sprintf(`count(count_over_time(redis_test_series{instance=%q}[5m]) == %d)`, instanceID, scrapes))
	if err != nil || len(vec) != 1 || vec[0].Value != perScrape {
		t.Errorf("receiver: %v %v; want %d series with %d samples each", vec, err, perScrape, scrapes)
	}
}
