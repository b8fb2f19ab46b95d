package agent

import (
	"os"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/redis"
)

// BenchmarkScrapeEncode is the per-scrape CPU and allocation cost of the
// hot path, minus the network: parse a real INFO ALL reply (Redis 7.0),
// turn it into samples, and encode them as a remote-write request body.
func BenchmarkScrapeEncode(b *testing.B) {
	raw, err := os.ReadFile("../sources/redis/testdata/info/redis-7.0-master.txt")
	if err != nil {
		b.Fatal(err)
	}
	base := labels.FromStrings("instance", "127.0.0.1:6379", "job", "redis", "site", "edge-001")
	var enc remotewrite.Encoder
	var cache sample.LabelCache // as a target keeps it
	now := time.Now()
	var samples, bytes int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		info, err := redis.ParseInfo(string(raw))
		if err != nil {
			b.Fatal(err)
		}
		sc := cache.NewScrape(now, base)
		redis.EmitInfo(sc, info)
		batch := sc.Batch()
		body, err := enc.Encode(&batch)
		if err != nil {
			b.Fatal(err)
		}
		samples, bytes = batch.Len(), len(body)
	}
	b.ReportMetric(float64(samples), "samples/op")
	b.ReportMetric(float64(bytes), "wire-B/op")
}
