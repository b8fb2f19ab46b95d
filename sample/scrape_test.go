package sample

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

func TestScrapeLabelsAndMetadata(t *testing.T) {
	base := labels.FromStrings("instance", "a:1", "job", "redis", "role", "cache")
	now := time.UnixMilli(1_700_000_000_000)
	sc := NewScrape(now, base)
	sc.Gauge("redis_instance_info", "identity", 1, "role", "master", "redis_version", "7.0")
	sc.Counter("redis_commands_total", "calls", 5, "cmd", "get")
	sc.Counter("redis_commands_total", "other help is ignored", 7, "cmd", "set")

	if len(sc.Samples) != 3 {
		t.Fatalf("%d samples", len(sc.Samples))
	}
	// A metric label that collides with a target label is kept as
	// exported_<name>, as Prometheus does with honor_labels: false.
	got := sc.Samples[0].Labels
	want := labels.FromStrings("__name__", "redis_instance_info", "exported_role", "master", "instance", "a:1",
		"job", "redis", "redis_version", "7.0", "role", "cache")
	if !labels.Equal(got, want) {
		t.Errorf("labels = %s, want %s", got, want)
	}
	if sc.Samples[1].T != now.UnixMilli() {
		t.Errorf("timestamp = %d", sc.Samples[1].T)
	}
	if len(sc.Metadata) != 2 || sc.Metadata[1].Family != "redis_commands_total" || sc.Metadata[1].Type != Counter || sc.Metadata[1].Help != "calls" {
		t.Errorf("metadata = %+v", sc.Metadata)
	}
	if b := sc.Batch(); b.Len() != 3 || len(b.Metadata) != 2 {
		t.Errorf("batch: %d samples, %d metadata", b.Len(), len(b.Metadata))
	}
}

func TestScrapeOddLabelsPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for an odd number of label strings")
		}
	}()
	//lint:ignore SA5012 the odd label count is what this test checks panics
	NewScrape(time.Now(), labels.EmptyLabels()).Gauge("x", "h", 1, "lonely")
}
