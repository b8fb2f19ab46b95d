package buffer

import (
	"testing"

	"github.com/redwire/redwire/internal/batchtest"
)

// readAll is every record ReadStore finds in the file at path.
func readAll(t *testing.T, path string, opts ReadOptions) (recs []FileRecord, snapshot bool, quarantined int64) {
	t.Helper()
	snapshot, quarantined, err := ReadStore(path, opts, func(r FileRecord) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs, snapshot, quarantined
}

// TestReadStoreSealedAndAcknowledged: ReadStore reads a store of batch
// records and small and merged segments, the first partly acknowledged,
// as the batches Peek would lease, under the same sequence numbers; the
// same while the store is open (a snapshot) and once it is closed; and
// DeleteRecords removes whole records.
func TestReadStoreSealedAndAcknowledged(t *testing.T) {
	path := EndpointFile(t.TempDir(), "a").Path
	s := sealingStore(t, path, testOptions())
	for i := range 60 {
		mustAppend(t, s, batchtest.Small(i, 5, t0+int64(i)*1000))
	}
	if _, small, merged := recordKinds(t, s); small == 0 || merged == 0 {
		t.Fatalf("%d small and %d merged segments, want some of each", small, merged)
	}
	if err := s.Delete(4); err != nil { // into the first segment
		t.Fatal(err)
	}
	want := peekAll(t, s)
	st := s.Stats()
	check := func(name string, recs []FileRecord) {
		t.Helper()
		var got []Record
		var bytes int64
		for i, r := range recs {
			if r.Err != nil {
				t.Fatalf("%s: record %d: %v", name, i, r.Err)
			}
			if len(r.Batches) > 0 && (r.Batches[0].Seq < r.Key || r.MinT > r.Batches[0].Batch.Samples[0].T) {
				t.Errorf("%s: record %d (key %d, from %d) starts with batch %d", name, i, r.Key, r.MinT, r.Batches[0].Seq)
			}
			got = append(got, r.Batches...)
			bytes += r.Bytes
		}
		requireRecords(t, 0, want, got)
		if bytes != st.Bytes {
			t.Errorf("%s: records of %d bytes, Stats says %d", name, bytes, st.Bytes)
		}
	}
	live, snapshot, q := readAll(t, path, ReadOptions{TempDir: t.TempDir()})
	if !snapshot || q != 0 {
		t.Fatalf("open store read with snapshot=%v, %d quarantined", snapshot, q)
	}
	check("snapshot", live)
	var held []FileRecord
	if err := s.Read(func(r FileRecord) error { held = append(held, r); return nil }); err != nil {
		t.Fatal(err)
	}
	check("Store.Read", held)

	// The first record (partly acknowledged) and the last go whole.
	if err := s.DeleteRecords([]uint64{held[0].Key, held[len(held)-1].Key}); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
	want = want[len(held[0].Batches) : len(want)-len(held[len(held)-1].Batches)]
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st.Bytes -= held[0].Bytes + held[len(held)-1].Bytes
	locked, snapshot, _ := readAll(t, path, ReadOptions{})
	if snapshot {
		t.Fatal("closed store read from a snapshot")
	}
	check("locked", locked)
}
