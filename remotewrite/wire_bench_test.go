package remotewrite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/redis"
)

// redisScrapes scrapes a real Redis n times, as a target does at the
// default 10 s interval (the timestamps step by 10 s; the values are the
// server's, changing between scrapes as it serves commands), and returns
// each scrape's batch.
func redisScrapes(b *testing.B, n int) []sample.Batch {
	b.Helper()
	r := harness.StartRedis(b)
	ctx := context.Background()
	c := r.Client()
	tg, err := redis.NewTarget(redis.TargetConfig{Addr: r.URL()}, map[string]string{"site": "edge-001"})
	if err != nil {
		b.Fatal(err)
	}
	defer tg.Close()
	t0 := time.Now().Truncate(time.Second)
	var out []sample.Batch
	for i := range n {
		// Some traffic, so that commands, keyspace and memory move.
		pipe := c.Pipeline()
		for k := range 200 {
			key := fmt.Sprintf("key:%d", k)
			pipe.Set(ctx, key, i*k, 0)
			pipe.Get(ctx, key)
			pipe.Incr(ctx, "counter")
			pipe.HSet(ctx, "h", key, i)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		sc, err := tg.Scrape(ctx, t0.Add(time.Duration(i)*10*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, sc.Batch())
	}
	return out
}

// BenchmarkWireBytesRW1VsRW2 is what one request costs on the wire, per
// sample, as remote write 1.0 and 2.0, for the same batches of real Redis
// scrapes: one scrape per request (1 sample per series, the default 10 s
// interval with a 5 s deadline) and five (5 samples per series, 1 s
// interval). Metadata goes with every request, as with a batch fresh from
// the scrape loop. ns/sample is the encode's CPU. rw2-native-histograms
// is 2.0 with native_histograms: the latency histograms as native ones
// (per sample of the classic batch, as the buffer holds it).
//
//	go test -run '^$' -bench WireBytes -count 6 ./remotewrite/
func BenchmarkWireBytesRW1VsRW2(b *testing.B) {
	scrapes := redisScrapes(b, 5)
	for _, perSeries := range []int{1, 5} {
		var batch sample.Batch
		for _, s := range scrapes[:perSeries] {
			batch.Samples = append(batch.Samples, s.Samples...)
		}
		batch.Metadata = scrapes[0].Metadata
		series := map[string]bool{}
		for _, s := range batch.Samples {
			series[s.Labels.String()] = true
		}
		for _, enc := range []struct {
			name   string
			m      Message
			native bool
		}{{"rw1", MessageV1, false}, {"rw2", MessageV2, false}, {"rw2-native-histograms", MessageV2, true}} {
			b.Run(fmt.Sprintf("%s/samples_per_series=%d", enc.name, perSeries), func(b *testing.B) {
				e := Encoder{msg: enc.m, native: enc.native}
				var wire int
				b.ReportAllocs()
				for b.Loop() {
					body, err := e.Encode(&batch)
					if err != nil {
						b.Fatal(err)
					}
					wire = len(body)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.Len()), "ns/sample")
				b.ReportMetric(float64(wire)/float64(batch.Len()), "wire-B/sample")
				b.ReportMetric(float64(len(series)), "series")
			})
		}
	}
}
