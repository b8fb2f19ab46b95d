package buffer

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// t0 is the time (ms) the test batches count from.
const t0 = batchtest.T0

// testOptions are fast options for tests that do not test durability or
// free space: no fsync, no statfs check. Thinning is off: the tests of
// max_bytes model its drops, oldest first; thin_test.go turns it on.
func testOptions() StoreOptions {
	return StoreOptions{NoSync: true, LockTimeout: 100 * time.Millisecond, MinFreeBytes: -1, ThinFloor: -1}
}

// openT opens a store that must open cleanly and closes it at cleanup.
func openT(t testing.TB, path string, opts StoreOptions) *Store {
	t.Helper()
	s, info, err := OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if info.MovedAside != "" {
		t.Fatalf("OpenStore moved a good file aside: %+v", info)
	}
	t.Cleanup(func() { _ = s.Close() })
	checkInvariants(t, s)
	return s
}

// recordSize is the stored size of b.
func recordSize(b sample.Batch) int64 {
	var enc codec.BatchEncoder
	return int64(len(codec.AppendRecord(nil, &enc, &b, codec.HeaderOf(&b))))
}

// checkInvariants checks the Store's documented invariants against a full
// rescan of its file: the O(1) counts equal what the headers say, the
// sequence counter is ahead of every key, and the file is still one that
// OpenStore would accept.
func checkInvariants(t testing.TB, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c, parked, next, err := scanFile(tx, s.path, s.smallBelow())
		if err != nil {
			return err
		}
		if c.normal() != s.counts.normal() {
			return fmt.Errorf("counts in memory %+v, rescan %+v", s.counts, c)
		}
		if !slices.Equal(parked, s.parked) {
			return fmt.Errorf("parked index in memory %+v, rescan %+v", s.parked, parked)
		}
		if p := s.counts.parked; s.opts.MaxBytes > 0 && c.bytes+p.bytes > s.opts.MaxBytes {
			return fmt.Errorf("%d record bytes and %d parked over MaxBytes %d", c.bytes, p.bytes, s.opts.MaxBytes)
		}
		if next > s.next {
			return fmt.Errorf("file needs next sequence number >= %d, store has %d", next, s.next)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("invariant broken: %v", err)
	}
}

// dump is the logical content of the file and the store's state, to
// compare before and after an operation that must change nothing.
func dump(t testing.TB, s *Store) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.New()
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				fmt.Fprintf(h, "%s/%x=%x\n", name, k, v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x counts=%+v next=%d q=%d", h.Sum(nil), s.counts, s.next, s.quarantined)
}

func peekAll(t testing.TB, s *Store) []Record {
	t.Helper()
	recs, err := s.Peek(math.MaxInt)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func seqs(recs []Record) []uint64 {
	var out []uint64
	for _, r := range recs {
		out = append(out, r.Seq)
	}
	return out
}

func mustAppend(t testing.TB, s *Store, b sample.Batch) []Dropped {
	t.Helper()
	d, err := s.Append(b)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
	return d
}

func TestStoreOrderAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	s := openT(t, path, testOptions())
	var want []sample.Batch
	for i := range 10 {
		b := batchtest.Small(i, 1+i%4, t0+int64(i)*1000)
		want = append(want, b)
		mustAppend(t, s, b)
		if got := s.LastSeq(); got != uint64(i+1) {
			t.Fatalf("LastSeq = %d after %d appends", got, i+1)
		}
	}
	recs := peekAll(t, s)
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("Peek seqs %v, want 1..10", seqs(recs))
		}
		batchtest.RequireEqual(t, want[i], r.Batch)
	}
	if err := s.Delete(4); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, path, testOptions())
	recs = peekAll(t, s)
	if fmt.Sprint(seqs(recs)) != "[5 6 7 8 9 10]" {
		t.Fatalf("after reopen Peek seqs %v, want [5 .. 10]", seqs(recs))
	}
	for _, r := range recs {
		batchtest.RequireEqual(t, want[r.Seq-1], r.Batch)
	}
	if st := s.Stats(); st.Batches != 6 || st.OldestT != t0+4000 {
		t.Fatalf("Stats after reopen = %+v", st)
	}
	mustAppend(t, s, batchtest.Small(10, 2, t0+10_000))
	if got := s.LastSeq(); got != 11 {
		t.Fatalf("Seq after reopen = %d, want 11", got)
	}

	// Draining everything must not make the sequence restart.
	if err := s.Delete(11); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Batches != 0 || st.Samples != 0 || st.Bytes != 0 || st.OldestT != 0 {
		t.Fatalf("Stats of a drained store = %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, path, testOptions())
	mustAppend(t, s, batchtest.Small(11, 1, t0+11_000))
	if got := s.LastSeq(); got != 12 {
		t.Fatalf("Seq after draining and reopening = %d, want 12", got)
	}
}

func TestStorePeekWholeRecords(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), testOptions())
	if recs, err := s.Peek(100); err != nil || len(recs) != 0 {
		t.Fatalf("Peek of an empty store = %v, %v", recs, err)
	}
	for i, n := range []int{5, 3, 4, 10} {
		mustAppend(t, s, batchtest.Small(i, n, t0))
	}
	for _, tc := range []struct {
		max  int
		want string
	}{
		{0, "[1]"}, // at least one record, even if it alone is too large
		{4, "[1]"},
		{5, "[1]"},
		{7, "[1]"},
		{8, "[1 2]"},
		{11, "[1 2]"}, // 5+3+4=12 > 11: whole records only
		{12, "[1 2 3]"},
		{1000, "[1 2 3 4]"},
	} {
		recs, err := s.Peek(tc.max)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(seqs(recs)); got != tc.want {
			t.Errorf("Peek(%d) = %s, want %s", tc.max, got, tc.want)
		}
	}
	// Peek does not remove.
	if st := s.Stats(); st.Batches != 4 || st.Samples != 22 {
		t.Fatalf("Stats after Peeks = %+v", st)
	}
}

func TestStoreEmptyBatchIsNotStored(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), testOptions())
	d, err := s.Append(sample.Batch{Metadata: []sample.Metadata{{Family: "x"}}})
	if err != nil || d != nil {
		t.Fatalf("Append(empty) = %v, %v", d, err)
	}
	if st, seq := s.Stats(), s.LastSeq(); st.Batches != 0 || seq != 0 {
		t.Fatalf("empty batch stored: %+v, LastSeq %d", st, seq)
	}
}

func TestStoreFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "ep.bbolt")
	openT(t, path, testOptions())
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestStoreMaxBytes(t *testing.T) {
	// Equal batches make equal records; Seq tells them apart.
	batch := func(_, n int) sample.Batch { return batchtest.Small(0, n, t0) }
	size := recordSize(batch(0, 3))
	double := batch(4, 6)
	if ds := recordSize(double); ds <= size || ds > 2*size {
		t.Fatalf("a 6-sample record is %d bytes, 3-sample %d: the test needs between 1 and 2 times", ds, size)
	}
	opts := testOptions()
	opts.MaxBytes = 3 * size
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), opts)
	for i := range 3 {
		if d := mustAppend(t, s, batch(i, 3)); d != nil {
			t.Fatalf("append %d under the cap dropped %v", i, d)
		}
	}
	if st := s.Stats(); st.Bytes != 3*size {
		t.Fatalf("Bytes = %d, want %d", st.Bytes, 3*size)
	}
	d := mustAppend(t, s, batch(3, 3))
	if fmt.Sprint(counted(t, d)) != "[{buffer_full 3 1 false}]" {
		t.Fatalf("Dropped = %v, want one batch of 3 samples", d)
	}
	// A record of more than one but at most two records' size evicts two.
	d = mustAppend(t, s, double)
	if fmt.Sprint(counted(t, d)) != "[{buffer_full 6 2 false}]" {
		t.Fatalf("Dropped = %v, want two batches of 3 samples", d)
	}
	if got := fmt.Sprint(seqs(peekAll(t, s))); got != "[4 5]" {
		t.Fatalf("left %s, want the newest [4 5]", got)
	}
	// A batch that alone exceeds the cap is dropped at once, evicting
	// nothing, and still takes a sequence number.
	d = mustAppend(t, s, batchtest.Small(9, 40, t0))
	if fmt.Sprint(counted(t, d)) != "[{buffer_full 40 1 false}]" {
		t.Fatalf("Dropped = %v for an oversized batch", d)
	}
	if got := fmt.Sprint(seqs(peekAll(t, s))); got != "[4 5]" || s.LastSeq() != 6 {
		t.Fatalf("after an oversized batch: %s, LastSeq %d", got, s.LastSeq())
	}
}

func TestStoreMaxAge(t *testing.T) {
	now := time.UnixMilli(t0)
	opts := testOptions()
	opts.MaxAge = time.Hour
	opts.Now = func() time.Time { return now }
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), opts)

	// Records 1..3 have newest samples at t0, t0+10min, t0+20min.
	for i := range 3 {
		mustAppend(t, s, batchtest.Small(i, 2, t0+int64(i)*600_000))
	}
	if d, err := s.Expire(); err != nil || d.Batches != 0 || d.Reason != DropTooOld {
		t.Fatalf("Expire with nothing old = %+v, %v", d, err)
	}
	// Records 1 (newest sample t0+1) and 2 (t0+600_001) are now more
	// than an hour old.
	now = time.UnixMilli(t0 + 600_002).Add(time.Hour)
	d, err := s.Expire()
	if err != nil || d.Reason != DropTooOld || d.Samples != 4 || d.Batches != 2 || spanSamples(d.Spans) != 4 {
		t.Fatalf("Expire = %+v, %v; want 2 batches of 2", d, err)
	}
	checkInvariants(t, s)
	if st := s.Stats(); st.Batches != 1 || st.OldestT != t0+1_200_000 {
		t.Fatalf("Stats after Expire = %+v", st)
	}

	// Append expires too, in the same transaction.
	now = now.Add(time.Hour)
	ds := mustAppend(t, s, batchtest.Small(5, 1, now.UnixMilli()))
	if fmt.Sprint(counted(t, ds)) != "[{too_old 2 1 false}]" {
		t.Fatalf("Append dropped %v, want record 3", ds)
	}
	// A batch already too old is not stored.
	ds = mustAppend(t, s, batchtest.Small(6, 3, now.Add(-2*time.Hour).UnixMilli()))
	if fmt.Sprint(counted(t, ds)) != "[{too_old 3 1 false}]" {
		t.Fatalf("Append of an old batch dropped %v", ds)
	}
	if got := fmt.Sprint(seqs(peekAll(t, s))); got != "[4]" {
		t.Fatalf("left %s, want [4]", got)
	}
}

func TestStoreLocked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ep.bbolt")
	s := openT(t, path, testOptions())
	mustAppend(t, s, batchtest.Small(1, 1, t0))

	_, info, err := OpenStore(path, testOptions())
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second OpenStore = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another redwire") {
		t.Errorf("ErrLocked message does not name the path and the likely cause: %v", err)
	}
	if info.MovedAside != "" {
		t.Fatalf("a locked file was moved aside: %+v", info)
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("corrupt files appeared: %v", m)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, path, testOptions())
	if st := s.Stats(); st.Batches != 1 {
		t.Fatalf("after the lock was released: %+v", st)
	}
}

// TestDropIfAnyKeepsEverySpan: two drops of one reason merged into one
// count keep both drops' lost ranges, each its own.
func TestDropIfAnyKeepsEverySpan(t *testing.T) {
	a := Dropped{Reason: DropBufferFull, Samples: 2, Batches: 1, Spans: []sample.Span{{Target: "x", From: 1, To: 2, Samples: 2}}}
	b := Dropped{Reason: DropBufferFull, Samples: 3, Batches: 1, Spans: []sample.Span{{Target: "x", From: 10, To: 12, Samples: 3}}}
	got := dropIfAny(a, b)
	if len(got) != 1 || got[0].Samples != 5 || len(got[0].Spans) != 2 || got[0].Spans[1] != b.Spans[0] {
		t.Fatalf("dropIfAny(%v, %v) = %v; want one drop of 5 samples with both spans", a, b, got)
	}
}
