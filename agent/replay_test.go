package agent

import (
	"context"
	"fmt"
	"log/slog"
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
	prom := harness.StartPrometheus(t)
	store, _, err := buffer.OpenStore(filepath.Join(t.TempDir(), "b.bbolt"), buffer.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute)
	base := labels.FromStrings("instance", instanceID, "job", "redis")
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
	ec := remotewrite.NewEndpointConfig(u)
	client, err := remotewrite.NewClient(ec, "test")
	if err != nil {
		t.Fatal(err)
	}
	buf := buffer.New(store, buffer.Options{Capacity: 1000, MaxBatch: 250, Deadline: time.Second})
	defer buf.Close()
	e := &endpoint{name: "rl", client: client, buf: buf, threshold: 3, minWait: 50 * time.Millisecond,
		maxWait: 200 * time.Millisecond, replayRate: rate, modes: newModes(),
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
