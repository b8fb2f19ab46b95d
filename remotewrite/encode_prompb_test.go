package remotewrite

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"

	"github.com/redwire/redwire/sample"
)

// prompbBody is what prompb's generated code marshals for b: the oracle
// the hand-written encoder must match byte for byte.
func prompbBody(t testing.TB, b *sample.Batch) []byte {
	t.Helper()
	var req prompb.WriteRequest
	index := map[string]int{}
	for _, s := range b.Samples {
		k := s.Labels.String()
		i, ok := index[k]
		if !ok {
			i = len(req.Timeseries)
			index[k] = i
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: prompb.FromLabels(s.Labels, nil)})
		}
		req.Timeseries[i].Samples = append(req.Timeseries[i].Samples, prompb.Sample{Value: s.V, Timestamp: s.T})
	}
	for i := range req.Timeseries {
		slices.SortStableFunc(req.Timeseries[i].Samples, func(a, b prompb.Sample) int {
			return cmpPoint(point{t: a.Timestamp}, point{t: b.Timestamp})
		})
	}
	for _, m := range b.Metadata {
		req.Metadata = append(req.Metadata, prompb.MetricMetadata{Type: prompb.MetricMetadata_MetricType(m.Type), MetricFamilyName: m.Family, Help: m.Help})
	}
	out, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func requireLikePrompb(t testing.TB, e *Encoder, b *sample.Batch) {
	t.Helper()
	body, err := e.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	want := prompbBody(t, b)
	if !bytes.Equal(raw, want) {
		t.Fatalf("%d bytes differ from prompb's %d for %d samples, %d metadata", len(raw), len(want), len(b.Samples), len(b.Metadata))
	}
	// Compressed block by block as it is written, the body must still be
	// exactly what snappy.Encode makes of the whole request.
	if !bytes.Equal(body, snappy.Encode(nil, want)) {
		t.Fatalf("body of %d bytes is not snappy.Encode of the %d-byte request", len(body), len(want))
	}
}

func TestEncodeMatchesPrompb(t *testing.T) {
	a := labels.FromStrings("__name__", "redis_up", "instance", "a:6379", "job", "redis")
	c := labels.FromStrings("__name__", "redis_commands_total", "cmd", "get", "instance", "a:6379")
	long := labels.FromStrings("__name__", string(bytes.Repeat([]byte("x"), 300)), "v", "é\x00ü")
	var e Encoder
	for _, b := range []sample.Batch{
		{},
		{Samples: []sample.Sample{{Labels: a, T: 1, V: 1}}},
		{Samples: []sample.Sample{
			{Labels: a, T: 0, V: 0}, {Labels: c, T: -5, V: math.NaN()}, {Labels: a, T: -1, V: math.Copysign(0, -1)},
			{Labels: c, T: math.MaxInt64, V: math.Inf(-1)}, {Labels: long, T: 1 << 40, V: math.Float64frombits(value.StaleNaN)},
			{Labels: labels.EmptyLabels(), T: 7, V: 3},
		}},
		{Samples: []sample.Sample{{Labels: a, T: 3000, V: 1}, {Labels: a, T: 1000, V: 2}, {Labels: c, T: 2000, V: 3}},
			Metadata: []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "up"}, {Family: "x"}, {Type: sample.Counter}}},
		replayBatch(10000),
		replayBatch(10),
	} {
		requireLikePrompb(t, &e, &b)
	}
}

// FuzzEncode builds batches from arbitrary bytes (a few label sets,
// arbitrary timestamps and value bits, metadata) and requires the body to
// be what prompb would marshal.
//
//	go test -run '^$' -fuzz FuzzEncode -fuzztime 60s ./remotewrite/
func FuzzEncode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15"))
	f.Add(append([]byte{0x13}, bytes.Repeat([]byte{0xff}, 40)...))
	series := []labels.Labels{
		labels.FromStrings("__name__", "redis_up", "instance", "a:6379", "job", "redis"),
		labels.FromStrings("__name__", "redis_up", "instance", "b:6379", "job", "redis"),
		labels.FromStrings("__name__", "redis_commands_total", "cmd", "get", "instance", "a:6379"),
		labels.EmptyLabels(),
	}
	metas := []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "Is Redis up"}, {Family: "f"}, {}, {Type: 127, Help: "h"}}
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
		requireLikePrompb(t, &e, &b)
	})
}
