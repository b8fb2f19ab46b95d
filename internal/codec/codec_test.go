package codec

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// t0 is the time (ms) the test batches count from.
const t0 = batchtest.T0

func TestCodecRoundTrip(t *testing.T) {
	series := func(kv ...string) labels.Labels { return labels.FromStrings(kv...) }
	a := series("__name__", "redis_up", "instance", "a:6379", "job", "redis")
	b := series("__name__", "redis_connected_clients", "instance", "a:6379", "job", "redis")
	nans := sample.Batch{Samples: []sample.Sample{
		{Labels: a, T: 1000, V: batchtest.StaleNaN},
		{Labels: a, T: 2000, V: math.NaN()},
		{Labels: a, T: 3000, V: math.Float64frombits(0x7ff8dead_beef0001)}, // quiet NaN, payload
		{Labels: a, T: 4000, V: math.Float64frombits(0xfff0000000000001)},  // negative signalling NaN
		{Labels: a, T: 5000, V: math.Inf(1)},
		{Labels: a, T: 6000, V: math.Inf(-1)},
		{Labels: a, T: 7000, V: math.Copysign(0, -1)},
		{Labels: a, T: 8000, V: math.SmallestNonzeroFloat64},
	}}
	times := sample.Batch{Samples: []sample.Sample{
		{Labels: a, T: math.MaxInt64, V: 1},
		{Labels: b, T: math.MinInt64, V: 2}, // delta wraps
		{Labels: a, T: 0, V: 3},
		{Labels: b, T: -1, V: 4},
		{Labels: a, T: 1_700_000_000_000, V: 5},
		{Labels: a, T: 1_699_999_999_999, V: 6}, // backwards
	}}
	odd := sample.Batch{
		Samples: []sample.Sample{
			{Labels: labels.EmptyLabels(), T: 1, V: 1},
			{Labels: series("__name__", "x", "empty", "", "utf8", "héllo ✓ \x00 bytes"), T: 2, V: 2},
			{Labels: labels.EmptyLabels(), T: 3, V: 3},
		},
		Metadata: []sample.Metadata{
			{Family: "", Type: sample.Info, Help: ""},
			{Family: "x", Type: sample.Type(-7), Help: strings.Repeat("long help ", 1000)},
			{Family: "x", Type: sample.Type(math.MaxInt32), Help: "dup family kept as is"},
		},
	}
	// Several scrapes of one target in a batch repeat every label set.
	multi := batchtest.Redis(1_700_000_000_000, 1)
	for i := 2; i <= 4; i++ {
		more := batchtest.Redis(1_700_000_000_000+int64(i)*15000, i)
		multi.Samples = append(multi.Samples, more.Samples...)
	}

	for name, in := range map[string]sample.Batch{
		"empty":      {},
		"nans":       nans,
		"times":      times,
		"odd labels": odd,
		"redis":      batchtest.Redis(1_700_000_000_000, 3),
		"multi":      multi,
	} {
		t.Run(name, func(t *testing.T) {
			enc := encodeBatch(nil, &in)
			got, err := decodeBatch(enc)
			if err != nil {
				t.Fatal(err)
			}
			batchtest.RequireEqual(t, in, got)
			// Appending to a prefix keeps the prefix.
			enc2 := encodeBatch([]byte("prefix"), &in)
			if !bytes.HasPrefix(enc2, []byte("prefix")) || !bytes.Equal(enc2[6:], enc) {
				t.Fatal("encodeBatch(dst) does not append to dst")
			}
		})
	}
}

// TestCodecDedup checks the point of the dictionaries: repeated label
// sets cost little.
func TestCodecDedup(t *testing.T) {
	one := batchtest.Redis(1_700_000_000_000, 1)
	four := batchtest.Redis(1_700_000_000_000, 1)
	for i := 1; i < 4; i++ {
		four.Samples = append(four.Samples, batchtest.Redis(1_700_000_000_000+int64(i)*1000, i).Samples...)
	}
	n1, n4 := len(encodeBatch(nil, &one)), len(encodeBatch(nil, &four))
	// Three more scrapes add timestamps and values (~10 bytes a sample)
	// but no label set.
	if extra := n4 - n1; extra > 3*len(one.Samples)*11 {
		t.Fatalf("3 repeated scrapes added %d bytes to %d: label sets are not shared", extra, n1)
	}
	t.Logf("one scrape %d B (%.1f B/sample), four scrapes %d B (%.1f B/sample)",
		n1, float64(n1)/float64(len(one.Samples)), n4, float64(n4)/float64(len(four.Samples)))
}

// rawBlock builds a version-1 encoding around a hand-written block.
func rawBlock(raw []byte) []byte {
	return append([]byte{BatchVersion}, snappy.Encode(nil, raw)...)
}

func uv(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func TestDecodeBatchRejects(t *testing.T) {
	good := batchtest.Redis(1_700_000_000_000, 1)
	enc := encodeBatch(nil, &good)
	hugeClaim := append([]byte{BatchVersion}, binary.AppendUvarint(nil, 200<<20)...)
	hugeClaim = append(hugeClaim, 0, 0, 0)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty input"},
		{"version", append([]byte{9}, enc[1:]...), "unknown version 9"},
		{"truncated", enc[:len(enc)/2], "snappy"},
		{"not snappy", []byte{BatchVersion, 0x80}, "snappy"},
		{"huge claim", hugeClaim, "claims"},
		{"symbol count", rawBlock(uv(1 << 40)), "symbol count"},
		{"symbol length", rawBlock(uv(1, 50)), "symbol length"},
		{"series count", rawBlock(uv(0, 1<<30)), "series count"},
		{"label ref", rawBlock(uv(1, 1, 'a', 1, 1, 0, 5)), "symbol ref 5"},
		{"sample count", rawBlock(uv(0, 0, 1000)), "sample count"},
		{"series index", rawBlock(append(uv(0, 0, 1, 3, 0), make([]byte, 8)...)), "series 3 out of range"},
		{"value short", rawBlock(uv(0, 1, 0, 1, 0, 0, 1, 2, 3)), "sample count"},
		{"meta type", rawBlock(append(uv(1, 0, 0, 0, 1, 0), append(binary.AppendVarint(nil, math.MaxInt32+1), 0)...)), "type"},
		{"trailing", rawBlock(uv(0, 0, 0, 0, 7)), "trailing"},
		{"varint", rawBlock([]byte{0xff, 0xff}), "uvarint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeBatch(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decodeBatch = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRecordChecksum(t *testing.T) {
	b := batchtest.Redis(1_700_000_000_000, 1)
	var enc BatchEncoder
	rec := AppendRecord(nil, &enc, &b, HeaderOf(&b))
	var dec BatchDecoder
	got, err := DecodeRecord(&dec, rec)
	if err != nil {
		t.Fatal(err)
	}
	batchtest.RequireEqual(t, b, got)

	h, err := ParseHeader(rec)
	if err != nil || h != (Header{Samples: 300, MinT: 1_700_000_000_000, MaxT: 1_700_000_000_000}) {
		t.Fatalf("ParseHeader = %+v, %v", h, err)
	}
	for _, off := range []int{0, 5, 12, 20, HeaderSize, len(rec) / 2, len(rec) - 1} {
		bad := bytes.Clone(rec)
		bad[off] ^= 0x10
		if _, err := DecodeRecord(&dec, bad); err == nil {
			t.Errorf("flipping a bit at byte %d of %d went unnoticed", off, len(rec))
		}
	}
	if _, err := DecodeRecord(&dec, rec[:10]); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("short record: %v", err)
	}
}

func BenchmarkEncodeBatch(b *testing.B) {
	batch := batchtest.Redis(t0, 1)
	var enc BatchEncoder
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.encode(buf[:0], &batch)
	}
	b.ReportMetric(float64(len(buf))/float64(len(batch.Samples)), "B/sample")
}

func BenchmarkDecodeBatch(b *testing.B) {
	batch := batchtest.Redis(t0, 1)
	data := encodeBatch(nil, &batch)
	var dec BatchDecoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dec.decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
