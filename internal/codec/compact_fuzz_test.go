package codec

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// FuzzCompactDecode feeds arbitrary bytes to the segment decoder, once as
// they are and once with the checksum made right so that the parser behind
// it is reached: it must never panic or allocate without bound, and
// whatever it accepts must survive another round trip unchanged.
//
//	go test -run '^$' -fuzz FuzzCompactDecode -fuzztime 60s ./internal/codec/
func FuzzCompactDecode(f *testing.F) {
	a := labels.FromStrings("__name__", "redis_up", "job", "redis")
	small := []sample.Batch{
		{Samples: []sample.Sample{{Labels: a, T: t0, V: 1}, {Labels: labels.EmptyLabels(), T: t0, V: math.NaN()}},
			Metadata: []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "Is Redis up"}}},
		{},
		{Samples: []sample.Sample{{Labels: a, T: t0 - 5, V: math.Float64frombits(value.StaleNaN)}, {Labels: a, T: t0, V: 2}}},
	}
	for _, in := range [][]sample.Batch{nil, small, batchtest.Backlog(3, 2, 1000, 5)} {
		enc, err := EncodeSegment(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, compactVersion})

	f.Fuzz(func(t *testing.T, data []byte) {
		if got, err := DecodeSegment(data); err == nil {
			requireDecodeSane(t, data)
			_ = got
		}
		fixed := bytes.Clone(data)
		fixChecksum(fixed)
		requireDecodeSane(t, fixed)
	})
}

// FuzzCompactRoundTrip builds batches from arbitrary bytes (a few series,
// arbitrary timestamps and value bits, arbitrary batch boundaries and
// metadata) and requires them back exactly.
//
//	go test -run '^$' -fuzz FuzzCompactRoundTrip -fuzztime 60s ./internal/codec/
func FuzzCompactRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15"))
	stale := binary.LittleEndian.AppendUint64(nil, value.StaleNaN)
	f.Add(append(append([]byte{0x21, 0, 0, 0, 0, 0, 0, 0, 0}, stale...), 0x42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8))

	series := []labels.Labels{
		labels.FromStrings("__name__", "redis_up", "instance", "a:6379", "job", "redis"),
		labels.FromStrings("__name__", "redis_up", "instance", "b:6379", "job", "redis"),
		labels.FromStrings("__name__", "redis_commands_total", "cmd", "get", "instance", "a:6379", "job", "redis"),
		labels.EmptyLabels(),
	}
	metas := []sample.Metadata{
		{Family: "redis_up", Type: sample.Gauge, Help: "Is Redis up"},
		{Family: "redis_commands_total", Type: sample.Counter, Help: "Commands"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Each sample takes 17 bytes: a control byte (series, new batch,
		// timestamp form, metadata), 8 bytes of timestamp, 8 of value bits.
		var in []sample.Batch
		cur := sample.Batch{}
		var prevT int64
		for len(data) >= 17 {
			c := data[0]
			ts := int64(binary.LittleEndian.Uint64(data[1:]))
			v := math.Float64frombits(binary.LittleEndian.Uint64(data[9:]))
			data = data[17:]
			if c&0x04 != 0 && (len(cur.Samples) > 0 || len(cur.Metadata) > 0) {
				in = append(in, cur)
				cur = sample.Batch{}
			}
			switch c >> 6 {
			case 0, 1: // same instant, or a small step: what scrapes do
				ts = prevT + int64(c>>6)*(ts%2000)
			}
			prevT = ts
			cur.Samples = append(cur.Samples, sample.Sample{Labels: series[c&0x03], T: ts, V: v})
			if c&0x08 != 0 {
				cur.Metadata = append(cur.Metadata, metas[(c>>4)&1])
			}
		}
		in = append(in, cur)
		requireSegmentRoundTrip(t, in)
	})
}
