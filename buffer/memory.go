package buffer

import (
	"time"

	"github.com/redwire/redwire/sample"
)

// memFIFO is the in-memory tier: samples in append order. Not safe for
// concurrent use; Buffer holds its lock.
type memFIFO struct {
	samples []sample.Sample // samples[head:] are queued
	head    int
	since   time.Time // when the oldest queued sample arrived
}

func (q *memFIFO) len() int { return len(q.samples) - q.head }

func (q *memFIFO) push(s []sample.Sample) {
	if q.len() == 0 {
		q.since = time.Now()
	}
	q.samples = append(q.samples, s...)
}

// peek returns the oldest n samples without removing them.
func (q *memFIFO) peek(n int) []sample.Sample { return q.samples[q.head : q.head+n] }

// take removes and returns the oldest n samples as a new slice.
func (q *memFIFO) take(n int) []sample.Sample {
	out := make([]sample.Sample, n)
	copy(out, q.peek(n))
	q.discard(n)
	q.since = time.Now() // the rest start a fresh deadline
	return out
}

func (q *memFIFO) dropOldest(n int) { q.discard(n) }

func (q *memFIFO) discard(n int) {
	clear(q.samples[q.head : q.head+n]) // let label sets be collected
	q.head += n
	// Reclaim the consumed head once it is the larger part, keeping push
	// amortised O(1) without unbounded growth.
	if q.head > 0 && q.head >= len(q.samples)/2 {
		k := copy(q.samples, q.samples[q.head:])
		clear(q.samples[k:])
		q.samples = q.samples[:k]
		q.head = 0
	}
}

// metadataResend is how often the full metadata set rides along with a
// lease even if nothing changed, so a receiver that restarted learns it
// again (Prometheus sends metadata every minute for the same reason).
const metadataResend = time.Minute

// metadataSet is the latest TYPE/HELP of every family seen. Metadata is
// not stored per record: it would cost more disk than the samples.
type metadataSet struct {
	byFamily map[string]sample.Metadata
	changed  bool
	sentAt   time.Time
}

func newMetadataSet() metadataSet {
	return metadataSet{byFamily: make(map[string]sample.Metadata)}
}

func (m *metadataSet) update(md []sample.Metadata) {
	for _, x := range md {
		if old, ok := m.byFamily[x.Family]; !ok || old != x {
			m.byFamily[x.Family] = x
			m.changed = true
		}
	}
}

// due returns the whole set if it changed or was last sent a while ago,
// else nil.
func (m *metadataSet) due() []sample.Metadata {
	now := time.Now()
	if !m.changed && now.Sub(m.sentAt) < metadataResend {
		return nil
	}
	out := make([]sample.Metadata, 0, len(m.byFamily))
	for _, x := range m.byFamily {
		out = append(out, x)
	}
	m.changed, m.sentAt = false, now
	return out
}
