package remotewrite

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/redis"
)

func at(name, instance string, t int64, v float64) sample.Sample {
	return sample.Sample{Labels: labels.FromStrings("__name__", name, "instance", instance), T: t, V: v}
}

// TestSampleV2BytesAsPrompb: a 2.0 Sample, with a start and without, is
// byte for byte what prompb's writev2 writes.
func TestSampleV2BytesAsPrompb(t *testing.T) {
	for _, c := range []struct {
		p  point
		st int64
	}{{point{1.5, 1_700_000_000_000}, 0}, {point{1.5, 1_700_000_000_000}, 1_699_999_000_000}, {point{0, 5}, 1}} {
		want, err := (&writev2.Sample{Value: c.p.v, Timestamp: c.p.t, StartTimestamp: c.st}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got := appendSampleV2(nil, c.p, c.st)
		if !bytes.Equal(got, want) || len(got) != pointSizeV2(c.p, c.st) {
			t.Errorf("%+v start %d: %x (size %d), prompb writes %x", c.p, c.st, got, pointSizeV2(c.p, c.st), want)
		}
	}
}

// TestStartTimestampsFromUptime: a counter Redis keeps from its start gets
// the start of its target's process, from the uptime sample of the same
// scrape, and a restart moves it; a gauge, a counter redwire keeps, a
// stale marker and a scrape without its uptime get none.
func TestStartTimestampsFromUptime(t *testing.T) {
	const t1, t2 = 1_700_000_000_000, 1_700_000_010_000
	b := sample.Batch{Samples: []sample.Sample{
		at("redis_uptime_in_seconds", "a", t1, 100),
		at("redis_commands_processed_total", "a", t1, 5),
		at("redis_total_error_replies", "a", t1, 1), // a counter without _total
		at("redis_connected_clients", "a", t1, 3),   // a gauge
		at("redis_rdb_saves_total", "a", t1, 2),     // a gauge, as redis_exporter names it
		at("redis_restarts_total", "a", t1, 1),      // counted by redwire since its own start
		at("redis_uptime_in_seconds", "b", t1, 7),
		at("redis_commands_processed_total", "b", t1, 9),
		// The next scrape: a restarted (uptime 3), b's INFO lost its uptime.
		at("redis_uptime_in_seconds", "a", t2, 3),
		at("redis_commands_processed_total", "a", t2, 1),
		at("redis_total_error_replies", "a", t2, math.Float64frombits(value.StaleNaN)),
		at("redis_commands_processed_total", "b", t2, 10),
	}, Metadata: []sample.Metadata{{Family: "redis_restarts_total", Type: sample.Counter}}}
	e := &Encoder{msg: MessageV2}
	body, err := e.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	d := decodeNative(t, body)
	want := map[string][]int64{ // by series, each sample's start
		`{__name__="redis_commands_processed_total", instance="a"}`: {t1 - 101_000, t2 - 4_000},
		`{__name__="redis_total_error_replies", instance="a"}`:      {t1 - 101_000, 0},
		`{__name__="redis_connected_clients", instance="a"}`:        {0},
		`{__name__="redis_rdb_saves_total", instance="a"}`:          {0},
		`{__name__="redis_restarts_total", instance="a"}`:           {0},
		`{__name__="redis_uptime_in_seconds", instance="a"}`:        {0, 0},
		`{__name__="redis_uptime_in_seconds", instance="b"}`:        {0},
		`{__name__="redis_commands_processed_total", instance="b"}`: {t1 - 8_000, 0},
	}
	if len(d.floats) != len(want) {
		t.Fatalf("%d series, want %d", len(d.floats), len(want))
	}
	for k, w := range want {
		got := d.floats[k]
		if len(got) != len(w) {
			t.Fatalf("%s: %d samples, want %d", k, len(got), len(w))
		}
		for i := range w {
			if got[i].StartTimestamp != w[i] {
				t.Errorf("%s at %d: start %d, want %d", k, got[i].Timestamp, got[i].StartTimestamp, w[i])
			}
			if st := got[i].StartTimestamp; st != 0 && st >= got[i].Timestamp {
				t.Errorf("%s: start %d not before the sample's %d", k, st, got[i].Timestamp)
			}
		}
	}

	// The same batch as 1.0 has no place for them, and is as before.
	e1 := &Encoder{}
	if _, err := e1.Encode(&b); err != nil {
		t.Fatal(err)
	}
}

// TestStartTimestampsNoUptimeNoStart: a batch cut before its scrape's
// uptime sample sends the counters of that scrape without a start.
func TestStartTimestampsNoUptimeNoStart(t *testing.T) {
	b := sample.Batch{Samples: []sample.Sample{
		at("redis_commands_processed_total", "a", 2000, 5),
		at("redis_uptime_in_seconds", "a", 1000, 100), // another scrape's
	}}
	e := &Encoder{msg: MessageV2}
	body, err := e.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	d := decodeNative(t, body)
	if s := d.floats[`{__name__="redis_commands_processed_total", instance="a"}`]; len(s) != 1 || s[0].StartTimestamp != 0 {
		t.Fatalf("got %+v, want one sample without a start", s)
	}
}

// TestStartTimestampsOnNativeHistograms: a latency histogram sent native
// carries its start too, as prompb writes it.
func TestStartTimestampsOnNativeHistograms(t *testing.T) {
	const ts = 1_700_000_000_000
	b := sample.Batch{Samples: []sample.Sample{at("redis_uptime_in_seconds", "redis:6379", ts, 60)}}
	b.Samples = append(b.Samples, latencySet("get", ts, [][2]float64{{1, 2}, {2, 5}}, 7, 5)...)
	e := nativeEncoder()
	body, err := e.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	d := decodeNative(t, body)
	if h := d.hists[nativeSeries]; len(h) != 1 || h[0].StartTimestamp != ts-61_000 {
		t.Fatalf("histograms %+v; want one, starting at %d", h, ts-61_000)
	}
}

// redwireCounters are counters a Redis scrape carries that do not count
// from the process start: redwire counts them itself, from its own start.
var redwireCounters = map[string]bool{
	"redis_role_changes_total": true, "redis_restarts_total": true, "redis_replid_changes_total": true,
	"redis_slowlog_entries_total": true, "redis_slowlog_entries_missed_total": true,
	"redis_slowlog_duration_seconds_bucket": true, "redis_slowlog_duration_seconds_sum": true,
	"redis_slowlog_duration_seconds_count": true,
}

// TestProcessCountersCoverRedisCounters: every cumulative series of a real
// Redis' scrape (a counter's or a histogram's, by the scrape's metadata)
// is either one Redis counts from its start, in processCounters, or one
// redwire counts; and every series of processCounters it carries is
// cumulative. Encoded as 2.0, the first kind gets a start, the process'.
func TestProcessCountersCoverRedisCounters(t *testing.T) {
	r := harness.StartRedis(t)
	ctx := context.Background()
	if err := r.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	tg, err := redis.NewTarget(redis.TargetConfig{Addr: r.URL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	now := time.Now()
	sc, err := tg.Scrape(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	b := sc.Batch()
	types := map[string]sample.Type{}
	for _, m := range b.Metadata {
		types[m.Family] = m.Type
	}
	typeOf := func(name string) sample.Type {
		if typ, ok := types[name]; ok {
			return typ
		}
		for _, suf := range familySuffixes {
			if len(name) > len(suf) && name[len(name)-len(suf):] == suf {
				if typ, ok := types[name[:len(name)-len(suf)]]; ok {
					return typ
				}
			}
		}
		return sample.Unknown
	}
	var uptime float64
	counting := 0
	for _, s := range b.Samples {
		name := s.Labels.Get(model.MetricNameLabel)
		if name == uptimeSeries {
			uptime = s.V
		}
		typ := typeOf(name)
		// A summary's quantiles are not cumulative; its _sum and _count are.
		cumulative := typ == sample.Counter || typ == sample.Histogram ||
			typ == sample.Summary && (strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count"))
		switch {
		case cumulative && !processCounters[name] && !redwireCounters[name]:
			t.Errorf("%s (%v): add it to processCounters, or to redwireCounters if Redis does not count it from its start", name, typ)
		case processCounters[name] && !cumulative:
			t.Errorf("%s is a %v, not cumulative: it has no start", name, typ)
		case processCounters[name]:
			counting++
		}
	}
	if counting == 0 {
		t.Fatal("no series of processCounters in the scrape")
	}
	e := &Encoder{msg: MessageV2}
	body, err := e.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	d := decodeNative(t, body)
	wantStart := now.UnixMilli() - (int64(uptime)+1)*1000
	started := 0
	for k, ss := range d.floats {
		for _, s := range ss {
			if s.StartTimestamp != 0 {
				started++
				if s.StartTimestamp != wantStart {
					t.Errorf("%s: start %d, want %d", k, s.StartTimestamp, wantStart)
				}
			}
		}
	}
	if started != counting {
		t.Errorf("%d samples with a start, want the %d of processCounters", started, counting)
	}
}
