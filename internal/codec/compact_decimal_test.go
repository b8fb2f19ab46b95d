package codec

import (
	"encoding/binary"
	"math"
	"os"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/redwire/redwire/sample"
)

func TestDecimalAt(t *testing.T) {
	for _, c := range []struct {
		v     float64
		scale int // the smallest that works; -1: none
	}{
		{0, 0}, {1, 0}, {-7, 0}, {1 << 53, 0}, {-(1 << 53), 0},
		{1<<53 + 2, -1}, // an integer, but beyond what a decimal chunk keeps
		{0.25, 2}, {12.345678, 6}, {1.5e-6, 7}, {0.1, 1}, {1e-15, 15}, {1e-16, -1},
		{1.0 / 3, -1}, {math.Copysign(0, -1), -1}, {math.Inf(1), -1}, {math.Inf(-1), -1},
		{math.NaN(), -1}, {math.Float64frombits(value.StaleNaN), -1},
		{float64(1234567) / 1e6, 6}, // how the collectors make seconds from microseconds
	} {
		got := -1
		for s := 0; s <= maxDecimalScale; s++ {
			if _, ok := decimalAt(c.v, s); ok {
				got = s
				break
			}
		}
		if got != c.scale {
			t.Errorf("%v (%#x): smallest scale %d, want %d", c.v, math.Float64bits(c.v), got, c.scale)
		}
	}
}

// seriesBatches puts vals in one series, a batch of one sample each.
func seriesBatches(vals []float64) []sample.Batch {
	ls := labels.FromStrings("__name__", "redis_commands_processed_total", "instance", "a:6379")
	out := make([]sample.Batch, len(vals))
	for i, v := range vals {
		out[i].Samples = []sample.Sample{{Labels: ls, T: t0 + int64(i)*1000, V: v}}
	}
	return out
}

// seriesChunks returns the kind of each chunk of the only series of the
// segment that holds batches, and their size.
func seriesChunks(t *testing.T, batches []sample.Batch) (kinds []byte, size int) {
	t.Helper()
	var s Segment
	for i := range batches {
		if err := s.Append(&batches[i]); err != nil {
			t.Fatal(err)
		}
	}
	ss := &s.series[0]
	for e := ss.enc; len(e) > 0; {
		l, n := binary.Uvarint(e)
		kinds = append(kinds, e[n])
		e = e[n+int(l):]
	}
	open := ss.appendOpen(nil, &s.scratch)
	return append(kinds, open[0]), len(ss.enc) + len(open)
}

func TestDecimalChunks(t *testing.T) {
	gen := func(n int, f func(i int) float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	const D, X = chunkDecimal, chunkXOR
	for _, c := range []struct {
		name     string
		vals     []float64
		kinds    []byte
		maxBytes int // the chunks, 0: not checked
	}{
		{name: "one", vals: []float64{42}, kinds: []byte{D}},
		{name: "two", vals: []float64{42, 40}, kinds: []byte{D}},
		{name: "constant", vals: gen(5000, func(int) float64 { return 7 }), kinds: []byte{D},
			maxBytes: 5000/8 + 10},
		{name: "constant non-decimal", vals: gen(1000, func(int) float64 { return 1.0 / 3 }), kinds: []byte{X}},
		{name: "steady counter", vals: gen(1000, func(i int) float64 { return float64(1e9 + 1234*i) }),
			kinds: []byte{D, D, D, D, D, D, D, D, D}, maxBytes: 1000/8 + 9*20},
		{name: "cpu seconds", vals: gen(240, func(i int) float64 { return float64(5_000_000+i*i*997) / 1e6 }),
			kinds: []byte{D, D}},
		{name: "large jumps", vals: gen(240, func(i int) float64 { return float64(int64(i%2) << 52) }),
			kinds: []byte{D, D}},
		{name: "extremes", vals: gen(200, func(i int) float64 { return float64(int64(1-2*(i%2)) << 53) }),
			kinds: []byte{D, D}},
		{name: "stale marker ends a series", vals: append(gen(130, func(i int) float64 { return float64(i) }),
			math.Float64frombits(value.StaleNaN)), kinds: []byte{D, X}},
		{name: "NaN", vals: []float64{1, math.NaN(), 3}, kinds: []byte{X}},
		{name: "-0", vals: []float64{1, math.Copysign(0, -1), 3}, kinds: []byte{X}},
		{name: "back to decimal", vals: append(append(gen(120, func(i int) float64 { return 1.0 / float64(i+3) }),
			gen(120, func(i int) float64 { return float64(i) })...), gen(10, func(i int) float64 { return 0.5 })...),
			kinds: []byte{X, D, D}},
		{name: "scale grows", vals: []float64{1, 2, 2.5, 2.25, 2.125, 1e-9}, kinds: []byte{D}},
		{name: "past 2^53 at the chunk's scale", vals: []float64{0.5, 1 << 52}, kinds: []byte{X}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := seriesBatches(c.vals)
			requireSegmentRoundTrip(t, in)
			kinds, size := seriesChunks(t, in)
			if string(kinds) != string(c.kinds) {
				t.Errorf("chunk kinds %v, want %v", kinds, c.kinds)
			}
			if c.maxBytes > 0 && size > c.maxBytes {
				t.Errorf("%d values take %d bytes of chunks, want at most %d", len(c.vals), size, c.maxBytes)
			}
		})
	}
}

func TestDecimalChunkCorrupt(t *testing.T) {
	good := appendDecimalChunk(nil, []int64{5, 9, 100, -3, 1 << 40}, 2)
	if _, err := openDecimal(good, 4); err == nil {
		t.Error("a chunk of 5 samples opened with 4 left to its series")
	}
	for cut := 1; cut < len(good); cut++ {
		it, err := openDecimal(good[:cut], 5)
		if err != nil {
			continue
		}
		for err == nil {
			_, err = it.next()
		}
		if err == errDecimalEnd {
			t.Errorf("chunk cut to %d of %d bytes reads whole", cut, len(good))
		}
	}
	for i, bad := range [][]byte{
		{chunkDecimal, 0, 0, 1, 0, 0},      // no samples
		{chunkDecimal, 1, 16, 1, 0, 0},     // scale
		{chunkDecimal, 1, 0, 3, 0, 0},      // order
		{chunkDecimal, 1, 0, 1, 0, 65},     // width
		{chunkDecimal, 100, 0, 1, 0, 0, 0}, // more samples than bits
	} {
		if _, err := openDecimal(bad, 1000); err == nil {
			t.Errorf("case %d: % x opened", i, bad)
		}
	}
}

// TestCompactReadsVersion1 decodes a version 1 segment, written before
// decimal chunks (a real backlog), and requires the same batches from
// today's encoding, which must be smaller.
func TestCompactReadsVersion1(t *testing.T) {
	v1, err := os.ReadFile(realOutageFile)
	if err != nil {
		t.Fatal(err)
	}
	if v1[4] != compactVersionXOR {
		t.Fatalf("%s is version %d, want %d", realOutageFile, v1[4], compactVersionXOR)
	}
	batches, err := DecodeSegment(v1)
	if err != nil {
		t.Fatal(err)
	}
	v2 := requireSegmentRoundTrip(t, batches)
	if len(v2) >= len(v1) {
		t.Errorf("version 2 takes %d bytes, version 1 %d", len(v2), len(v1))
	}
}

// FuzzDecimalChunk builds one series from arbitrary bytes, as values that
// are mostly decimals (counters, gauges at some scale, with occasional
// specials), and requires them back bit for bit through a segment.
//
//	go test -run '^$' -fuzz FuzzDecimalChunk -fuzztime 60s ./internal/codec/
func FuzzDecimalChunk(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12"))
	f.Add([]byte("\x10\x01\x00\x00\x00\x00\x00\x00\x00\x11\xff\xff\xff\xff\xff\xff\xff\x7f\xf3\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("\xe6\x40\x42\x0f\x00\x00\x00\x00\x00\x26\x41\x42\x0f\x00\x00\x00\x00\x00\x26\x42\x42\x0f\x00\x00\x00\x00\x00"))
	specials := []float64{math.NaN(), math.Float64frombits(value.StaleNaN), math.Inf(1), math.Copysign(0, -1), 1 << 53, -(1 << 53), 1<<53 + 2}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Each value takes 9 bytes: a control byte and 8 of payload. The
		// control's low 4 bits are the scale, the top 4 the form.
		var vals []float64
		var prev int64
		for ; len(data) >= 9; data = data[9:] {
			c, p := data[0], binary.LittleEndian.Uint64(data[1:])
			scale := int(c & 0x0f)
			var n int64
			switch c >> 4 {
			case 0, 1, 2, 3, 4, 5: // a small step from the last value
				n = prev + int64(int16(p))
			case 6, 7, 8: // any integer within 2^53
				n = int64(p) >> 10
			case 9, 10, 11, 12: // the same again
				n = prev
			case 13, 14: // a special
				vals = append(vals, specials[p%uint64(len(specials))])
				continue
			default: // any bits
				vals = append(vals, math.Float64frombits(p))
				continue
			}
			prev = n
			vals = append(vals, float64(n)/pow10[scale])
		}
		in := seriesBatches(vals)
		requireSegmentRoundTrip(t, in)
	})
}
