package buffer

import (
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// sealingStore opens path with sealing and merging at test sizes, so a
// few dozen small batches make segments, and a few segments a merge.
func sealingStore(t *testing.T, path string, opts StoreOptions) *Store {
	t.Helper()
	s := openT(t, path, opts)
	s.sealAt, s.mergeAt = 40, 3
	// OpenStore counted small segments by the default size: recount.
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		s.counts, err = scanCounts(tx, s.smallBelow())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recordKinds counts the batch records, small segments and merged
// segments in the file.
func recordKinds(t *testing.T, s *Store) (batches, small, merged int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
			h, err := codec.ParseHeader(v)
			switch {
			case err != nil:
				return err
			case !h.Segment:
				batches++
			case h.Samples < s.smallBelow():
				small++
			default:
				merged++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return batches, small, merged
}

// TestStoreSegmentsRandomOps runs random appends, peeks, deletes (many
// of them inside a segment), reopens, compactions and full disks against
// a store that seals and merges at test sizes. After every step the
// store must hold exactly the model's batches, in order, under the same
// sequence numbers, with counts equal to a rescan of the file.
func TestStoreSegmentsRandomOps(t *testing.T) {
	seeds, steps := 8, 1200
	if testing.Short() {
		seeds, steps = 2, 300
	}
	for seed := range seeds {
		t.Run(strconv.Itoa(seed), func(t *testing.T) {
			segmentOps(t, uint64(seed), steps)
		})
	}
}

func segmentOps(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	opts := testOptions()
	opts.MinFreeBytes = 1
	diskFull := false
	open := func() *Store { return withFakeDisk(sealingStore(t, path, opts), &diskFull) }
	s := open()
	var model []Record
	ts := t0
	events := map[string]int{}
	var sawSmall, sawMerged bool
	defrags := 0
	defer func() { t.Logf("seed %d: %v", seed, events) }()

	for step := range steps {
		var op string
		switch r := rng.IntN(100); {
		case r < 50:
			op = "append"
			ts += 1000
			b := batchtest.Small(step, 1+rng.IntN(12), ts)
			_, err := s.Append(b)
			switch {
			case diskFull && err != nil:
				op = "ErrNoSpace"
			case err != nil:
				t.Fatalf("step %d: append: %v", step, err)
			default:
				model = append(model, Record{Seq: s.LastSeq(), Batch: b})
			}
		case r < 72:
			op = "peek"
			max := 1 + rng.IntN(60)
			got, err := s.Peek(max)
			if err != nil {
				t.Fatalf("step %d: peek: %v", step, err)
			}
			want, total := []Record(nil), 0
			for _, m := range model {
				if len(want) > 0 && total+len(m.Batch.Samples) > max {
					break
				}
				want = append(want, m)
				total += len(m.Batch.Samples)
			}
			requireRecords(t, step, want, got)
		case r < 82:
			op = "delete"
			if len(model) == 0 {
				break
			}
			upTo := model[rng.IntN(len(model))].Seq
			if err := s.Delete(upTo); err != nil {
				t.Fatalf("step %d: delete: %v", step, err)
			}
			for len(model) > 0 && model[0].Seq <= upTo {
				model = model[1:]
			}
		case r < 90:
			op = "reopen"
			defrags += s.defrags
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open()
		case r < 96:
			op = "compact"
			if err := s.Compact(); err != nil {
				t.Fatal(err)
			}
		default:
			op = "disk"
			diskFull = rng.IntN(4) == 0
		}
		events[op]++
		if testing.Verbose() {
			b, sm, mg := recordKinds(t, s)
			t.Logf("step %d %s: %d batch records, %d small, %d merged; counts %+v", step, op, b, sm, mg, s.counts)
		}
		checkInvariants(t, s)
		st := s.Stats()
		var samples int64
		for _, m := range model {
			samples += int64(len(m.Batch.Samples))
		}
		if st.Batches != int64(len(model)) || st.Samples != samples {
			t.Fatalf("step %d (%s): stats %d batches %d samples, model %d and %d", step, op, st.Batches, st.Samples, len(model), samples)
		}
		_, small, merged := recordKinds(t, s)
		sawSmall, sawMerged = sawSmall || small > 0, sawMerged || merged > 0
	}
	// Everything left comes out whole.
	got, err := s.Peek(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	requireRecords(t, steps, model, got)
	if defrags += s.defrags; !sawSmall || !sawMerged || defrags == 0 {
		t.Errorf("the run never had a sealed (%v) and a merged (%v) segment, or a defragmentation (%d): the test did not test them",
			sawSmall, sawMerged, defrags)
	}
	events["defragment"] = defrags
}

func requireRecords(t *testing.T, step int, want, got []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("step %d: %d records, want %d", step, len(got), len(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq {
			t.Fatalf("step %d: record %d has seq %d, want %d", step, i, got[i].Seq, want[i].Seq)
		}
		if err := batchtest.Diff(want[i].Batch, got[i].Batch); err != nil {
			t.Fatalf("step %d: record %d (seq %d): %v", step, i, want[i].Seq, err)
		}
	}
}

// TestStoreSealShrinksAnOutage: an hour of one target at 1 s, appended
// as the agent spills it, takes about 2 bytes a sample once sealed and
// merged, against about 17 as batch records, and reads back exactly.
func TestStoreSealShrinksAnOutage(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), testOptions())
	var want []sample.Batch
	n := 0
	for i := range 3600 {
		b := batchtest.Redis(t0+int64(i)*1000, i)
		if _, err := s.Append(b); err != nil {
			t.Fatal(err)
		}
		want = append(want, b)
		n += len(b.Samples)
	}
	checkInvariants(t, s)
	perSample := float64(s.Stats().Bytes) / float64(n)
	batches, small, merged := recordKinds(t, s)
	t.Logf("%d samples: %.2f B/sample in %d batch records, %d small and %d merged segments", n, perSample, batches, small, merged)
	if merged == 0 || perSample > 2.5 {
		t.Errorf("%.2f B/sample with %d merged segments: sealing did not shrink the backlog", perSample, merged)
	}
	got, err := s.Peek(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d batches back, want %d", len(got), len(want))
	}
	for i := range want {
		if err := batchtest.Diff(want[i], got[i].Batch); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
}

// TestStoreSegmentCorruption flips a byte in a segment record: Peek
// quarantines the whole segment, counts it, and goes on with the rest.
func TestStoreSegmentCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	s := sealingStore(t, path, testOptions())
	for i := range 40 {
		if _, err := s.Append(batchtest.Small(i, 5, t0+int64(i)*1000)); err != nil {
			t.Fatal(err)
		}
	}
	_, small, merged := recordKinds(t, s)
	if small+merged == 0 {
		t.Fatal("no segment to corrupt")
	}
	// Flip a byte in the middle of the first segment record.
	var key uint64
	s.mu.Lock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			if h, _ := codec.ParseHeader(v); h.Segment && key == 0 {
				key = binary.BigEndian.Uint64(k)
				bad := append([]byte(nil), v...)
				bad[len(bad)/2] ^= 0x40
				return tx.Bucket(bucketRecords).Put(append([]byte(nil), k...), bad)
			}
			return nil
		})
	})
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	recs, err := s.Peek(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	if s.Quarantined() != 1 {
		t.Errorf("quarantined %d records, want the one segment", s.Quarantined())
	}
	after := s.Stats()
	if int64(len(recs)) != after.Batches || after.Batches >= before.Batches {
		t.Errorf("peeked %d batches; stats before %+v, after %+v", len(recs), before, after)
	}
	for _, r := range recs {
		if r.Seq >= key && r.Seq < key+uint64(before.Batches-after.Batches) {
			t.Errorf("batch %d of the corrupt segment was returned", r.Seq)
		}
	}
	checkInvariants(t, s)
}
