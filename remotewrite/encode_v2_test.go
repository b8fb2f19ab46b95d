package remotewrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// seriesV2 is one series of a 2.0 request as a receiver reads it: labels
// and metadata resolved through the symbols table.
type seriesV2 struct {
	labels  string
	samples []point
	typ     sample.Type
	help    string
}

// decodeV2 reads body with prompb's writev2 types, the oracle, and
// resolves it as Prometheus' receiver does (ToLabels, ToMetadata). It
// fails t on what the spec forbids: symbols[0] other than "", a ref out
// of the table, an odd number of label refs, a string twice in symbols.
func decodeV2(t testing.TB, body []byte) []seriesV2 {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		t.Fatalf("writev2.Request: %v", err)
	}
	if len(req.Symbols) == 0 || req.Symbols[0] != "" {
		t.Fatalf("symbols must start with \"\": %q", req.Symbols)
	}
	seen := map[string]bool{}
	for _, s := range req.Symbols {
		if seen[s] {
			t.Fatalf("symbol %q twice", s)
		}
		seen[s] = true
	}
	var out []seriesV2
	var sb labels.ScratchBuilder
	for _, ts := range req.Timeseries {
		if len(ts.LabelsRefs)%2 != 0 {
			t.Fatalf("odd labels_refs %v", ts.LabelsRefs)
		}
		for _, r := range ts.LabelsRefs {
			if int(r) >= len(req.Symbols) {
				t.Fatalf("label ref %d past %d symbols", r, len(req.Symbols))
			}
		}
		ls, err := ts.ToLabels(&sb, req.Symbols)
		if err != nil {
			t.Fatal(err)
		}
		if int(ts.Metadata.HelpRef) >= len(req.Symbols) || int(ts.Metadata.UnitRef) >= len(req.Symbols) {
			t.Fatalf("metadata ref past %d symbols: %+v", len(req.Symbols), ts.Metadata)
		}
		s := seriesV2{labels: ls.String(), typ: sample.Type(ts.Metadata.Type), help: req.Symbols[ts.Metadata.HelpRef]}
		for _, p := range ts.Samples {
			s.samples = append(s.samples, point{v: p.Value, t: p.Timestamp})
		}
		if len(ts.Histograms)+len(ts.Exemplars) > 0 {
			t.Fatalf("histograms or exemplars in %s", s.labels)
		}
		out = append(out, s)
	}
	return out
}

// wantV2 is what a 2.0 request of b must say: every series once, in the
// order it first appears, its samples in time order, and the type and
// help of its family (by name, or name less _bucket, _count, _sum,
// _total) if b carries that family's metadata.
func wantV2(b *sample.Batch) []seriesV2 {
	var out []seriesV2
	index := map[string]int{}
	family := map[string]sample.Metadata{}
	for _, m := range slices.Backward(b.Metadata) {
		family[m.Family] = m // the first wins
	}
	for _, s := range b.Samples {
		k := s.Labels.String()
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			ns := seriesV2{labels: k}
			name := s.Labels.Get(model.MetricNameLabel)
			m, ok := family[name]
			for _, suf := range []string{"_bucket", "_count", "_sum", "_total"} {
				if !ok && len(name) > len(suf) && name[len(name)-len(suf):] == suf {
					m, ok = family[name[:len(name)-len(suf)]]
				}
			}
			if ok {
				ns.typ, ns.help = m.Type, m.Help
			}
			out = append(out, ns)
		}
		out[i].samples = append(out[i].samples, point{v: s.V, t: s.T})
	}
	for i := range out {
		slices.SortStableFunc(out[i].samples, cmpPoint)
	}
	return out
}

func requireV2(t testing.TB, e *Encoder, b *sample.Batch) []byte {
	t.Helper()
	e.msg = MessageV2
	body, err := e.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	got, want := decodeV2(t, body), wantV2(b)
	if len(got) != len(want) {
		t.Fatalf("%d series, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.labels != w.labels || g.typ != w.typ || g.help != w.help || !slices.EqualFunc(g.samples, w.samples, samePoint) {
			t.Fatalf("series %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	raw, _ := snappy.Decode(nil, body)
	if !bytes.Equal(body, snappy.Encode(nil, raw)) {
		t.Fatalf("body of %d bytes is not snappy.Encode of the %d-byte request", len(body), len(raw))
	}
	return body
}

// samePoint compares values by their bits: NaNs and stale markers must
// travel as they are. -0 arrives as 0, as with prompb's own code: proto3
// leaves out a value that == 0.
func samePoint(a, b point) bool {
	bits := func(v float64) uint64 {
		if v == 0 {
			return 0
		}
		return math.Float64bits(v)
	}
	return a.t == b.t && bits(a.v) == bits(b.v)
}

func TestEncodeRW2MatchesPrompbV2(t *testing.T) {
	a := labels.FromStrings("__name__", "redis_up", "instance", "a:6379", "job", "redis")
	c := labels.FromStrings("__name__", "redis_commands_total", "cmd", "get", "instance", "a:6379")
	h := labels.FromStrings("__name__", "redis_latency_bucket", "le", "+Inf")
	long := labels.FromStrings("__name__", string(bytes.Repeat([]byte("x"), 300)), "v", "é\x00ü")
	redis := batchtest.Redis(batchtest.T0, 1)
	var e Encoder
	for i, b := range []sample.Batch{
		{},
		{Samples: []sample.Sample{{Labels: a, T: 1, V: 1}}},
		{Samples: []sample.Sample{
			{Labels: a, T: 0, V: 0}, {Labels: c, T: -5, V: math.NaN()}, {Labels: a, T: -1, V: math.Copysign(0, -1)},
			{Labels: c, T: math.MaxInt64, V: math.Inf(-1)}, {Labels: long, T: 1 << 40, V: math.Float64frombits(value.StaleNaN)},
			{Labels: labels.EmptyLabels(), T: 7, V: 3},
		}},
		{Samples: []sample.Sample{{Labels: a, T: 3000, V: 1}, {Labels: a, T: 1000, V: 2}, {Labels: c, T: 2000, V: 3}, {Labels: h, T: 1, V: 9}},
			Metadata: []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "up"}, {Family: "x"}, {Type: sample.Counter},
				{Family: "redis_commands", Type: sample.Counter, Help: "redis_up"}, {Family: "redis_latency", Type: sample.Histogram, Help: "l"},
				{Family: "redis_up", Type: sample.Counter, Help: "second"}}},
		{Samples: []sample.Sample{{Labels: a, T: 1, V: 1}}, Metadata: []sample.Metadata{{Family: "redis_up", Type: -1}}},
		redis,
		replayBatch(10000),
		replayBatch(10),
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) { requireV2(t, &e, &b) })
	}
}

// TestEncodeRW2SendsEachStringOnce: the instance and job labels of a
// whole Redis scrape, and a help text shared by many series, are in the
// request once.
func TestEncodeRW2SendsEachStringOnce(t *testing.T) {
	b := batchtest.Redis(batchtest.T0, 1)
	var e Encoder
	e.msg = MessageV2
	body, err := e.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := snappy.Decode(nil, body)
	for _, s := range []string{"redis-07.edge.example:6379", "Redis INFO field redis_commands_total"} {
		if n := bytes.Count(raw, []byte(s)); n != 1 {
			t.Errorf("%q is in the request %d times, want once", s, n)
		}
	}
}

// TestEncodeRW2ThenRW1 : one encoder writes either message, and a 1.0
// request after a 2.0 one is still what prompb writes.
func TestEncodeRW2ThenRW1(t *testing.T) {
	b := batchtest.Redis(batchtest.T0, 1)
	var e Encoder
	requireV2(t, &e, &b)
	e.msg = MessageV1
	requireLikePrompb(t, &e, &b)
	requireV2(t, &e, &b)
}

// FuzzEncodeRW2 builds batches from arbitrary bytes, as FuzzEncode does,
// and requires the 2.0 body to read back through prompb's writev2 types
// as the batch.
//
//	go test -run '^$' -fuzz FuzzEncodeRW2 -fuzztime 60s ./remotewrite/
func FuzzEncodeRW2(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15"))
	f.Add(append([]byte{0x13}, bytes.Repeat([]byte{0xff}, 40)...))
	f.Add(bytes.Repeat([]byte("\x04\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0\x7f\x1d"), 5))
	f.Add(bytes.Repeat([]byte("\x0e\x80\x80\x80\x80\x80\x80\x80\x80\x01\x00\x00\x00\x00\x00\xf8\x7f"), 7))
	series := []labels.Labels{
		labels.FromStrings("__name__", "redis_up", "instance", "a:6379", "job", "redis"),
		labels.FromStrings("__name__", "redis_up", "instance", "b:6379", "job", "redis"),
		labels.FromStrings("__name__", "redis_commands_total", "cmd", "get", "instance", "a:6379"),
		labels.EmptyLabels(),
	}
	metas := []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "Is Redis up"}, {Family: "redis_commands", Type: sample.Counter},
		{}, {Family: "redis_up", Type: 127, Help: "a:6379"}}
	var e Encoder
	f.Fuzz(func(t *testing.T, data []byte) {
		// 17 bytes a sample: control (series, metadata), timestamp, value bits.
		var b sample.Batch
		for ; len(data) >= 17; data = data[17:] {
			c := data[0]
			b.Samples = append(b.Samples, sample.Sample{Labels: series[c&3],
				T: int64(binary.LittleEndian.Uint64(data[1:])), V: math.Float64frombits(binary.LittleEndian.Uint64(data[9:]))})
			if c&4 != 0 {
				b.Metadata = append(b.Metadata, metas[(c>>3)&3])
			}
		}
		requireV2(t, &e, &b)
	})
}

// TestEncodeRW2CostsNoMoreThanRW1: for the batches a Redis target makes
// (one scrape, five scrapes, a replay lease), the 2.0 body is no larger
// than the 1.0 body of the same samples. (For a one-series toy request
// 2.0 is a few bytes larger: the symbols table's "" and the refs' tag.)
func TestEncodeRW2CostsNoMoreThanRW1(t *testing.T) {
	var five sample.Batch
	for i := range 5 {
		s := batchtest.Redis(batchtest.T0+int64(i)*10_000, i)
		five.Samples = append(five.Samples, s.Samples...)
		five.Metadata = s.Metadata
	}
	for name, b := range map[string]sample.Batch{
		"one scrape":   batchtest.Redis(batchtest.T0, 1),
		"five scrapes": five,
		"replay":       replayBatch(10000),
	} {
		var e Encoder
		v1, err := e.Encode(&b)
		if err != nil {
			t.Fatal(err)
		}
		n1 := len(v1)
		e.msg = MessageV2
		v2, err := e.Encode(&b)
		if err != nil {
			t.Fatal(err)
		}
		if len(v2) > n1 {
			t.Errorf("%s: 2.0 body %d bytes, 1.0 body %d", name, len(v2), n1)
		}
		t.Logf("%s: %d samples, 1.0 %d B, 2.0 %d B (%.2f×)", name, b.Len(), n1, len(v2), float64(len(v2))/float64(n1))
	}
}
