// Package batchtest builds and compares the sample batches that the tests
// of the buffer, its codec and the offline tools store, encode and read
// back, so that every one of them means the same by "a Redis scrape" and
// by "the same batch".
package batchtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// T0 is an arbitrary scrape time (ms) the tests count from.
const T0 = int64(1_700_000_000_000)

// StaleNaN is Prometheus' stale marker (model/value.StaleNaN).
var StaleNaN = math.Float64frombits(0x7ff0000000000002)

// Redis is one scrape of a Redis INFO-like target at t (ms): about 300
// series, one sample each, the label shapes redis_exporter produces.
// seed varies the values.
func Redis(t int64, seed int) sample.Batch {
	base := []string{"instance", "redis-07.edge.example:6379", "job", "redis"}
	var b sample.Batch
	add := func(name string, typ sample.Type, v float64, kv ...string) {
		kv = append(append([]string{"__name__", name}, base...), kv...)
		b.Samples = append(b.Samples, sample.Sample{Labels: labels.FromStrings(kv...), T: t, V: v})
		if len(b.Metadata) == 0 || b.Metadata[len(b.Metadata)-1].Family != name {
			b.Metadata = append(b.Metadata, sample.Metadata{Family: name, Type: typ, Help: "Redis INFO field " + name})
		}
	}
	for i := range 60 {
		add(fmt.Sprintf("redis_field_%02d", i), sample.Gauge, float64(seed*1000+i)+0.25)
	}
	for i := range 80 {
		cmd := fmt.Sprintf("cmd%02d", i)
		add("redis_commands_total", sample.Counter, float64(seed*100000+i*37), "cmd", cmd)
		add("redis_commands_duration_seconds_total", sample.Counter, float64(seed)*1.5+float64(i)/7, "cmd", cmd)
		add("redis_commands_rejected_calls_total", sample.Counter, float64(i%3), "cmd", cmd)
	}
	return b
}

// Small has n samples at t, t+1, ... with values seeded by id, so a test
// can tell batches apart.
func Small(id, n int, t int64) sample.Batch {
	var b sample.Batch
	for i := range n {
		b.Samples = append(b.Samples, sample.Sample{
			Labels: labels.FromStrings("__name__", "redis_test", "batch", strconv.Itoa(id), "i", strconv.Itoa(i)),
			T:      t + int64(i),
			V:      float64(id*1000 + i),
		})
	}
	return b
}

// Backlog is what an outage leaves in the buffer: scrapes rounds of
// targets Redis targets (~300 series each), one scrape every interval
// ms, each scrape's timestamp off its schedule by up to ±jitter ms, one
// batch per scrape, targets interleaved. Deterministic.
func Backlog(scrapes, targets int, interval, jitter int64) []sample.Batch {
	rng := rand.New(rand.NewPCG(uint64(scrapes), uint64(targets)))
	out := make([]sample.Batch, 0, scrapes*targets)
	for i := range scrapes {
		for k := range targets {
			t := T0 + int64(i)*interval + int64(k)*interval/int64(targets)
			if jitter > 0 {
				t += rng.Int64N(2*jitter+1) - jitter
			}
			b := Redis(t, i+k*1000)
			if k > 0 {
				inst := fmt.Sprintf("redis-%02d.edge.example:6379", k)
				for j := range b.Samples {
					b.Samples[j].Labels = labels.NewBuilder(b.Samples[j].Labels).Set("instance", inst).Labels()
				}
			}
			out = append(out, b)
		}
	}
	return out
}

// RequireEqual fails unless got equals want sample by sample, with
// values compared bit for bit (so NaN payloads count).
func RequireEqual(t testing.TB, want, got sample.Batch) {
	t.Helper()
	if err := Diff(want, got); err != nil {
		t.Fatal(err)
	}
}

// Diff says how got differs from want: samples (values bit for bit) and
// metadata, in order. It is nil if they are equal.
func Diff(want, got sample.Batch) error {
	if len(want.Samples) != len(got.Samples) {
		return fmt.Errorf("%d samples, want %d", len(got.Samples), len(want.Samples))
	}
	for i, w := range want.Samples {
		g := got.Samples[i]
		if !labels.Equal(w.Labels, g.Labels) || w.T != g.T || math.Float64bits(w.V) != math.Float64bits(g.V) {
			return fmt.Errorf("sample %d = %v %d %#x, want %v %d %#x",
				i, g.Labels, g.T, math.Float64bits(g.V), w.Labels, w.T, math.Float64bits(w.V))
		}
	}
	if len(want.Metadata) != len(got.Metadata) {
		return fmt.Errorf("%d metadata, want %d", len(got.Metadata), len(want.Metadata))
	}
	for i := range want.Metadata {
		if want.Metadata[i] != got.Metadata[i] {
			return fmt.Errorf("metadata %d = %+v, want %+v", i, got.Metadata[i], want.Metadata[i])
		}
	}
	return nil
}
