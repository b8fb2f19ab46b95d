package buffer

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// TestLiveFirstTwoStreams: with SetLiveFirst, appends stay in memory
// behind a backlog and NextLive leases them while a lease of the backlog
// is out. When the endpoint goes down with a memory lease in flight, the
// rest of memory spills behind the backlog, but the lease stays in memory:
// acking it must not ack the backlog before it (a store lease acks up to
// its last record). In the end every sample comes out once, each stream
// in order.
func TestLiveFirstTwoStreams(t *testing.T) {
	store := openT(t, filepath.Join(t.TempDir(), "b.bbolt"), StoreOptions{NoSync: true})
	for i := range 3 { // the backlog: timestamps 0..32
		if _, err := store.Append(batchtest.Small(i, 3, int64(i)*10)); err != nil {
			t.Fatal(err)
		}
	}
	b := New(store, Options{Capacity: 1000, MaxBatch: 3, StoreBatch: 3})
	defer b.Close()
	b.SetLiveFirst(true)
	ctx := context.Background()
	var live, backlog []int64
	take := func(l *Lease, into *[]int64) {
		t.Helper()
		for _, s := range l.Batch.Samples {
			*into = append(*into, s.T)
		}
		if err := b.Ack(l); err != nil {
			t.Fatal(err)
		}
	}

	mustAppendBuf(t, b, batchtest.Small(10, 3, 100))
	if st := b.Stats(); st.MemorySamples != 3 || st.Store.Batches != 3 {
		t.Fatalf("after an append behind a backlog: %+v; want it in memory", st)
	}
	stored, err := b.Next(ctx) // the backlog's head, in flight
	if err != nil || !stored.FromStore() {
		t.Fatalf("Next: %v %v; want the backlog's head", stored, err)
	}
	fresh, err := b.NextLive(ctx) // beside it
	if err != nil || fresh.FromStore() || fresh.Batch.Samples[0].T != 100 {
		t.Fatalf("NextLive: %+v %v; want the fresh batch", fresh, err)
	}
	take(stored, &backlog)

	// The endpoint goes down with the fresh lease in flight.
	mustAppendBuf(t, b, batchtest.Small(11, 3, 110))
	if _, err := b.Spill(); err != nil {
		t.Fatal(err)
	}
	mustAppendBuf(t, b, batchtest.Small(12, 3, 120)) // degraded: to the store
	if st := b.Stats(); st.MemorySamples != 3 || st.Store.Batches != 4 {
		t.Fatalf("after the spill: %+v; want the lease in flight in memory, the rest behind the backlog", st)
	}
	take(fresh, &live)
	if st := b.Stats(); st.Store.Batches != 4 {
		t.Fatalf("acking the fresh lease left %d stored batches, want 4: it acked the backlog", st.Store.Batches)
	}
	b.Resume()
	for {
		l, err := b.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		take(l, &backlog)
		if b.Stats().Store.Batches == 0 {
			break
		}
	}
	if want := []int64{100, 101, 102}; !slices.Equal(live, want) {
		t.Errorf("live stream %v, want %v", live, want)
	}
	if want := []int64{0, 1, 2, 10, 11, 12, 20, 21, 22, 110, 111, 112, 120, 121, 122}; !slices.Equal(backlog, want) {
		t.Errorf("backlog stream %v, want %v", backlog, want)
	}
}

// TestLiveFirstOffKeepsFIFO: without SetLiveFirst, or after it is
// turned off, an append behind a backlog goes to the store behind it.
func TestLiveFirstOffKeepsFIFO(t *testing.T) {
	store := openT(t, filepath.Join(t.TempDir(), "b.bbolt"), StoreOptions{NoSync: true})
	if _, err := store.Append(batchtest.Small(0, 3, 0)); err != nil {
		t.Fatal(err)
	}
	b := New(store, Options{Capacity: 1000, MaxBatch: 3})
	defer b.Close()
	b.SetLiveFirst(true)
	b.SetLiveFirst(false)
	mustAppendBuf(t, b, batchtest.Small(1, 3, 10))
	if st := b.Stats(); st.MemorySamples != 0 || st.Store.Batches != 2 {
		t.Errorf("append behind a backlog without live first: %+v; want it in the store", st)
	}
}

func mustAppendBuf(t *testing.T, b *Buffer, batch sample.Batch) {
	t.Helper()
	if ds, err := b.Append(batch); err != nil || len(ds) > 0 {
		t.Fatalf("append: dropped %v, %v", ds, err)
	}
}

// TestLiveFirstJournalKeepsTheLeaseInFlight: the memory lease kept in
// memory while the rest spills behind a backlog stays in the crash
// journal, and only it: a crash then loses none of it, and stores nothing
// twice.
func TestLiveFirstJournalKeepsTheLeaseInFlight(t *testing.T) {
	r := newJournalRig(t, Options{Capacity: 1000, MaxBatch: 3})
	r.b.SetLiveFirst(true)
	r.b.Spill() // an outage: a backlog
	backlog := r.append(3)
	r.b.Resume()
	fresh := r.append(3)
	l, err := r.b.NextLive(context.Background())
	if err != nil || !slices.Equal(sampleTs(l), fresh) {
		t.Fatalf("NextLive: %v %v; want %v", l, err, fresh)
	}
	behind := r.append(2)
	if _, err := r.b.Spill(); err != nil {
		t.Fatal(err)
	}
	r.checkInvariant()
	r.crash()
	r.open()
	if got, want := r.stored(), slices.Concat(backlog, behind, fresh); !slices.Equal(got, want) {
		t.Errorf("stored after the crash: %v, want the backlog, what spilled behind it, then the lease in flight: %v", got, want)
	}
}

func sampleTs(l *Lease) []int64 {
	var ts []int64
	for _, s := range l.Batch.Samples {
		ts = append(ts, s.T)
	}
	return ts
}
