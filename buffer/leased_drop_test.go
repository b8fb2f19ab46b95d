package buffer

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/batchtest"
)

// TestDropOfALeasedBatchIsNotCountedTwice: while an endpoint is down its
// probe batch is leased from the head of the store, where max_bytes
// drops. The drop of the leased records is not counted while the lease
// may still deliver them: an ack (the probe got through) means they were
// sent, not dropped; a release (the sender stopped) counts them then.
// Either way every sample is counted once: sent, dropped or held.
func TestDropOfALeasedBatchIsNotCountedTwice(t *testing.T) {
	for _, end := range []string{"ack", "release"} {
		t.Run(end, func(t *testing.T) {
			store, _, err := OpenStore(filepath.Join(t.TempDir(), "b.bbolt"), StoreOptions{NoSync: true, MaxBytes: 6 << 10})
			if err != nil {
				t.Fatal(err)
			}
			b := New(store, Options{Capacity: 1000, MaxBatch: 20, StoreBatch: 20, Deadline: time.Hour})
			defer b.Close()
			if _, err := b.Spill(); err != nil { // the endpoint is down: appends go to the store
				t.Fatal(err)
			}
			appended, dropped := 0, 0
			add := func(i int) {
				batch := batchtest.Small(i, 20, batchtest.T0+int64(i)*1000)
				ds, err := b.Append(batch)
				if err != nil {
					t.Fatal(err)
				}
				appended += batch.Len()
				for _, d := range ds {
					dropped += d.Samples
				}
			}
			add(0)
			probe, err := b.Next(context.Background())
			if err != nil || !probe.FromStore() {
				t.Fatalf("probe lease: %+v %v", probe, err)
			}
			for i := 1; b.store.Stats().Batches > 0 && dropped == 0 && len(b.leasedDrops) == 0 && i < 1000; i++ {
				add(i)
			}
			if len(b.leasedDrops) == 0 {
				t.Fatalf("max_bytes never dropped the leased head (%d samples appended, %d dropped)", appended, dropped)
			}
			sent := 0
			switch end {
			case "ack": // the probe got through
				sent = probe.Batch.Len()
				if err := b.Ack(probe); err != nil {
					t.Fatal(err)
				}
			case "release": // the sender stopped; nobody sends these now
				for _, d := range b.Release(probe) {
					dropped += d.Samples
				}
			}
			held := int(b.Stats().Store.Samples)
			if sent+dropped+held != appended {
				t.Errorf("appended %d samples: sent %d + dropped %d + held %d = %d", appended, sent, dropped, held, sent+dropped+held)
			}
		})
	}
}
