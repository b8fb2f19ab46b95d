package remotewrite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"

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

// BenchmarkWireBytesPerDay is the metered-link curve: request bytes a day
// for one Redis scraped at the default 10 s interval, by
// batch_send_deadline (5 s, today's default: one scrape a request; 30 s:
// three; 60 s: six, with max_samples_per_send large enough to hold them)
// and by message, snappy as sent; zstd is the same protobuf compressed
// with zstd (klauspost/compress, default level), as VictoriaMetrics' own
// protocol would carry it. The family metadata goes once a minute, as the
// buffer sends it (buffer/memory.go, metadataResend): with the request
// holding a scrape at a whole minute (every 6th). MB/day is request bodies only (no HTTP
// headers, ~200 B a request); x-default is against rw1 at 5 s.
//
//	go test -run '^$' -bench WireBytesPerDay -count 6 ./remotewrite/
func BenchmarkWireBytesPerDay(b *testing.B) {
	const interval = 10 * time.Second
	scrapes := redisScrapes(b, 12)
	zenc, err := zstd.NewWriter(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer zenc.Close()
	var base float64 // bytes/day of rw1 at 5 s
	for _, deadline := range []time.Duration{5 * time.Second, 30 * time.Second, 60 * time.Second} {
		k := max(1, int(deadline/interval)) // scrapes a request
		var reqs []sample.Batch
		for i := 0; i+k <= len(scrapes); i += k {
			var batch sample.Batch
			for _, s := range scrapes[i : i+k] {
				batch.Samples = append(batch.Samples, s.Samples...)
			}
			for j := i; j < i+k; j++ {
				if j%6 == 0 { // a minute since the metadata last went
					batch.Metadata = scrapes[i].Metadata
				}
			}
			reqs = append(reqs, batch)
		}
		for _, enc := range []struct {
			name string
			m    Message
			zstd bool
		}{{"rw1", MessageV1, false}, {"rw2", MessageV2, false}, {"rw1-zstd", MessageV1, true}, {"rw2-zstd", MessageV2, true}} {
			b.Run(fmt.Sprintf("deadline=%v/%s", deadline, enc.name), func(b *testing.B) {
				e := Encoder{msg: enc.m}
				var wire, samples int
				var zbuf []byte
				b.ReportAllocs()
				for b.Loop() {
					wire, samples = 0, 0
					for i := range reqs {
						body, err := e.Encode(&reqs[i])
						if err != nil {
							b.Fatal(err)
						}
						if enc.zstd {
							pb, err := snappy.Decode(nil, body)
							if err != nil {
								b.Fatal(err)
							}
							zbuf = zenc.EncodeAll(pb, zbuf[:0])
							body = zbuf
						}
						wire += len(body)
						samples += reqs[i].Len()
					}
				}
				perRequest := float64(wire) / float64(len(reqs))
				perDay := perRequest * float64(Day/interval) / float64(k)
				if enc.name == "rw1" && k == 1 {
					base = perDay
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*samples), "ns/sample")
				b.ReportMetric(float64(wire)/float64(samples), "wire-B/sample")
				b.ReportMetric(perDay/1e6, "MB/day")
				if base > 0 {
					b.ReportMetric(perDay/base, "x-default")
				}
			})
		}
	}
}
