package buffer

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// journalRig is a buffer with a crash journal whose process can "crash":
// the store and the journal are closed as a kill -9 leaves them, without
// the spill of a clean Close.
type journalRig struct {
	t          *testing.T
	path, jdir string
	opts       Options
	b          *Buffer
	next       int64 // timestamp of the next sample appended: samples are told apart by it
}

func newJournalRig(t *testing.T, opts Options) *journalRig {
	dir := t.TempDir()
	opts.JournalDir = filepath.Join(dir, "shm")
	r := &journalRig{t: t, path: filepath.Join(dir, "ep.bbolt"), jdir: opts.JournalDir, opts: opts}
	r.open()
	t.Cleanup(func() {
		if r.b != nil {
			r.b.Close()
		}
	})
	return r
}

func (r *journalRig) open() {
	r.t.Helper()
	store, _, err := OpenStore(r.path, StoreOptions{NoSync: true})
	if err != nil {
		r.t.Fatal(err)
	}
	r.b = New(store, r.opts)
	if _, err := r.b.Journal(); err != nil {
		r.t.Fatal(err)
	}
}

// crash leaves store and journal as a killed process would.
func (r *journalRig) crash() {
	r.t.Helper()
	r.b.mu.Lock()
	r.b.journal.f.Close()
	r.b.mu.Unlock()
	if err := r.b.store.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.b = nil
}

// append queues n samples and returns their timestamps.
func (r *journalRig) append(n int) []int64 {
	r.t.Helper()
	var b sample.Batch
	var ts []int64
	for range n {
		r.next++
		b.Samples = append(b.Samples, sample.Sample{Labels: labels.FromStrings("__name__", "x"), T: r.next, V: 1})
		ts = append(ts, r.next)
	}
	if _, err := r.b.Append(b); err != nil {
		r.t.Fatal(err)
	}
	return ts
}

// stored is every sample timestamp in the store, oldest first.
func (r *journalRig) stored() []int64 {
	r.t.Helper()
	recs, err := r.b.store.Peek(1 << 30)
	if err != nil {
		r.t.Fatal(err)
	}
	var ts []int64
	for _, rec := range recs {
		for _, s := range rec.Batch.Samples {
			ts = append(ts, s.T)
		}
	}
	return ts
}

// checkInvariant: the journal counts what memory holds.
func (r *journalRig) checkInvariant() {
	r.t.Helper()
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if held := len(r.b.held()); r.b.journal.live != held {
		r.t.Fatalf("journal counts %d samples, memory holds %d", r.b.journal.live, held)
	}
}

// TestJournalRecoversWhatMemoryHeld: a crash with samples in memory, a
// batch of them in flight and partly taken by the receiver, loses none
// of those not taken; the next start commits them to the store, in
// order, and a clean stop leaves no journal behind.
func TestJournalRecoversWhatMemoryHeld(t *testing.T) {
	r := newJournalRig(t, Options{Capacity: 1000, MaxBatch: 8, Deadline: time.Hour})
	all := slices.Concat(r.append(5), r.append(5), r.append(5))
	l, err := r.b.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l.FromStore || l.Batch.Len() != 8 {
		t.Fatalf("lease of %d samples from the store %v; want 8 from memory", l.Batch.Len(), l.FromStore)
	}
	r.b.Taken(l, 3) // the receiver took the first 3 of a split batch
	r.checkInvariant()
	r.crash()

	r.open()
	if got, want := r.stored(), all[3:]; !slices.Equal(got, want) {
		t.Fatalf("store after the restart holds %v, want the %d samples not taken %v", got, len(want), want)
	}
	if n, _ := r.b.Journal(); n != len(all)-3 {
		t.Errorf("Journal reports %d samples given back, want %d", n, len(all)-3)
	}
	r.checkInvariant()
	// A second crash right away gives nothing back twice.
	r.crash()
	r.open()
	if got := r.stored(); !slices.Equal(got, all[3:]) {
		t.Fatalf("store after a second restart holds %v, want %v once", got, all[3:])
	}

	// A clean stop of an agent whose memory emptied removes the journal.
	r.b.Close()
	r.b = nil
	if left, _ := filepath.Glob(filepath.Join(r.jdir, "*")); len(left) != 0 {
		t.Errorf("journal files left after a clean stop: %v", left)
	}
}

// TestJournalStaysSmall: while memory never quite empties, the journal
// is rewritten with only what memory holds; once memory is empty it is
// empty too.
func TestJournalStaysSmall(t *testing.T) {
	r := newJournalRig(t, Options{Capacity: 100000, MaxBatch: 500, Deadline: time.Hour})
	ctx := context.Background()
	for range 400 {
		r.append(600)
		l, err := r.b.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.b.Ack(l); err != nil {
			t.Fatal(err)
		}
		if size := r.b.journal.size; size > 2*journalRewrite {
			t.Fatalf("journal of %d bytes while memory holds %d samples", size, len(r.b.held()))
		}
	}
	r.checkInvariant()
	for r.b.mem.len() > 0 {
		l, err := r.b.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r.b.Ack(l)
	}
	if fi, err := os.Stat(r.b.journal.path); err != nil || fi.Size() != 0 {
		t.Fatalf("journal with memory empty: %v %v, want an empty file", fi, err)
	}
}

// TestJournalRandomCrashes runs random appends, leases, partial takes,
// acks and spills, crashing at random: after every
// restart the store holds exactly the samples neither taken nor dropped,
// in the order they were appended.
func TestJournalRandomCrashes(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		r := newJournalRig(t, Options{Capacity: 40, MaxBatch: 16, Deadline: time.Hour})
		var want []int64 // samples not yet taken or dropped, oldest first
		var l *Lease
		// A part of a stored lease that the receiver took leaves the
		// store only with the lease's ack (Buffer.Taken): until then a
		// restart sends it again. takenStored counts it.
		takenStored := 0
		ctx := context.Background()
		for step := range 300 {
			switch op := rng.IntN(10); {
			case op < 4:
				want = append(want, r.append(1+rng.IntN(12))...)
			case op < 6 && l == nil:
				if r.b.mem.len() == 0 && r.b.store.Stats().Batches == 0 {
					continue
				}
				r.b.Drain() // hand out partial batches at once
				var err error
				if l, err = r.b.Next(ctx); err != nil {
					t.Fatalf("seed %d step %d: Next: %v", seed, step, err)
				}
				r.b.mu.Lock()
				r.b.draining = false
				r.b.mu.Unlock()
			case op == 6 && l != nil && l.Batch.Len() > 1:
				n := 1 + rng.IntN(l.Batch.Len()-1)
				if l.FromStore {
					takenStored += n
				} else {
					want = removeTaken(t, want, l.Batch.Samples[:n])
				}
				r.b.Taken(l, n)
			case op == 7 && l != nil:
				want = removeTaken(t, want[takenStored:], l.Batch.Samples)
				takenStored = 0
				if err := r.b.Ack(l); err != nil {
					t.Fatal(err)
				}
				l = nil
			case op == 8:
				if _, err := r.b.Spill(); err != nil {
					t.Fatal(err)
				}
				r.b.Resume()
			case op == 9:
				r.crash()
				r.open()
				l, takenStored = nil, 0
				// Everything not taken is in the store now, in order.
				if got := r.stored(); !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: store after a crash holds %v, want %v", seed, step, got, want)
				}
			}
			r.checkInvariant()
		}
		r.b.Close()
		r.b = nil
	}
}

// removeTaken removes the taken samples from want; they must be its
// oldest ones, or the buffer did not hand out the oldest first.
func removeTaken(t *testing.T, want []int64, taken []sample.Sample) []int64 {
	t.Helper()
	for i, s := range taken {
		if i >= len(want) || want[i] != s.T {
			t.Fatalf("taken sample %d has timestamp %d; the oldest held are %v", i, s.T, want[:min(len(want), 5)])
		}
	}
	return want[len(taken):]
}
