package codec

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// compactBenchCases are 1-hour backlogs of one ~300-series Redis target,
// scrape timestamps jittered by up to ±5 ms as real tickers are (jitter=0
// shows what aligned timestamps would save: nothing), and the real
// backlog of testdata/real-outage-v1.seg: 3 minutes of three redis-servers
// under a light write load, scraped every second by the agent.
var compactBenchCases = []struct {
	name             string
	interval, jitter int64 // ms
	backlog          func() []sample.Batch
}{
	{name: "interval=1s", interval: 1000, jitter: 5},
	{name: "interval=1s/jitter=0", interval: 1000, jitter: 0},
	{name: "interval=10s", interval: 10000, jitter: 5},
	{name: "real-outage", backlog: sync.OnceValue(realOutage)},
}

func init() {
	for i := range compactBenchCases {
		c := &compactBenchCases[i]
		if c.backlog != nil {
			continue
		}
		c.backlog = sync.OnceValue(func() []sample.Batch {
			return batchtest.Backlog(int(time.Hour.Milliseconds()/c.interval), 1, c.interval, c.jitter)
		})
	}
}

// realOutageFile is a real backlog, saved by BenchmarkOutageDisk (agent
// package) with REDWIRE_OUTAGE=3m REDWIRE_OUTAGE_SAVE, as a version 1
// segment: XOR chunks only.
const realOutageFile = "testdata/real-outage-v1.seg"

func realOutage() []sample.Batch {
	data, err := os.ReadFile(realOutageFile)
	if err != nil {
		panic(err)
	}
	batches, err := DecodeSegment(data)
	if err != nil {
		panic(fmt.Sprintf("%s: %v", realOutageFile, err))
	}
	return batches
}

// BenchmarkCompactSegment encodes a 1-hour backlog as one segment and
// decodes it again. It reports B/sample (the segment's size per sample),
// batch-B/sample (the same batches as today's store records, header
// included, for comparison) and the encode and decode time per sample.
//
// The synthetic values are batchtest.Redis's: every series but one family in
// four changes every scrape by amounts that share few bits, close to the
// worst case for XOR encoding, though linear in the scrape. Real Redis
// INFO repeats far more values from one scrape to the next.
func BenchmarkCompactSegment(b *testing.B) {
	for _, c := range compactBenchCases {
		b.Run(c.name, func(b *testing.B) {
			batches := c.backlog()
			n, recBytes := 0, 0
			var enc BatchEncoder
			var rec []byte
			for i := range batches {
				n += len(batches[i].Samples)
				rec = AppendRecord(rec[:0], &enc, &batches[i], HeaderOf(&batches[i]))
				recBytes += len(rec)
			}
			b.ReportAllocs()
			var encT, decT time.Duration
			var size int
			for b.Loop() {
				start := time.Now()
				seg, err := EncodeSegment(batches)
				if err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if _, err := DecodeSegment(seg); err != nil {
					b.Fatal(err)
				}
				encT, decT, size = encT+mid.Sub(start), decT+time.Since(mid), len(seg)
			}
			samples := float64(b.N) * float64(n)
			b.ReportMetric(float64(size)/float64(n), "B/sample")
			b.ReportMetric(float64(recBytes)/float64(n), "batch-B/sample")
			b.ReportMetric(float64(encT.Nanoseconds())/samples, "encode-ns/sample")
			b.ReportMetric(float64(decT.Nanoseconds())/samples, "decode-ns/sample")
		})
	}
}

// BenchmarkSegmentAppend is the cost of adding one ~300-sample scrape to
// an open segment, the per-commit work of a store that keeps one.
func BenchmarkSegmentAppend(b *testing.B) {
	batches := compactBenchCases[0].backlog()
	b.ReportAllocs()
	var s Segment
	i := 0
	for b.Loop() {
		if i == len(batches) {
			s.Reset()
			i = 0
		}
		if err := s.Append(&batches[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batches[0].Samples)), "ns/sample")
}

// BenchmarkCompactSpan shows what sealing segments more often costs: the
// same 1 s backlog cut into segments of a minute, ten minutes and an hour.
func BenchmarkCompactSpan(b *testing.B) {
	batches := compactBenchCases[0].backlog()
	for _, span := range []int{60, 600, 3600} {
		b.Run(fmt.Sprintf("span=%ds", span), func(b *testing.B) {
			var size, n int
			for b.Loop() {
				size, n = 0, 0
				for from := 0; from < len(batches); from += span {
					seg, err := EncodeSegment(batches[from:min(from+span, len(batches))])
					if err != nil {
						b.Fatal(err)
					}
					size += len(seg)
				}
			}
			for i := range batches {
				n += len(batches[i].Samples)
			}
			b.ReportMetric(float64(size)/float64(n), "B/sample")
		})
	}
}
