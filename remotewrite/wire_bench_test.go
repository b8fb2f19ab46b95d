package remotewrite

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

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

// BenchmarkWireBytesOrder measures whether another order of a request
// helps the compressor (issue 17 item 5): series in the order the scrape
// emits them, as the encoders write them (scrape), or sorted by their
// labels within the request (sorted: the batch's samples sorted stably by
// labels before encoding, which the encoders then write in that order);
// for 2.0 also the symbols table sorted, its refs remapped (symbols; its
// bytes only, written by prompb's code from the decoded request, beside
// prompb's writing of the scrape order: prompb-scrape). Requests of one
// scrape (a 5 s deadline) and of six (60 s), metadata with each.
//
//	go test -run '^$' -bench WireBytesOrder -count 6 -benchtime 20x ./remotewrite/
func BenchmarkWireBytesOrder(b *testing.B) {
	scrapes := redisScrapes(b, 6)
	for _, k := range []int{1, 6} {
		var batch sample.Batch
		for _, s := range scrapes[:k] {
			batch.Samples = append(batch.Samples, s.Samples...)
		}
		batch.Metadata = scrapes[0].Metadata
		sorted := sample.Batch{Samples: slices.Clone(batch.Samples), Metadata: batch.Metadata}
		slices.SortStableFunc(sorted.Samples, func(x, y sample.Sample) int { return labels.Compare(x.Labels, y.Labels) })
		for _, m := range []Message{MessageV1, MessageV2} {
			for _, order := range []struct {
				name  string
				batch *sample.Batch
			}{{"scrape", &batch}, {"sorted", &sorted}} {
				b.Run(fmt.Sprintf("scrapes=%d/%s/%s", k, m.version(), order.name), func(b *testing.B) {
					e := Encoder{msg: m}
					var wire int
					for b.Loop() {
						body, err := e.Encode(order.batch)
						if err != nil {
							b.Fatal(err)
						}
						wire = len(body)
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.Len()), "ns/sample")
					b.ReportMetric(float64(wire)/float64(batch.Len()), "wire-B/sample")
				})
			}
		}
		for _, sortSymbols := range []bool{false, true} {
			name := "prompb-scrape"
			if sortSymbols {
				name = "symbols"
			}
			b.Run(fmt.Sprintf("scrapes=%d/2.0.0/%s", k, name), func(b *testing.B) {
				e := Encoder{msg: MessageV2}
				body, err := e.Encode(&batch)
				if err != nil {
					b.Fatal(err)
				}
				raw, err := snappy.Decode(nil, body)
				if err != nil {
					b.Fatal(err)
				}
				var req writev2.Request
				if err := req.Unmarshal(raw); err != nil {
					b.Fatal(err)
				}
				if sortSymbols {
					sortSymbolTable(&req)
				}
				var wire int
				for b.Loop() {
					pb, err := req.Marshal()
					if err != nil {
						b.Fatal(err)
					}
					wire = len(snappy.Encode(nil, pb))
				}
				b.ReportMetric(float64(wire)/float64(batch.Len()), "wire-B/sample")
			})
		}
	}
}

// sortSymbolTable sorts req's symbols (after the "" the spec keeps
// first) and remaps every ref to them.
func sortSymbolTable(req *writev2.Request) {
	syms := slices.Clone(req.Symbols[1:])
	slices.Sort(syms)
	syms = append([]string{""}, syms...)
	ref := make(map[string]uint32, len(syms))
	for i, s := range syms {
		ref[s] = uint32(i)
	}
	old := req.Symbols
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		for j, r := range ts.LabelsRefs {
			ts.LabelsRefs[j] = ref[old[r]]
		}
		ts.Metadata.HelpRef = ref[old[ts.Metadata.HelpRef]]
		ts.Metadata.UnitRef = ref[old[ts.Metadata.UnitRef]]
	}
	req.Symbols = syms
}
