package buffer

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// TestReleaseHandsOutTheSameBatchAgain: a sender replaced mid-delivery
// gives its lease back, and the next sender gets that very batch first.
func TestReleaseHandsOutTheSameBatchAgain(t *testing.T) {
	store, _, err := OpenStore(filepath.Join(t.TempDir(), "b.bbolt"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := New(store, Options{Capacity: 100000, MaxBatch: 10})
	defer b.Close()
	for i := range 4 {
		if _, err := b.Append(batchtest.Redis(int64(i)*1000, i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	first, err := b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Next(ctx); err == nil {
		t.Fatal("a second Next before Ack or Release must fail")
	}
	b.Release(first)
	again, err := b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Fatalf("after Release, Next handed out another batch: %v, want %v", again.Batch.Samples, first.Batch.Samples)
	}
	if err := b.Ack(again); err != nil {
		t.Fatal(err)
	}
	next, err := b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := next.Batch.Samples[0], first.Batch.Samples[0]; a.T == b.T && labels.Equal(a.Labels, b.Labels) {
		t.Fatal("the acked batch came back")
	}
}

// TestBacklogLeasesTakeStoreBatch: a lease from the store (a backlog being
// replayed) holds up to StoreBatch samples, whole batches, while live
// leases keep to MaxBatch.
func TestBacklogLeasesTakeStoreBatch(t *testing.T) {
	store, _, err := OpenStore(filepath.Join(t.TempDir(), "b.bbolt"), StoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := store.Append(batchtest.Redis(int64(i)*1000, i)); err != nil { // 300 samples each
			t.Fatal(err)
		}
	}
	b := New(store, Options{Capacity: 100000, MaxBatch: 500, StoreBatch: 2000})
	defer b.Close()
	l, err := b.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !l.FromStore() || l.Batch.Len() != 1800 {
		t.Fatalf("lease from the store of %d samples (from store %v), want 6 whole batches, 1800", l.Batch.Len(), l.FromStore())
	}
}

// TestTakenLeavesOnlyTheRest: once the receiver took the first part of a
// lease, the part it took is neither handed out again nor spilled to disk
// when the endpoint goes down.
func TestTakenLeavesOnlyTheRest(t *testing.T) {
	store, _, err := OpenStore(filepath.Join(t.TempDir(), "b.bbolt"), StoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	b := New(store, Options{Capacity: 100000, MaxBatch: 100})
	defer b.Close()
	all := batchtest.Redis(0, 0).Samples // 300: a lease of 100, 200 left in memory
	if _, err := b.Append(batchtest.Redis(0, 0)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rest := all[40:100]
	b.Taken(l, 40)
	b.Release(l)
	again, err := b.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(again.Batch.Samples, rest, sameSample) {
		t.Fatalf("after Taken(40), Next handed out %d samples, want the %d not taken", again.Batch.Len(), len(rest))
	}
	if _, err := b.Spill(); err != nil {
		t.Fatal(err)
	}
	recs, err := store.Peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	var spilled []sample.Sample
	for _, r := range recs {
		spilled = append(spilled, r.Batch.Samples...)
	}
	if !slices.EqualFunc(spilled, all[40:], sameSample) {
		t.Fatalf("spilled %d samples, want the %d not taken and the %d still in memory", len(spilled), len(rest), len(all)-100)
	}
}

func sameSample(a, b sample.Sample) bool {
	return a.T == b.T && a.V == b.V && labels.Equal(a.Labels, b.Labels)
}
