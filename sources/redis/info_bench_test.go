package redis

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// The benchmarks run on the INFO ALL of a real Redis 7.0 master (241 lines,
// ~300 samples), the work of one scrape. Results go in BENCHMARKS.md.

func BenchmarkParseInfo(b *testing.B) {
	raw := readCapture(b, "redis-7.0-master.txt")
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ParseInfo(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEmitInfo includes sample.NewScrape, which every scrape pays
// once; its cost is small next to building ~300 label sets.
func BenchmarkEmitInfo(b *testing.B) {
	info, err := ParseInfo(readCapture(b, "redis-7.0-master.txt"))
	if err != nil {
		b.Fatal(err)
	}
	base := labels.FromStrings("instance", "redis-1:6379", "job", "redis")
	b.ReportAllocs()
	for b.Loop() {
		sc := sample.NewScrape(infoTestTime, base)
		EmitInfo(sc, info)
	}
}

// BenchmarkEmitInfoCached is BenchmarkEmitInfo as targets scrape: with
// the target's label cache, which holds the label sets of the last scrape.
func BenchmarkEmitInfoCached(b *testing.B) {
	info, err := ParseInfo(readCapture(b, "redis-7.0-master.txt"))
	if err != nil {
		b.Fatal(err)
	}
	base := labels.FromStrings("instance", "redis-1:6379", "job", "redis")
	var c sample.LabelCache
	b.ReportAllocs()
	for b.Loop() {
		sc := c.NewScrape(infoTestTime, base)
		EmitInfo(sc, info)
		sc.Batch()
	}
}
