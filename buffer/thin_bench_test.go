package buffer

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/redis"
)

// coverageScrapes makes scrape k of one Redis, every interval, from the
// INFO capture the replay benchmarks use (about 300 series), with
// counters growing and gauges moving a little, as a live Redis's do.
func coverageScrapes(b *testing.B) func(k int, interval time.Duration) sample.Batch {
	raw, err := os.ReadFile("../sources/redis/testdata/info/redis-7.0-master.txt")
	if err != nil {
		b.Fatal(err)
	}
	info, err := redis.ParseInfo(string(raw))
	if err != nil {
		b.Fatal(err)
	}
	base := labels.FromStrings("instance", "redis-07.edge.example:6379", "job", "redis")
	t0 := time.UnixMilli(1_700_000_000_000)
	return func(k int, interval time.Duration) sample.Batch {
		sc := sample.NewScrape(t0.Add(time.Duration(k)*interval), base)
		redis.EmitInfo(sc, info)
		bt := sc.Batch()
		bt.Metadata = nil
		for i := range bt.Samples {
			s := &bt.Samples[i]
			if strings.HasSuffix(s.Labels.Get(model.MetricNameLabel), "_total") {
				s.V += float64(k * (i%7 + 1))
			} else if s.V > 100 {
				s.V = math.Round(s.V * (1 + 0.01*math.Sin(float64(k+i))))
			}
		}
		return bt
	}
}

// segmentBytesPerScrape is what one scrape costs in a segment of n
// scrapes spaced every apart, the way the store keeps a backlog sealed
// and merged (at full resolution) or thinned and coalesced (at the
// floor).
func segmentBytesPerScrape(b *testing.B, scrape func(int, time.Duration) sample.Batch, n int, every time.Duration) float64 {
	var bld segmentBuilder
	for k := range n {
		if err := bld.add(Record{Seq: uint64(k + 1), Batch: scrape(k, every)}); err != nil {
			b.Fatal(err)
		}
	}
	rec := codec.AppendSegmentRecord(nil, &bld.seg, bld.seqs, bld.samples, bld.minT, bld.maxT)
	return float64(len(rec)) / float64(n)
}

// BenchmarkOutageCoverage: how long an outage of one Redis (about 300
// series) max_bytes of 1 MiB and 16 MiB covers, scraped every 1 s and
// every 10 s, at full resolution (today: the oldest dropped past it) and
// thinned to the 5-minute floor. Full resolution is the budget over the
// bytes of a scrape in merged segments; the floor the budget over those
// of a scrape in a day's segment at the floor, times 5 minutes (a long
// outage's backlog is nearly all at the floor). The simulated rows
// append an outage scrape by scrape to a real Store of 256 KiB (1 MiB
// at the floor takes an hour to simulate) until the first buffer_full
// drop, in transactions of a minute of scrapes.
//
//	go test -run '^$' -bench OutageCoverage -benchtime 1x -timeout 30m ./buffer/
func BenchmarkOutageCoverage(b *testing.B) {
	scrape := coverageScrapes(b)
	floor := defaultThinFloor
	for range b.N {
		for _, iv := range []time.Duration{time.Second, 10 * time.Second} {
			full := segmentBytesPerScrape(b, scrape, 500, iv)
			atFloor := segmentBytesPerScrape(b, scrape, 288, floor)
			for _, mib := range []int64{1, 16} {
				budget := float64(mib << 20)
				b.Logf("model: %2d MiB at %4v: full resolution %-10v (%.0f B/scrape), at the %v floor %-12v (%.0f B/scrape)",
					mib, iv, (time.Duration(budget/full) * iv).Round(time.Minute), full,
					floor, (time.Duration(budget/atFloor) * floor).Round(time.Hour), atFloor)
			}
		}
		for _, thin := range []bool{false, true} {
			covered, kept := simulateOutage(b, scrape, 256<<10, 10*time.Second, thin)
			b.Logf("simulated: 256 KiB at 10s, thinning %-5v: first drop after %v of outage (%d samples held)", thin, covered.Round(time.Minute), kept)
		}
	}
}

// simulateOutage appends scrapes every interval to a store capped at
// maxBytes until it drops one (or a 30-day cap), and returns how long an
// outage it held whole.
func simulateOutage(b *testing.B, scrape func(int, time.Duration) sample.Batch, maxBytes int64, interval time.Duration, thin bool) (time.Duration, int64) {
	opts := StoreOptions{NoSync: true, MinFreeBytes: -1, MaxBytes: maxBytes}
	if !thin {
		opts.ThinFloor = -1
	}
	s, _, err := OpenStore(filepath.Join(b.TempDir(), "ep.bbolt"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	group := max(int(time.Minute/interval), 1)
	limit := int(30 * 24 * time.Hour / interval)
	for k := 0; k < limit; k += group {
		bs := make([]sample.Batch, group)
		for i := range bs {
			bs[i] = scrape(k+i, interval)
		}
		ds, err := s.appendAll(bs)
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range ds {
			if d.Reason == DropBufferFull {
				return time.Duration(k) * interval, s.Stats().Samples
			}
		}
	}
	b.Logf("no drop within %v", time.Duration(limit)*interval)
	return time.Duration(limit) * interval, s.Stats().Samples
}
