package buffer

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/internal/codec"
)

// TestFollowingChainsTheBacklog leases a backlog of sealed, merged and
// plain records the way a replaying sender does, each lease read with
// Following while the one before is "in flight" and acked after, with
// batches appended meanwhile and the first lease ending inside a segment:
// every sample must come out once, in order.
func TestFollowingChainsTheBacklog(t *testing.T) {
	store := sealingStore(t, filepath.Join(t.TempDir(), "b.bbolt"), StoreOptions{NoSync: true})
	next := 0 // the next batch id to append; batch i holds 3 samples at i*10
	appendN := func(n int) {
		for range n {
			if _, err := store.Append(batchtest.Small(next, 3, int64(next)*10)); err != nil {
				t.Fatal(err)
			}
			next++
		}
	}
	appendN(73)
	segments := 0
	if err := store.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
			if h, err := codec.ParseHeader(v); err == nil && h.Segment {
				segments++
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if segments < 2 || store.counts.tailBatches == 0 {
		t.Fatalf("%d segment records and %d batch records: the test needs both", segments, store.counts.tailBatches)
	}

	b := New(store, Options{Capacity: 1000, MaxBatch: 5, StoreBatch: 7})
	defer b.Close()
	ctx := context.Background()
	var got []int64 // sample timestamps, in the order leased
	l, err := b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for leases := 0; l != nil; leases++ {
		if !l.FromStore() {
			t.Fatalf("lease %d is not from the store", leases)
		}
		following, err := b.Following(l)
		if err != nil {
			t.Fatal(err)
		}
		if leases == 5 {
			appendN(4) // scrapes spilling while the backlog drains
		}
		for _, s := range l.Batch.Samples {
			got = append(got, s.T)
		}
		if err := b.Ack(l); err != nil {
			t.Fatal(err)
		}
		if following == nil && b.Stats().Store.Batches > 0 {
			// Appended after Following looked: Next finds them.
			if following, err = b.Next(ctx); err != nil {
				t.Fatal(err)
			}
		}
		l = following
	}
	if len(got) != 3*next {
		t.Fatalf("%d samples leased, want %d", len(got), 3*next)
	}
	for i, ts := range got {
		if want := int64(i/3)*10 + int64(i%3); ts != want {
			t.Fatalf("sample %d has timestamp %d, want %d: out of order, lost or repeated", i, ts, want)
		}
	}
	if st := b.Stats().Store; st.Batches != 0 {
		t.Errorf("store still holds %d batches", st.Batches)
	}
}

// TestFollowingNothing: a memory lease, and the last stored one, have no
// following lease.
func TestFollowingNothing(t *testing.T) {
	store := openT(t, filepath.Join(t.TempDir(), "b.bbolt"), StoreOptions{NoSync: true})
	b := New(store, Options{Capacity: 1000, MaxBatch: 3, StoreBatch: 3})
	defer b.Close()
	if _, err := store.Append(batchtest.Small(1, 3, 0)); err != nil {
		t.Fatal(err)
	}
	l, err := b.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if f, err := b.Following(l); f != nil || err != nil {
		t.Errorf("the only stored batch is followed by %v, %v", f, err)
	}
	if err := b.Ack(l); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(batchtest.Small(2, 3, 10)); err != nil {
		t.Fatal(err)
	}
	l, err = b.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l.FromStore() {
		t.Fatal("lease from the store, want memory")
	}
	if f, err := b.Following(l); f != nil || err != nil {
		t.Errorf("a memory lease is followed by %v, %v", f, err)
	}
}
