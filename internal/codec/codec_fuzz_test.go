package codec

import (
	"bytes"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// FuzzDecodeBatch feeds arbitrary bytes to the decoder: it must never
// panic or allocate without bound, and whatever it accepts must survive
// another round trip unchanged.
//
//	go test -run '^$' -fuzz FuzzDecodeBatch -fuzztime 60s ./internal/codec/
func FuzzDecodeBatch(f *testing.F) {
	small := sample.Batch{
		Samples: []sample.Sample{
			{Labels: labels.FromStrings("__name__", "redis_up", "job", "redis"), T: 1_700_000_000_000, V: 1},
			{Labels: labels.FromStrings("__name__", "redis_up", "job", "redis"), T: 1_700_000_015_000, V: batchtest.StaleNaN},
			{Labels: labels.FromStrings("__name__", "redis_memory_used_bytes", "job", "redis"), T: 1_700_000_000_000, V: math.NaN()},
		},
		Metadata: []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "Is Redis up"}},
	}
	redis := batchtest.Redis(1_700_000_000_000, 2)
	for _, b := range []sample.Batch{{}, small, redis} {
		f.Add(encodeBatch(nil, &b))
	}
	f.Add([]byte{})
	f.Add([]byte{BatchVersion})
	f.Add(rawBlock(uv(1, 1, 'a', 1, 1, 0, 0, 1, 0, 2)))

	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBatch(data)
		if err != nil {
			return
		}
		enc := encodeBatch(nil, &b)
		again, err := decodeBatch(enc)
		if err != nil {
			t.Fatalf("re-encoding of a decoded batch does not decode: %v", err)
		}
		if err := batchtest.Diff(b, again); err != nil {
			t.Fatalf("round trip changed the batch: %v", err)
		}
		// The encoding is a function of the batch.
		if enc2 := encodeBatch(nil, &again); !bytes.Equal(enc, enc2) {
			t.Fatal("encoding the same batch twice gave different bytes")
		}
	})
}
