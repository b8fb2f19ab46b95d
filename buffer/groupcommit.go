package buffer

// The group commit of buffer.mode always.
//
// The promise of always: a scrape counted as taken (the agent counts it
// once Append has returned) survives a power cut, so Append returns only
// after the fsync of a commit that holds its batch. Paying that fsync once
// per Append made scrape loops queue behind each other's fsyncs, one at a
// time. Here Append hands its batch to one committer goroutine and waits;
// the committer takes every batch waiting, commits them in one bbolt
// transaction (one record each, in the order they came), and wakes all
// their callers after its fsync. Appends that arrive during a commit
// wait for the next, which takes them all: the more scrapes land at once,
// the more share an fsync, and a lone scrape waits no longer than before.
//
// Why not one fsync per interval: a batch would wait up to an interval
// for its commit. Either its scrape loop waits that long, holding a scrape
// slot (max_concurrent_scrapes) and stalling the others, or Append returns
// at once and the agent counts the scrape as taken before it is durable,
// which breaks the promise unless the count itself is deferred to the
// commit. Deferring the count would make redwire_samples_scraped_total lag
// and the identity taken = sent + dropped + pending hold only between
// commits; the group commit keeps both, and costs one fsync per burst of
// concurrent scrapes instead of one per scrape.

import (
	"sync"

	"github.com/redwire/redwire/sample"
)

// groupCommit owns the committer goroutine of one Buffer; Buffer.Close
// stops it.
//
// Invariant: an Append that got into waiting is committed (or kept in
// memory on failure) and woken exactly once, also when stop comes
// meanwhile: stop makes the committer take what waits before it returns,
// and appends after stop commit on their own.
type groupCommit struct {
	b *Buffer

	mu       sync.Mutex
	waiting  []*groupAppend
	stopped  bool
	received int // appends handed to the committer, for tests

	wake chan struct{} // 1-buffered: something waits
	quit chan struct{} // closed by stop
	done chan struct{} // closed when the committer has returned
}

// groupAppend is one caller's batch and, once done is closed, its answer.
type groupAppend struct {
	batch   sample.Batch
	dropped []Dropped
	err     error
	done    chan struct{}
}

func startGroupCommit(b *Buffer) *groupCommit {
	g := &groupCommit{b: b, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go g.run()
	return g
}

// append waits until batch is committed with whatever else waits, or kept
// in memory if the store failed, and returns Buffer.Append's answer.
func (g *groupCommit) append(batch sample.Batch) ([]Dropped, error) {
	a := &groupAppend{batch: batch, done: make(chan struct{})}
	g.mu.Lock()
	if g.stopped {
		// Closing or closed: no committer any more.
		g.mu.Unlock()
		g.b.commitGroup([]*groupAppend{a})
		return a.dropped, a.err
	}
	g.waiting = append(g.waiting, a)
	g.received++
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default: // already woken: the committer takes this one too
	}
	<-a.done
	return a.dropped, a.err
}

func (g *groupCommit) run() {
	defer close(g.done)
	for {
		select {
		case <-g.wake:
		case <-g.quit:
		}
		g.mu.Lock()
		group, stopped := g.waiting, g.stopped
		g.waiting = nil
		g.mu.Unlock()
		if len(group) > 0 {
			g.b.commitGroup(group)
		}
		if stopped { // nothing is added to waiting once stopped is set
			return
		}
	}
}

// stop commits what waits and ends the committer. Later calls wait for
// the first to finish.
func (g *groupCommit) stop() {
	g.mu.Lock()
	first := !g.stopped
	g.stopped = true
	g.mu.Unlock()
	if first {
		close(g.quit)
	}
	<-g.done
}

// commitGroup keeps the batches of group, in order, in one transaction,
// and wakes their callers. Each hears the error, if any; what was dropped
// to make room is told to the first only, so that it is counted once.
func (b *Buffer) commitGroup(group []*groupAppend) {
	batches := make([]sample.Batch, len(group))
	b.mu.Lock()
	for i, a := range group {
		b.meta.update(a.batch.Metadata)
		batches[i] = sample.Batch{Samples: a.batch.Samples} // metadata rides with leases
	}
	dropped, err := b.keep(batches, nil) // always has no journal
	b.signal()
	b.mu.Unlock()
	group[0].dropped = dropped
	for _, a := range group {
		a.err = err
		close(a.done)
	}
}
