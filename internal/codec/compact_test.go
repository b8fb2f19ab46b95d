package codec

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// requireSegmentRoundTrip encodes in, both at once and batch by batch,
// decodes, and fails unless everything came back.
func requireSegmentRoundTrip(t testing.TB, in []sample.Batch) []byte {
	t.Helper()
	enc, err := EncodeSegment(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSegment(enc)
	if err != nil {
		t.Fatal(err)
	}
	if err := segmentDiff(in, got); err != nil {
		t.Fatal(err)
	}
	var s Segment
	for i := range in {
		if err := s.Append(&in[i]); err != nil {
			t.Fatal(err)
		}
		// Encoding midway leaves the segment appendable.
		if i == len(in)/2 {
			s.Encode(nil)
		}
	}
	if enc2 := s.Encode([]byte("prefix")); !bytes.Equal(enc2, append([]byte("prefix"), enc...)) {
		t.Fatal("Segment.Encode(prefix) differs from prefix + EncodeSegment")
	}
	return enc
}

func segmentDiff(want, got []sample.Batch) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d batches, want %d", len(got), len(want))
	}
	for i := range want {
		if err := batchtest.Diff(want[i], got[i]); err != nil {
			return fmt.Errorf("batch %d: %w", i, err)
		}
	}
	return nil
}

func TestCompactRoundTrip(t *testing.T) {
	series := func(kv ...string) labels.Labels { return labels.FromStrings(kv...) }
	a := series("__name__", "redis_up", "instance", "a:6379", "job", "redis")
	b := series("__name__", "redis_connected_clients", "instance", "a:6379", "job", "redis")
	stale := math.Float64frombits(value.StaleNaN)
	meta := []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "Is Redis up"}}

	var nans []sample.Batch
	for i, v := range []float64{
		1, stale, math.NaN(), stale, stale, 2, math.Float64frombits(0x7ff8dead_beef0001),
		math.Float64frombits(0xfff0000000000001), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 0,
		math.SmallestNonzeroFloat64, math.MaxFloat64, -math.MaxFloat64, stale, 3,
	} {
		nans = append(nans, sample.Batch{Samples: []sample.Sample{
			{Labels: a, T: t0 + int64(i)*1000, V: v},
			{Labels: b, T: t0 + int64(i)*1000, V: -v},
		}, Metadata: meta})
	}
	// Clock steps: backwards, by extremes, and deltas that wrap.
	var times []sample.Batch
	for _, ts := range []int64{t0, t0 + 1000, t0 - 3_600_000, t0 - 3_599_000, math.MaxInt64, math.MinInt64, 0, -1, t0, t0 + 1} {
		times = append(times, sample.Batch{Samples: []sample.Sample{{Labels: a, T: ts, V: float64(ts)}, {Labels: b, T: ts, V: 1}}})
	}
	// Samples that share no timestamps, interleaved and repeated: one run each.
	mixed := sample.Batch{Samples: []sample.Sample{
		{Labels: a, T: 5, V: 1}, {Labels: b, T: 4, V: 2}, {Labels: a, T: 4, V: 3},
		{Labels: a, T: 4, V: 4}, {Labels: a, T: 9, V: 5}, {Labels: b, T: 9, V: 6}, {Labels: b, T: 9, V: 7},
	}}
	odd := sample.Batch{
		Samples: []sample.Sample{
			{Labels: labels.EmptyLabels(), T: 1, V: 1},
			{Labels: series("__name__", "x", "empty", "", "utf8", "héllo ✓ \x00 bytes"), T: 1, V: 2},
			{Labels: labels.EmptyLabels(), T: 1, V: 3},
		},
		Metadata: []sample.Metadata{
			{Family: "", Type: sample.Info, Help: ""},
			{Family: "x", Type: sample.Type(-7), Help: strings.Repeat("long help ", 1000)},
			{Family: "x", Type: sample.Type(math.MaxInt32), Help: "dup family kept as is"},
			{Family: "", Type: sample.Info, Help: ""},
		},
	}
	multi := batchtest.Redis(t0, 1)
	for i := 2; i <= 4; i++ {
		multi.Samples = append(multi.Samples, batchtest.Redis(t0+int64(i)*15000, i).Samples...)
	}
	// Series come and go: a command appears at scrape 100 and one is gone
	// from scrape 200, changing the series lists and the metadata.
	churn := batchtest.Backlog(360, 3, 1000, 3)
	for i := range churn {
		s := &churn[i]
		if i/3 >= 100 {
			s.Samples = append(s.Samples, sample.Sample{Labels: series("__name__", "redis_new_total", "cmd", "new"), T: s.Samples[0].T, V: float64(i)})
			s.Metadata = append(s.Metadata, sample.Metadata{Family: "redis_new_total", Type: sample.Counter, Help: "new"})
		}
		if i/3 >= 200 {
			s.Samples = s.Samples[1:]
		}
	}
	// More values than one XOR chunk holds: a changing series is cut
	// every compactChunkCut, a constant one at compactChunkMax.
	var long []sample.Batch
	for i := range 3 * compactChunkMax / 1000 {
		var lb sample.Batch
		for j := range 1000 {
			lb.Samples = append(lb.Samples,
				sample.Sample{Labels: a, T: int64(i*1000 + j), V: float64(j % 7)},
				sample.Sample{Labels: b, T: int64(i*1000 + j), V: batchtest.StaleNaN})
		}
		long = append(long, lb)
	}

	for name, in := range map[string][]sample.Batch{
		"no batches":     nil,
		"empty batches":  {{}, {Metadata: meta}, {}},
		"single":         {batchtest.Redis(t0, 3)},
		"nans":           nans,
		"times":          times,
		"mixed runs":     {mixed, mixed, {}, mixed},
		"odd labels":     {odd, odd},
		"multi scrape":   {multi, multi},
		"backlog":        batchtest.Backlog(360, 3, 1000, 0),
		"jittered churn": churn,
		"long series":    long,
	} {
		t.Run(name, func(t *testing.T) {
			requireSegmentRoundTrip(t, in)
		})
	}
}

// TestCompactSize guards performance target 1 (at most 2 bytes a sample
// on disk during an outage) where the encoding controls it. Everything
// but the values (dictionary, batch order, timestamps, chunk framing)
// must stay small even with scrape jitter: 2 bits a sample in the XOR
// chunk of an unchanged value, ~0.07 bytes for the rest. batchtest.Redis's
// values, which nearly all change every scrape, must stay near their
// measured 1.96.
func TestCompactSize(t *testing.T) {
	perSample := func(in []sample.Batch) float64 {
		enc := requireSegmentRoundTrip(t, in)
		n := 0
		for _, b := range in {
			n += len(b.Samples)
		}
		return float64(len(enc)) / float64(n)
	}
	in := batchtest.Backlog(600, 3, 1000, 5)
	if per := perSample(in); per > 1 {
		t.Errorf("batchtest.Redis backlog: %.3f bytes/sample, want at most 1", per)
	}
	for i := range in {
		for j := range in[i].Samples {
			in[i].Samples[j].V = float64(j)
		}
	}
	if per := perSample(in); per > 0.25 {
		t.Errorf("constant values: %.3f bytes/sample of overhead, want at most 0.25", per)
	}
}

func TestCompactDeterministicAndReset(t *testing.T) {
	in := batchtest.Backlog(20, 2, 1000, 5)
	var s Segment
	for i := range in {
		if err := s.Append(&in[i]); err != nil {
			t.Fatal(err)
		}
	}
	first := s.Encode(nil)
	if s.Batches() != len(in) || s.Samples() != len(in)*len(in[0].Samples) {
		t.Fatalf("Batches, Samples = %d, %d", s.Batches(), s.Samples())
	}
	s.Reset()
	if s.Batches() != 0 || s.Samples() != 0 {
		t.Fatal("Reset left batches")
	}
	for i := range in {
		if err := s.Append(&in[i]); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(first, s.Encode(nil)) {
		t.Fatal("the same batches after Reset encode differently")
	}
}

// TestCompactCorrupt checks that damage is an error: every single-bit
// flip fails the checksum, and so does every truncation.
func TestCompactCorrupt(t *testing.T) {
	enc := requireSegmentRoundTrip(t, smallSegment())
	for i := range enc {
		for bit := range 8 {
			bad := bytes.Clone(enc)
			bad[i] ^= 1 << bit
			if _, err := DecodeSegment(bad); err == nil {
				t.Fatalf("flipping bit %d of byte %d went unnoticed", bit, i)
			}
		}
	}
	for n := range len(enc) {
		if _, err := DecodeSegment(enc[:n]); err == nil {
			t.Fatalf("truncation to %d of %d bytes went unnoticed", n, len(enc))
		}
	}
	future := bytes.Clone(enc)
	future[4] = compactVersion + 1
	fixChecksum(future)
	if _, err := DecodeSegment(future); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("unknown version: err = %v", err)
	}
}

// TestCompactStructure damages a segment behind its checksum, the way an
// encoder bug would: each byte in turn set to a few values and the
// checksum fixed. Decoding must fail or give a result that round-trips,
// and never panic; the fuzz tests go further.
func TestCompactStructure(t *testing.T) {
	enc := requireSegmentRoundTrip(t, smallSegment())
	for i := compactHeaderSize; i < len(enc); i++ {
		for _, v := range []byte{0, 1, 0x7f, 0x80, 0xff, enc[i] + 1, enc[i] - 1} {
			bad := bytes.Clone(enc)
			bad[i] = v
			fixChecksum(bad)
			requireDecodeSane(t, bad)
		}
	}
}

// smallSegment has a bit of everything in few bytes: two series lists,
// two metadata lists, a batch of several runs, an empty batch, special
// values and a series with more than one chunk.
func smallSegment() []sample.Batch {
	a := labels.FromStrings("__name__", "redis_up", "job", "redis")
	c := labels.FromStrings("__name__", "redis_commands_total", "cmd", "get", "job", "redis")
	up := []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "Is Redis up"}}
	both := append(up, sample.Metadata{Family: "redis_commands_total", Type: sample.Counter, Help: "Commands"})
	in := []sample.Batch{
		{Samples: []sample.Sample{{Labels: a, T: t0, V: 1}, {Labels: c, T: t0, V: 10}}, Metadata: both},
		{Samples: []sample.Sample{{Labels: a, T: t0 + 1000, V: math.Float64frombits(value.StaleNaN)}, {Labels: c, T: t0 + 1003, V: math.NaN()}, {Labels: c, T: t0 + 999, V: 12.5}}, Metadata: both},
		{},
		{Samples: []sample.Sample{{Labels: a, T: t0 + 2000, V: 1}}, Metadata: up},
	}
	var long sample.Batch
	for i := range compactChunkCut + 3 {
		long.Samples = append(long.Samples, sample.Sample{Labels: c, T: t0 + 3000, V: float64(i * i)})
	}
	return append(in, long, in[0])
}

func fixChecksum(seg []byte) {
	if len(seg) >= compactHeaderSize {
		putChecksum(seg)
	}
}

// requireDecodeSane fails if data decodes to batches that do not survive
// another round trip.
func requireDecodeSane(t testing.TB, data []byte) {
	t.Helper()
	got, err := decodeSegmentBody(data)
	if err != nil {
		return
	}
	enc, err := EncodeSegment(got)
	if err != nil {
		t.Fatalf("decoded batches do not encode: %v", err)
	}
	again, err := DecodeSegment(enc)
	if err != nil {
		t.Fatalf("re-encoding of decoded batches does not decode: %v", err)
	}
	if err := segmentDiff(got, again); err != nil {
		t.Fatalf("round trip of decoded batches: %v", err)
	}
}
