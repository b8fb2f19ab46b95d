// Package buffer keeps samples between the moment they are taken and the
// moment a receiver has accepted them.
package buffer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redwire/redwire/sample"
)

// ErrClosed is returned by Next once the queue is closed and empty.
var ErrClosed = errors.New("queue closed")

// metadataResend is how often the full metadata set rides along with a
// batch even if nothing changed, so a receiver that restarted learns it
// again (Prometheus sends metadata every minute for the same reason).
const metadataResend = time.Minute

// Queue is the in-memory FIFO of samples for one endpoint. Append never
// blocks the scraper; Next hands the sender a batch of at most maxBatch
// samples once that many are waiting or the oldest has waited deadline.
//
// Invariant: samples leave in the order they were appended, so each
// series' samples stay in time order.
type Queue struct {
	capacity int
	maxBatch int
	deadline time.Duration
	now      func() time.Time

	mu       sync.Mutex
	samples  []sample.Sample // samples[head:] are queued
	head     int
	oldestAt time.Time // when samples[head] was appended
	meta     map[string]sample.Metadata
	metaNew  bool // a family appeared or changed since metadata last left
	metaAt   time.Time
	closed   bool
	wake     chan struct{} // closed and replaced whenever state changes
}

// NewQueue returns a queue holding at most capacity samples.
func NewQueue(capacity, maxBatch int, deadline time.Duration) *Queue {
	return &Queue{
		capacity: capacity,
		maxBatch: maxBatch,
		deadline: deadline,
		now:      time.Now,
		meta:     make(map[string]sample.Metadata),
		wake:     make(chan struct{}),
	}
}

// Append queues a batch. When the queue is over capacity the oldest samples
// are discarded and their number returned, so the caller can count them.
func (q *Queue) Append(b sample.Batch) (dropped int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued() == 0 {
		q.oldestAt = q.now()
	}
	q.samples = append(q.samples, b.Samples...)
	for _, m := range b.Metadata {
		if old, ok := q.meta[m.Family]; !ok || old != m {
			q.meta[m.Family] = m
			q.metaNew = true
		}
	}
	if over := q.queued() - q.capacity; q.capacity > 0 && over > 0 {
		q.head += over
		dropped = over
	}
	q.compact()
	q.signal()
	return dropped
}

// Next waits for a batch and removes it from the queue. After Close it
// returns what is left without waiting, then ErrClosed.
func (q *Queue) Next(ctx context.Context) (sample.Batch, error) {
	for {
		q.mu.Lock()
		n := q.queued()
		waited := q.now().Sub(q.oldestAt)
		if n >= q.maxBatch || (n > 0 && (q.closed || waited >= q.deadline)) {
			b := q.take()
			q.mu.Unlock()
			return b, nil
		}
		if q.closed {
			q.mu.Unlock()
			return sample.Batch{}, ErrClosed
		}
		wake := q.wake
		q.mu.Unlock()

		var timer *time.Timer
		var expired <-chan time.Time
		if n > 0 {
			timer = time.NewTimer(q.deadline - waited)
			expired = timer.C
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-expired:
		}
		if timer != nil {
			timer.Stop()
		}
		if err := ctx.Err(); err != nil {
			return sample.Batch{}, err
		}
	}
}

// Close makes Next flush what is queued without waiting for the deadline.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.signal()
}

// Len is the number of queued samples.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.queued()
}

// queued is Len for callers holding mu.
func (q *Queue) queued() int { return len(q.samples) - q.head }

// take removes up to maxBatch samples; mu must be held.
func (q *Queue) take() sample.Batch {
	n := min(q.queued(), q.maxBatch)
	out := make([]sample.Sample, n)
	copy(out, q.samples[q.head:q.head+n])
	clear(q.samples[q.head : q.head+n]) // let label sets be collected
	q.head += n
	q.oldestAt = q.now() // remaining samples start a fresh deadline
	b := sample.Batch{Samples: out}
	if now := q.now(); q.metaNew || now.Sub(q.metaAt) >= metadataResend {
		b.Metadata = make([]sample.Metadata, 0, len(q.meta))
		for _, m := range q.meta {
			b.Metadata = append(b.Metadata, m)
		}
		q.metaNew, q.metaAt = false, now
	}
	q.compact()
	return b
}

// compact reclaims the consumed head once it is the larger part of the
// slice, keeping Append amortised O(1) without unbounded growth.
func (q *Queue) compact() {
	if q.head > 0 && q.head >= len(q.samples)/2 {
		n := copy(q.samples, q.samples[q.head:])
		clear(q.samples[n:])
		q.samples = q.samples[:n]
		q.head = 0
	}
}

func (q *Queue) signal() {
	close(q.wake)
	q.wake = make(chan struct{})
}
