package buffer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redwire/redwire/sample"
)

// Options shape a Buffer: how much memory holds before the buffer
// spills to its store, and how leases are cut.
type Options struct {
	// Capacity is the number of samples memory holds before it spills to
	// the store.
	Capacity int
	// MaxBatch caps the samples in one lease.
	MaxBatch int
	// StoreBatch caps the samples in one lease from the store, a backlog
	// being replayed; 0 means MaxBatch.
	StoreBatch int
	// Deadline is how long a partial batch waits in memory.
	Deadline time.Duration
	// Always commits every batch to the store before it can be sent
	// (buffer.mode: always): zero loss on a crash or power cut, at the
	// cost of disk writes. Appends made at the same time share one commit
	// and its fsync (groupcommit.go).
	Always bool
	// JournalDir, if set (and not Always), is a directory on tmpfs for the
	// crash journal of the memory tier (journal.go): a crash of the
	// process loses nothing that memory held.
	JournalDir string
}

// Buffer is one endpoint's queue: samples wait in memory while the
// receiver keeps up and in a bbolt Store while it does not, and leave
// oldest first in both cases.
//
// Invariant (FIFO across the two tiers): every sample in memory, including
// a batch leased from memory and not yet acked, is newer than every record
// in the store. Appends go to the store only after memory has been moved
// there, and Next serves the store before memory. With liveFirst, one
// exception: a memory lease in flight while the store holds a backlog
// stays in memory when the rest spills (spillMemory), since the store
// can only ack its head; it is the oldest of the live stream, and that
// stream is all that keeps order with it.
type Buffer struct {
	opts  Options
	store *Store

	mu       sync.Mutex
	mem      memFIFO
	inflight *Lease // leased from memory, not yet acked
	released bool   // inflight was given back: Next hands it out again
	meta     metadataSet
	spill    bool  // endpoint down: appends go to the store
	noSpace  error // why the store last refused a write for room; nil if it took it
	draining bool  // shutting down: partial batches leave at once
	closed   bool
	// liveFirst (replay.order live_first, SetLiveFirst) keeps appends in
	// memory while the store holds a backlog, so that the sender can send
	// them first (NextLive) while the backlog drains on its own stream.
	liveFirst bool
	wake      chan struct{} // closed and replaced whenever state changes

	// hashes recycles the label set hashes Append computes for the
	// journal.
	hashes sync.Pool

	// leasedDrops are drops of records a lease still holds (settle).
	leasedDrops []leasedDrop

	// journal mirrors what memory holds (inflight and mem), nil without
	// one. Invariant: journal.live == inflight samples + mem.len().
	journal    *journal
	recovered  int   // samples the journal gave back at New
	journalErr error // why there is no journal, or why it stopped

	// group commits the appends of Always, nil otherwise; set by New,
	// stopped by Close.
	group *groupCommit
	// recoveryDrops is what storing the journal's samples at New
	// dropped, until RecoveryDrops hands it out.
	recoveryDrops []Dropped
}

// Lease is a batch handed to the sender. It stays the buffer's head until
// Ack, so a batch that fails is retried before anything newer.
type Lease struct {
	Batch sample.Batch
	// fromStore is FromStore's answer. An atomic: a spill moves the
	// lease in flight to the store (Buffer.Spill, or an Append that
	// fills memory) while its sender reads it.
	fromStore atomic.Bool
	upTo      uint64 // last store sequence number covered, if FromStore
}

// FromStore reports whether the batch is (also) held in the store, i.e.
// survives a crash: leased from the backlog, or moved there by a spill
// while in flight.
func (l *Lease) FromStore() bool { return l.fromStore.Load() }

// New returns a buffer in front of store, which it owns from now on:
// Close closes the store. With a crash journal, what the journal says
// memory held when the last process stopped is committed to the store
// first: it is older than anything appended from now on, and newer than
// everything stored.
func New(store *Store, opts Options) *Buffer {
	b := &Buffer{opts: opts, store: store, wake: make(chan struct{}), meta: newMetadataSet()}
	b.hashes.New = func() any { return new([]uint64) }
	if opts.JournalDir != "" && !opts.Always {
		b.openJournal()
	}
	if opts.Always {
		b.group = startGroupCommit(b)
	}
	return b
}

// Append queues a batch taken by a scrape and reports what had to be
// dropped to make room. Errors other than running out of room are
// returned after the batch has been kept in memory, so nothing is lost
// silently.
//
// With Always it returns once the batch is committed and fsynced, sharing
// that commit with the appends waiting at the same time (groupcommit.go).
// It takes no context, here as in the other modes: an fsync cannot be
// called off, and a caller that left before it ended would count a batch
// as taken that a power cut could still lose.
func (b *Buffer) Append(batch sample.Batch) ([]Dropped, error) {
	if b.group != nil {
		return b.group.append(batch)
	}
	// The journal's hashing of label sets is done before the lock: every
	// scrape loop appends to this buffer, and would otherwise queue
	// behind the others'. b.journal is set once, by New.
	var hashes []uint64
	if b.journal != nil && len(batch.Samples) > 0 && b.journal.numbering.Load() {
		p := b.hashes.Get().(*[]uint64)
		hashes = journalHashes((*p)[:0], batch.Samples)
		defer func() { *p = hashes; b.hashes.Put(p) }()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.signal()
	b.meta.update(batch.Metadata)
	batch.Metadata = nil // metadata rides with leases, not with stored records

	backlog := b.store.Stats().Batches > 0
	toStore := b.spill || (backlog && !b.liveFirst) ||
		b.mem.len()+batch.Len() > b.opts.Capacity
	if !toStore {
		b.mem.push(batch.Samples)
		if b.journal != nil {
			b.journal.push(batch.Samples, hashes)
		}
		return nil, nil
	}
	return b.keep([]sample.Batch{batch}, hashes)
}

// keep commits batches to the store in one transaction, after the batch
// in flight and memory (spillMemory), which are older. If the store
// cannot take them (disk full, I/O error) they stay in memory, the newest
// samples up to capacity, and what falls out is counted; an error other
// than running out of room is returned then. hashes are the journal's
// label-set hashes of a single batch (Append's), nil to let the journal
// hash them itself. mu must be held.
func (b *Buffer) keep(batches []sample.Batch, hashes []uint64) ([]Dropped, error) {
	dropped, err := b.spillMemory()
	if err == nil {
		var d []Dropped
		d, err = b.store.appendAll(batches)
		dropped = append(dropped, b.settle(d)...)
		if err == nil {
			b.noSpace = nil
			return dropped, nil
		}
	}
	// The store cannot take them (disk full, I/O error): keep the newest
	// samples in memory, up to capacity, and count what falls out.
	for _, batch := range batches {
		b.mem.push(batch.Samples)
		if b.journal != nil {
			b.journal.push(batch.Samples, hashes)
		}
	}
	if over := b.mem.len() - b.opts.Capacity; over > 0 {
		spans := sample.AddSpans(nil, b.mem.peek(over))
		b.mem.dropOldest(over)
		dropped = append(dropped, Dropped{Reason: DropDiskFull, Samples: over, Spans: spans})
		if b.journal != nil {
			// mem's oldest stand behind the batch in flight.
			inflight := 0
			if b.inflight != nil {
				inflight = b.inflight.Batch.Len()
			}
			b.journal.drop(inflight, over)
		}
	}
	if errors.Is(err, ErrNoSpace) {
		b.noSpace = err
		return dropped, nil
	}
	return dropped, fmt.Errorf("buffer store: %w", err)
}

// spillMemory moves the in-flight lease and then memory to the store, in
// that order; mu must be held. On failure memory is unchanged.
func (b *Buffer) spillMemory() ([]Dropped, error) {
	var dropped []Dropped
	// A lease acks the store up to its last record: a memory lease moved
	// behind a backlog would ack the backlog too. With liveFirst it stays
	// in memory (the journal still holds it); Close stores it.
	keep := b.liveFirst && !b.closed && b.store.Stats().Batches > 0
	if l := b.inflight; l != nil && !keep {
		d, err := b.store.Append(sample.Batch{Samples: l.Batch.Samples})
		if err != nil {
			return nil, err
		}
		dropped = append(dropped, b.settle(d)...)
		l.upTo = b.store.LastSeq()
		l.fromStore.Store(true)
		b.store.pin(l.upTo) // still in flight
		b.inflight, b.released = nil, false
		b.journalFront(l.Batch.Len())
	}
	for b.mem.len() > 0 {
		n := min(b.mem.len(), b.opts.MaxBatch)
		d, err := b.store.Append(sample.Batch{Samples: b.mem.peek(n)})
		if err != nil {
			return dropped, err
		}
		dropped = append(dropped, b.settle(d)...)
		b.mem.discard(n)
		b.journalMem(n)
	}
	return dropped, nil
}

// journalMem records that the oldest n samples of mem, behind the lease
// in flight if one was kept, left memory; mu must be held.
func (b *Buffer) journalMem(n int) {
	if b.journal == nil || b.inflight == nil {
		b.journalFront(n)
		return
	}
	b.journal.drop(b.inflight.Batch.Len(), n)
	b.journal.compact(b.held)
}

// settle holds back the part of ds that fell on records a lease still
// holds: that lease delivers those samples (then they are not dropped at
// all), or is given up (Release, Close), which counts them then. The
// store drops from the head, and the head is what a down endpoint's
// probe keeps retrying: counting it at once counted it twice, dropped
// and then sent. mu must be held.
func (b *Buffer) settle(ds []Dropped) []Dropped {
	for _, ld := range b.store.takeLeased() {
		// Thinning reports one Dropped per resolution: the held part
		// comes off as many of the reason's as it takes.
		left := ld.d.Samples
		for i := range ds {
			if ds[i].Reason == ld.d.Reason && !ds[i].Parked && left > 0 { // leases hold FIFO records only
				take := min(left, ds[i].Samples)
				ds[i].Samples -= take
				left -= take
			}
		}
		b.leasedDrops = append(b.leasedDrops, ld)
	}
	return slices.DeleteFunc(ds, func(d Dropped) bool { return d.Samples <= 0 })
}

// givenUp reports the drops held back for leases that will not deliver
// them, and forgets the leases; mu must be held.
func (b *Buffer) givenUp() []Dropped {
	var out []Dropped
	for _, ld := range b.leasedDrops {
		out = append(out, ld.d)
	}
	b.leasedDrops = nil
	b.store.unpin(0)
	return out
}

// Spill is called when the endpoint is declared down: the batch in flight
// and everything in memory are committed to the store, and appends go to
// the store until Resume.
func (b *Buffer) Spill() ([]Dropped, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spill = true
	return b.spillMemory()
}

// SetLiveFirst makes appends stay in memory while the store holds a
// backlog (on), so that they can be sent before it with NextLive, or go
// behind the backlog (off, the default), so that Next keeps every series
// in order.
func (b *Buffer) SetLiveFirst(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.liveFirst = on
}

// Resume is called when the endpoint answers again. The backlog still
// drains first; appends return to memory once the store is empty.
func (b *Buffer) Resume() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spill = false
}

// Next waits for the next lease: the oldest stored records if any, else a
// memory batch of MaxBatch samples or one that has waited Deadline. After
// Drain it returns ErrClosed once nothing is left.
func (b *Buffer) Next(ctx context.Context) (*Lease, error) {
	return b.next(ctx, true)
}

// NextLive is Next without the store: it waits for a memory batch, the
// live stream of LiveFirst, whatever backlog the store holds. After Drain
// it returns ErrClosed once memory is empty. A lease from the store may
// be out meanwhile (Next, Following): the two streams go side by side.
func (b *Buffer) NextLive(ctx context.Context) (*Lease, error) {
	return b.next(ctx, false)
}

func (b *Buffer) next(ctx context.Context, store bool) (*Lease, error) {
	for {
		b.mu.Lock()
		if b.inflight != nil {
			l := b.inflight
			released := b.released
			b.released = false
			b.mu.Unlock()
			if released {
				return l, nil
			}
			return nil, errors.New("buffer: Next before the previous lease was acked")
		}
		if store && b.store.Stats().Batches > 0 {
			l, err := b.leaseFromStore()
			b.mu.Unlock()
			return l, err
		}
		n := b.mem.len()
		waited := time.Since(b.mem.since)
		if n >= b.opts.MaxBatch || (n > 0 && (b.draining || waited >= b.opts.Deadline)) {
			l := &Lease{Batch: sample.Batch{Samples: b.mem.take(min(n, b.opts.MaxBatch)), Metadata: b.meta.due()}}
			b.inflight = l
			b.mu.Unlock()
			return l, nil
		}
		if b.draining || b.closed {
			b.mu.Unlock()
			return nil, ErrClosed
		}
		wake := b.wake
		b.mu.Unlock()

		var expired <-chan time.Time
		var timer *time.Timer
		if n > 0 {
			timer = time.NewTimer(b.opts.Deadline - waited)
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
			return nil, err
		}
	}
}

// leaseFromStore; mu must be held.
func (b *Buffer) leaseFromStore() (*Lease, error) {
	recs, err := b.store.Peek(max(b.opts.StoreBatch, b.opts.MaxBatch))
	if err != nil {
		return nil, fmt.Errorf("buffer store: %w", err)
	}
	if len(recs) == 0 { // everything left was quarantined
		return nil, errors.New("buffer store: no readable record")
	}
	l := storeLease(recs)
	b.store.pin(l.upTo)
	l.Batch.Metadata = b.meta.due()
	return l, nil
}

// storeLease makes a lease of recs, without metadata.
func storeLease(recs []Record) *Lease {
	l := &Lease{upTo: recs[len(recs)-1].Seq}
	l.fromStore.Store(true)
	n := 0
	for _, r := range recs {
		n += len(r.Batch.Samples)
	}
	l.Batch.Samples = make([]sample.Sample, 0, n)
	for _, r := range recs {
		l.Batch.Samples = append(l.Batch.Samples, r.Batch.Samples...)
	}
	return l
}

// Following returns, without waiting, the lease that comes after l in the
// store: the stored records after those l covers, as Next would lease
// them once l is acked. It is nil if l is not from the store or nothing
// follows it yet. A sender reads and encodes it while l is in flight, so
// that the receiver never waits for the agent during a replay; leases
// from the store are views, so one that is never sent costs nothing.
// They must be acked in order.
func (b *Buffer) Following(l *Lease) (*Lease, error) {
	if !l.FromStore() {
		return nil, nil
	}
	// The store locks itself; mu, which scrapes' appends wait for, is
	// only needed for the metadata.
	recs, err := b.store.PeekAfter(l.upTo, max(b.opts.StoreBatch, b.opts.MaxBatch))
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	next := storeLease(recs)
	b.store.pin(next.upTo)
	b.mu.Lock()
	next.Batch.Metadata = b.meta.due()
	b.mu.Unlock()
	return next, nil
}

// Ack removes a lease that the receiver accepted, or that was given up on
// (and counted) by the caller.
func (b *Buffer) Ack(l *Lease) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.signal()
	if b.inflight == l {
		b.inflight, b.released = nil, false
		b.journalFront(l.Batch.Len())
	}
	if l.FromStore() {
		// Delivered, or counted by the caller: what the store dropped of
		// it is not a drop.
		b.leasedDrops = slices.DeleteFunc(b.leasedDrops, func(ld leasedDrop) bool { return ld.upTo <= l.upTo })
		b.store.unpin(l.upTo)
		if err := b.store.Delete(l.upTo); err != nil {
			return fmt.Errorf("buffer store: %w", err)
		}
	}
	return nil
}

// Release gives back a lease that was neither acked nor given up on: the
// next call to Next hands out the same batch again. It lets the sender be
// replaced (a config reload changed the endpoint) without dropping or
// reordering anything.
//
// Records of l, or of a lease prepared after it (Following), that the
// store dropped for room or age while they were out are not sent by
// anyone now: Release returns them, to be counted.
func (b *Buffer) Release(l *Lease) []Dropped {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inflight == l {
		b.released = true
	}
	b.signal()
	if l.FromStore() {
		return b.givenUp()
	}
	return nil
}

// Taken records that the receiver took the first n samples of l and
// failed the rest (a batch split after a 413): what is sent again, and
// spilled or kept on Close, is only the rest. A receiver refuses samples
// older than the newest it holds for a series, so sending the taken part
// again could have the whole request refused. The store keeps l's
// records whole until l is acked: after a restart the batch goes again
// in full.
func (b *Buffer) Taken(l *Lease, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l.Batch = sample.Batch{Samples: l.Batch.Samples[n:]}
	if b.inflight == l {
		b.journalFront(n)
	}
}

// Unsent marks the lease's metadata as not delivered (the receiver
// rejected the batch that carried it), so the next lease carries it again
// instead of waiting for the periodic resend.
func (b *Buffer) Unsent(l *Lease) {
	if len(l.Batch.Metadata) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.meta.changed = true
}

// Drain makes Next hand out partial batches at once and return ErrClosed
// when nothing is left: the last flush before shutdown.
func (b *Buffer) Drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draining = true
	b.signal()
}

// Close commits whatever is still in memory, the batch in flight first,
// to the store and closes it. A graceful stop therefore loses nothing.
func (b *Buffer) Close() ([]Dropped, error) {
	if b.group != nil {
		// Commits what waits first; it takes mu to do so.
		b.group.stop()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.signal()
	dropped, err := b.spillMemory()
	dropped = append(dropped, b.givenUp()...)
	if err != nil && !b.journaled() {
		d := Dropped{Reason: DropShutdown, Samples: b.mem.len()}
		if b.inflight != nil {
			d.Samples += b.inflight.Batch.Len()
			d.Spans = sample.AddSpans(d.Spans, b.inflight.Batch.Samples)
		}
		d.Spans = sample.AddSpans(d.Spans, b.mem.peek(b.mem.len()))
		dropped = append(dropped, d)
	}
	// With a working journal, what the store could not take stays in it
	// for the next start.
	if b.journal != nil {
		err = errors.Join(err, b.journal.close())
	}
	return dropped, errors.Join(err, b.store.Close())
}

// Stats describes what the buffer holds, for the agent's metrics and
// the backlog it reports.
type Stats struct {
	MemorySamples int // in memory, including a lease not yet acked
	Store         StoreStats
	// NoSpace says why the last write to the store was refused for room
	// (a full filesystem, or less than MinFreeBytes left), nil if it was
	// not: meanwhile memory holds the newest samples, up to capacity.
	NoSpace error
}

// Stats is cheap: no I/O.
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.mem.len()
	if b.inflight != nil {
		n += b.inflight.Batch.Len()
	}
	return Stats{MemorySamples: n, Store: b.store.Stats(), NoSpace: b.noSpace}
}

func (b *Buffer) signal() {
	close(b.wake)
	b.wake = make(chan struct{})
}
