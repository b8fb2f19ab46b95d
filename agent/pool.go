package agent

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// scrapePool bounds how many scrapes run at once, in two lanes so that
// dead targets never delay live ones.
//
// A target whose last scrape succeeded takes a slot in the main lane; one
// whose last scrape failed takes a slot in the failing lane. A dead target
// (say, a listener that accepts and never answers) holds its slot for the
// whole scrape timeout; in one shared lane enough of them fill every slot
// and the live targets wait behind them until their scrapes are skipped.
// With two lanes the failing targets only wait behind each other.
//
// The failing lane has max(1, n/4) of the n slots of
// global.max_concurrent_scrapes and the main lane the rest, so n stays the
// bound on scrapes in flight that the config documents (for n = 1 two
// lanes need two slots: that one case allows 2). A quarter, because failing
// targets are expected to be few and their scrapes mostly wait on a
// deadline: it keeps them polled, so one that comes back is seen again
// soon, without taking much from the live targets, whose scrapes take
// milliseconds and need few slots.
//
// A target's first scrape is in the main lane: until it has answered or
// failed once nothing tells a dead target from a live one, and most are
// live. So a target that dies costs the main lane one slot for one scrape
// timeout, once, before it moves to the failing lane.
type scrapePool struct {
	main, failing *lane
}

// newScrapePool returns a pool for n slots, n at least 1 (the config check
// enforces it).
func newScrapePool(n int) *scrapePool {
	failing := max(1, n/4)
	return &scrapePool{main: newLane(max(1, n-failing)), failing: newLane(failing)}
}

// acquire waits for a slot: in the main lane if failures (the target's
// consecutive failed scrapes) is 0, else in the failing lane. since is
// when the target was last scraped (zero if never). It returns false,
// holding nothing, if ctx ends first: a loop passes a ctx that ends when
// its next scrape is due, so a slot that comes too late means a skipped
// scrape, not a pile-up of late ones.
func (p *scrapePool) acquire(ctx context.Context, failures int, since time.Time) bool {
	return p.lane(failures).acquire(ctx, failures, since)
}

// release returns a slot taken by acquire; failures must be what was
// passed to acquire, even if the scrape has changed the target's lane.
func (p *scrapePool) release(failures int) {
	p.lane(failures).release()
}

func (p *scrapePool) lane(failures int) *lane {
	if failures > 0 {
		return p.failing
	}
	return p.main
}

// lane is a counting semaphore that serves its waiters in order: fewest
// consecutive failures first, then longest since the last scrape, then
// first come. A plain channel serves whoever is woken first, and since a
// skipped scrape queues again only when its next one is due, which loops
// got a slot would follow the phase of their offsets: in a busy failing
// lane some targets could lose every time. In this order every failing
// target gets its turn, round after round, and one that has just started
// failing (a blip: most likely back at once) is tried before the ones
// that have failed for long.
type lane struct {
	mu   sync.Mutex
	free int     // slots not taken; > 0 only while nobody waits
	wait waiters // a heap
	seq  uint64  // arrivals, for first come first served among equals
}

func newLane(slots int) *lane { return &lane{free: slots} }

// waiter is one acquire blocked on a lane.
type waiter struct {
	failures int
	since    time.Time
	seq      uint64
	granted  chan struct{} // closed when the slot is handed over
	index    int           // position in the heap; -1 once handed a slot
}

func (l *lane) acquire(ctx context.Context, failures int, since time.Time) bool {
	l.mu.Lock()
	if l.free > 0 {
		l.free--
		l.mu.Unlock()
		return true
	}
	l.seq++
	w := &waiter{failures: failures, since: since, seq: l.seq, granted: make(chan struct{})}
	heap.Push(&l.wait, w)
	l.mu.Unlock()

	select {
	case <-w.granted:
		return true
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.index < 0 {
		// Handed a slot just as ctx ended: pass it on, or it is lost.
		l.handOver()
	} else {
		heap.Remove(&l.wait, w.index)
	}
	return false
}

func (l *lane) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handOver()
}

// handOver gives a slot that is being released to the first waiter, or
// frees it if nobody waits. l.mu must be held.
func (l *lane) handOver() {
	if l.wait.Len() == 0 {
		l.free++
		return
	}
	close(heap.Pop(&l.wait).(*waiter).granted)
}

// waiters is a heap.Interface ordered as lane documents.
type waiters []*waiter

func (h waiters) Len() int { return len(h) }

func (h waiters) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.failures != b.failures {
		return a.failures < b.failures
	}
	if !a.since.Equal(b.since) {
		return a.since.Before(b.since)
	}
	return a.seq < b.seq
}

func (h waiters) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *waiters) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}

func (h *waiters) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*h = old[:len(old)-1]
	return w
}
