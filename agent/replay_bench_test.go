package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/redis"
)

// backlogScrapes is a 1-hour backlog of one target scraped every second.
const backlogScrapes = 3600

// BenchmarkReplayDrain measures how fast a backlog on disk drains into a
// real Prometheus receiver: a 1-hour backlog of one Redis (≈300 series at
// 1 s, from a real INFO capture), no replay rate limit, default queue
// settings (2000 samples per request, one request at a time). Run with
// -benchtime=1x: one iteration is a whole drain.
func BenchmarkReplayDrain(b *testing.B) {
	raw, err := os.ReadFile("../sources/redis/testdata/info/redis-7.0-master.txt")
	if err != nil {
		b.Fatal(err)
	}
	info, err := redis.ParseInfo(string(raw))
	if err != nil {
		b.Fatal(err)
	}
	prom := harness.StartPrometheus(b)
	u, _ := url.Parse(prom.WriteURL())
	ec := remotewrite.NewEndpointConfig(u)
	client, err := remotewrite.NewClient(ec, "bench")
	if err != nil {
		b.Fatal(err)
	}
	var drained, diskBytes, seconds float64
	iter := 0
	for b.Loop() {
		b.StopTimer()
		iter++
		// A fresh instance label per iteration: each drain writes new
		// series, so the receiver never sees out-of-order data.
		base := labels.FromStrings("instance", fmt.Sprintf("bench-%d", iter), "job", "redis")
		store, _, err := buffer.OpenStore(filepath.Join(b.TempDir(), "b.bbolt"), buffer.StoreOptions{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now().Add(-backlogScrapes * time.Second)
		n := 0
		for k := range backlogScrapes {
			sc := sample.NewScrape(start.Add(time.Duration(k)*time.Second), base)
			redis.EmitInfo(sc, info)
			if _, err := store.Append(sc.Batch()); err != nil {
				b.Fatal(err)
			}
			n += len(sc.Samples)
		}
		diskBytes = float64(store.Stats().FileBytes) / float64(n)
		q := ec.QueueConfig
		buf := buffer.New(store, buffer.Options{Capacity: q.Capacity, MaxBatch: q.MaxSamplesPerSend, Deadline: time.Duration(q.BatchSendDeadline)})
		e := &endpoint{
			name: "bench", client: client, buf: buf, threshold: 3,
			minWait: time.Duration(q.MinBackoff), maxWait: time.Duration(q.MaxBackoff),
			modes: newModes(), m: newMetrics(prometheus.NewRegistry()), log: slog.New(slog.DiscardHandler),
		}
		b.StartTimer()
		t0 := time.Now()
		ctx := context.Background()
		for buf.Stats().Store.Batches > 0 {
			l, err := buf.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			e.deliver(ctx, l)
		}
		seconds = time.Since(t0).Seconds()
		b.StopTimer()
		drained = float64(n)
		if _, err := buf.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(drained/seconds, "samples/s")
	b.ReportMetric(diskBytes, "disk-B/sample")
	b.ReportMetric(drained, "samples")
}
