package remotewrite

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// replayBatch is what a replay lease holds: scrapes of one ~300-series
// target, in scrape order, every scrape sharing the target's label sets
// (as batches decoded from the buffer and taken by the scrape loop do).
func replayBatch(samples int) sample.Batch {
	const series = 300
	ls := make([]labels.Labels, series)
	for i := range ls {
		ls[i] = labels.FromStrings("__name__", fmt.Sprintf("redis_field_%03d", i%100), "cmd", fmt.Sprintf("cmd%d", i/100),
			"instance", "redis-07.edge.example:6379", "job", "redis")
	}
	var b sample.Batch
	for k := 0; len(b.Samples) < samples; k++ {
		for i := 0; i < series && len(b.Samples) < samples; i++ {
			b.Samples = append(b.Samples, sample.Sample{Labels: ls[i], T: 1_700_000_000_000 + int64(k)*1000, V: float64(k*i) + 0.5})
		}
	}
	return b
}

// BenchmarkEncode is the cost of one replay request body (10,000 samples,
// the default replay.max_samples_per_send) per sample: grouping into
// series, protobuf, snappy.
func BenchmarkEncode(b *testing.B) {
	batch := replayBatch(10000)
	var e Encoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Encode(&batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch.Samples)), "ns/sample")
}
