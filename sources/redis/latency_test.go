package redis

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// TestLatencyMonitor: a DEBUG SLEEP above latency-monitor-threshold shows
// as a spike of the "command" event, and LATENCY HISTOGRAM gives each
// command that ran a cumulative histogram whose +Inf bucket and _count are
// its calls and whose _sum is its commandstats usec.
func TestLatencyMonitor(t *testing.T) {
	r := harness.StartRedis(t, harness.WithArgs("--latency-monitor-threshold", "1", "--enable-debug-command", "yes"))
	ctx := t.Context()
	c := r.Client()
	for i := range 5 {
		if err := c.Set(ctx, "k"+strconv.Itoa(i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now()
	if err := c.Do(ctx, "DEBUG", "SLEEP", "0.1").Err(); err != nil {
		t.Fatal(err)
	}
	sc := collectorScrape(t, collectorTarget(t, r.URL()))

	if d, ok := find(sc, "redis_latency_spike_duration_seconds", "event_name", "command"); !ok || d < 0.1 || d > 10 {
		t.Errorf("redis_latency_spike_duration_seconds{event_name=command} = %v (found %v), want >= 0.1", d, ok)
	}
	if at, ok := find(sc, "redis_latency_spike_last", "event_name", "command"); !ok || math.Abs(at-float64(before.Unix())) > 5 {
		t.Errorf("redis_latency_spike_last{event_name=command} = %v (found %v), want about %d", at, ok, before.Unix())
	}

	// The set histogram: buckets in le order never decrease and end at
	// the calls.
	type bucket struct {
		le float64
		v  float64
	}
	var bs []bucket
	for _, s := range sc.Samples {
		if s.Labels.Get(model.MetricNameLabel) != "redis_commands_latencies_usec_bucket" || s.Labels.Get("cmd") != "set" {
			continue
		}
		lv := s.Labels.Get("le")
		le, err := strconv.ParseFloat(lv, 64)
		if err != nil || lv != labels.FormatOpenMetricsFloat(le) {
			t.Errorf("le %q is not formatted as Prometheus stores it", lv)
		}
		bs = append(bs, bucket{le, s.V})
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	if len(bs) < 2 || !math.IsInf(bs[len(bs)-1].le, 1) {
		t.Fatalf("set buckets %v: want some finite ones and +Inf", bs)
	}
	for i := 1; i < len(bs); i++ {
		if bs[i].v < bs[i-1].v {
			t.Errorf("set buckets decrease: %v", bs)
		}
	}
	if inf := bs[len(bs)-1].v; inf != 5 {
		t.Errorf("set +Inf bucket = %v, want 5 calls", inf)
	}
	if n, ok := find(sc, "redis_commands_latencies_usec_count", "cmd", "set"); !ok || n != 5 {
		t.Errorf("redis_commands_latencies_usec_count{cmd=set} = %v (found %v), want 5", n, ok)
	}
	raw, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	info, err := ParseInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	if sum, ok := find(sc, "redis_commands_latencies_usec_sum", "cmd", "set"); !ok || sum != commandUsec(info, "set") || sum <= 0 {
		t.Errorf("redis_commands_latencies_usec_sum{cmd=set} = %v (found %v), want commandstats usec %v", sum, ok, commandUsec(info, "set"))
	}
	for _, part := range []string{"_bucket", "_sum", "_count"} {
		if typ, _ := typeOf(sc, "redis_commands_latencies_usec"+part); typ != histogramType {
			t.Errorf("redis_commands_latencies_usec%s has type %v, want histogram", part, typ)
		}
	}
	// The DEBUG SLEEP's 100ms is in a finite bucket, below +Inf (1s).
	if _, ok := find(sc, "redis_commands_latencies_usec_count", "cmd", "debug"); !ok {
		t.Error("no histogram for debug")
	}
}

// TestLatencyHistogramReply: RESP2 (flat arrays) and RESP3 (maps) read the
// same; buckets come out sorted and never decreasing even if the reply's
// are not.
func TestLatencyHistogramReply(t *testing.T) {
	resp2 := []any{"get", []any{"calls", int64(3), "histogram_usec", []any{int64(8), int64(2), int64(2), int64(1), int64(16), int64(1)}}}
	resp3 := map[any]any{"get": map[any]any{"calls": int64(3), "histogram_usec": map[any]any{int64(2): int64(1), int64(8): int64(2), int64(16): int64(1)}}}
	info, err := ParseInfo("# Commandstats\ncmdstat_get:calls=3,usec=42,usec_per_call=14.00\ncmdstat_getex:calls=1,usec=1000\n")
	if err != nil {
		t.Fatal(err)
	}
	for name, reply := range map[string]any{"resp2": resp2, "resp3": resp3} {
		sc := sample.NewScrape(time.Now(), labels.EmptyLabels())
		emitLatencyHistograms(sc, info, reply)
		for le, want := range map[string]float64{"2.0": 1, "8.0": 2, "16.0": 2, "+Inf": 3} {
			if v, ok := find(sc, "redis_commands_latencies_usec_bucket", "cmd", "get", "le", le); !ok || v != want {
				t.Errorf("%s: bucket le=%s = %v (found %v), want %v", name, le, v, ok, want)
			}
		}
		// get's own usec, not get's and getex's as redis_exporter would.
		if v, ok := find(sc, "redis_commands_latencies_usec_sum", "cmd", "get"); !ok || v != 42 {
			t.Errorf("%s: _sum = %v (found %v), want 42", name, v, ok)
		}
	}
}
