package buffer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/sample"
)

// t0 is an arbitrary scrape time (ms) the tests count from.
const t0 = int64(1_700_000_000_000)

// testOptions are fast options for tests that do not test durability or
// free space: no fsync, no statfs check.
func testOptions() StoreOptions {
	return StoreOptions{NoSync: true, LockTimeout: 100 * time.Millisecond, MinFreeBytes: -1}
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

// smallBatch has n samples at t, t+1, ... with values seeded by id, so a
// test can tell batches apart.
func smallBatch(id, n int, t int64) sample.Batch {
	var b sample.Batch
	for i := range n {
		b.Samples = append(b.Samples, sample.Sample{
			Labels: labels.FromStrings("__name__", "redis_test", "batch", strconv.Itoa(id), "i", strconv.Itoa(i)),
			T:      t + int64(i),
			V:      float64(id*1000 + i),
		})
	}
	return b
}

// recordSize is the stored size of b.
func recordSize(b sample.Batch) int64 {
	var enc batchEncoder
	return int64(len(appendRecord(nil, &enc, &b, headerOf(&b))))
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
		c, next, err := scanFile(tx, s.path)
		if err != nil {
			return err
		}
		if c != s.counts {
			return fmt.Errorf("counts in memory %+v, rescan %+v", s.counts, c)
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
		b := smallBatch(i, 1+i%4, t0+int64(i)*1000)
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
		requireBatchEqual(t, want[i], r.Batch)
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
		requireBatchEqual(t, want[r.Seq-1], r.Batch)
	}
	if st := s.Stats(); st.Batches != 6 || st.OldestT != t0+4000 {
		t.Fatalf("Stats after reopen = %+v", st)
	}
	mustAppend(t, s, smallBatch(10, 2, t0+10_000))
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
	mustAppend(t, s, smallBatch(11, 1, t0+11_000))
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
		mustAppend(t, s, smallBatch(i, n, t0))
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

// TestStoreDurable: what Append returned for is in the file, for a clean
// Close and for a process that never closed it.
func TestStoreDurable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ep.bbolt")
	opts := testOptions()
	opts.NoSync = false
	s, _, err := OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustAppend(t, s, redisBatch(t0+int64(i)*1000, i))
	}

	// A copy taken while the store is open and never closed is what the
	// filesystem holds if the process dies now: every committed page was
	// written with pwrite before Append returned. (It says nothing about
	// power loss, which rests on fsync and cannot be tested here.)
	crashed := filepath.Join(dir, "crashed.bbolt")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crashed, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	c := openT(t, crashed, opts)
	if got := seqs(peekAll(t, c)); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("copy of an open store holds %v", got)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, path, opts)
	recs := peekAll(t, s)
	if len(recs) != 5 {
		t.Fatalf("after Close and reopen: %v", seqs(recs))
	}
	for i, r := range recs {
		requireBatchEqual(t, redisBatch(t0+int64(i)*1000, i), r.Batch)
	}
}

// killChildEnv names the store a TestStoreKill9Child process appends to.
const killChildEnv = "REDWIRE_TEST_KILL9_STORE"

// killBatch is the batch with sequence number seq in the kill -9 test.
func killBatch(seq uint64) sample.Batch { return redisBatch(t0+int64(seq)*1000, int(seq)) }

// TestStoreKill9Child is the process TestStoreKill9 kills; run alone it
// does nothing.
func TestStoreKill9Child(t *testing.T) {
	path := os.Getenv(killChildEnv)
	if path == "" {
		return
	}
	opts := testOptions()
	opts.NoSync = false
	s, _, err := OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := s.Append(killBatch(s.LastSeq() + 1)); err != nil {
			t.Fatal(err)
		}
		// Printed only once Append has returned: the parent may rely on
		// every printed record.
		fmt.Printf("appended %d\n", s.LastSeq())
	}
}

// TestStoreKill9 kills a process with SIGKILL while it appends, most likely
// mid-commit, several times over the same file, and checks each time that
// every record it reported is there, in order and intact, and that nothing
// half-written shows up.
func TestStoreKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	var reported uint64
	for round := range 4 {
		reported = killChild(t, path, reported+uint64(10+round*7))

		s := openT(t, path, testOptions())
		recs := peekAll(t, s)
		if uint64(len(recs)) < reported {
			t.Fatalf("round %d: %d records after kill -9, child had reported %d", round, len(recs), reported)
		}
		for i, r := range recs {
			if r.Seq != uint64(i+1) {
				t.Fatalf("round %d: record %d has Seq %d: gap or reorder", round, i, r.Seq)
			}
			requireBatchEqual(t, killBatch(r.Seq), r.Batch)
		}
		if q := s.Quarantined(); q != 0 {
			t.Fatalf("round %d: %d records quarantined after kill -9", round, q)
		}
		t.Logf("round %d: killed after %d reported appends; %d records in the file", round, reported, len(recs))
		reported = uint64(len(recs))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// killChild runs TestStoreKill9Child on path until it reports record
// until, then kills it with SIGKILL and returns the last record reported.
func killChild(t *testing.T, path string, until uint64) uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var last uint64
	sc := bufio.NewScanner(out)
	for last < until && sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "appended "); ok {
			last, _ = strconv.ParseUint(n, 10, 64)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if last < until {
		t.Fatalf("child reported only up to record %d", last)
	}
	return last
}

func TestStoreMaxBytes(t *testing.T) {
	// Equal batches make equal records; Seq tells them apart.
	batch := func(_, n int) sample.Batch { return smallBatch(0, n, t0) }
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
	if fmt.Sprint(d) != "[{buffer_full 3 1}]" {
		t.Fatalf("Dropped = %v, want one batch of 3 samples", d)
	}
	// A record of more than one but at most two records' size evicts two.
	d = mustAppend(t, s, double)
	if fmt.Sprint(d) != "[{buffer_full 6 2}]" {
		t.Fatalf("Dropped = %v, want two batches of 3 samples", d)
	}
	if got := fmt.Sprint(seqs(peekAll(t, s))); got != "[4 5]" {
		t.Fatalf("left %s, want the newest [4 5]", got)
	}
	// A batch that alone exceeds the cap is dropped at once, evicting
	// nothing, and still takes a sequence number.
	d = mustAppend(t, s, smallBatch(9, 40, t0))
	if fmt.Sprint(d) != "[{buffer_full 40 1}]" {
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
		mustAppend(t, s, smallBatch(i, 2, t0+int64(i)*600_000))
	}
	if d, err := s.Expire(); err != nil || d.Batches != 0 || d.Reason != DropTooOld {
		t.Fatalf("Expire with nothing old = %+v, %v", d, err)
	}
	// Records 1 (newest sample t0+1) and 2 (t0+600_001) are now more
	// than an hour old.
	now = time.UnixMilli(t0 + 600_002).Add(time.Hour)
	d, err := s.Expire()
	if err != nil || d != (Dropped{Reason: DropTooOld, Samples: 4, Batches: 2}) {
		t.Fatalf("Expire = %+v, %v; want 2 batches of 2", d, err)
	}
	checkInvariants(t, s)
	if st := s.Stats(); st.Batches != 1 || st.OldestT != t0+1_200_000 {
		t.Fatalf("Stats after Expire = %+v", st)
	}

	// Append expires too, in the same transaction.
	now = now.Add(time.Hour)
	ds := mustAppend(t, s, smallBatch(5, 1, now.UnixMilli()))
	if fmt.Sprint(ds) != "[{too_old 2 1}]" {
		t.Fatalf("Append dropped %v, want record 3", ds)
	}
	// A batch already too old is not stored.
	ds = mustAppend(t, s, smallBatch(6, 3, now.Add(-2*time.Hour).UnixMilli()))
	if fmt.Sprint(ds) != "[{too_old 3 1}]" {
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
	mustAppend(t, s, smallBatch(1, 1, t0))

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

// storeFile writes a store with n records to a fresh file and returns its
// path and bytes.
func storeFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	s := openT(t, path, testOptions())
	for i := range n {
		mustAppend(t, s, redisBatch(t0+int64(i)*1000, i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, raw
}

// highWaterMark is the end of the last page a bbolt file uses; bbolt
// grows files ahead of use, so the file may be longer.
func highWaterMark(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	err = db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return int(size)
}

// branchPage returns the number of a branch page in a bbolt file.
func branchPage(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	page := -1
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; page < 0; id++ {
			info, err := tx.Page(id)
			if info == nil || err != nil {
				return fmt.Errorf("no branch page: %v", err)
			}
			if info.Type == "branch" {
				page = id
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// corruptEvery applies damage to every copy of rec in raw: bbolt copies on
// write, so stale copies of a record may sit in free pages beside the live
// one.
func corruptEvery(t *testing.T, raw, rec []byte, damage func(at []byte)) {
	t.Helper()
	n := 0
	for off := 0; ; n++ {
		i := bytes.Index(raw[off:], rec)
		if i < 0 {
			break
		}
		damage(raw[off+i : off+i+len(rec)])
		off += i + len(rec)
	}
	if n == 0 {
		t.Fatal("record not found in the file")
	}
}

// requireMovedAside opens a corrupt file and checks that it was moved
// aside unchanged and that the fresh store works.
func requireMovedAside(t *testing.T, path string, content []byte) {
	t.Helper()
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	opts := testOptions()
	opts.Now = func() time.Time { return now }
	s, info, err := OpenStore(path, opts)
	if err != nil {
		t.Fatalf("OpenStore of a corrupt file = %v, want a fresh store", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if want := path + ".corrupt-20250304T050607Z"; info.MovedAside != want || info.Err == nil {
		t.Fatalf("OpenInfo = %+v, want MovedAside %s and a reason", info, want)
	}
	got, err := os.ReadFile(info.MovedAside)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatal("the moved-aside file differs from the corrupt one")
	}
	if st := s.Stats(); st.Batches != 0 {
		t.Fatalf("fresh store is not empty: %+v", st)
	}
	mustAppend(t, s, smallBatch(1, 1, t0))
	if recs := peekAll(t, s); len(recs) != 1 {
		t.Fatalf("fresh store: %v", seqs(recs))
	}
	t.Logf("moved aside because: %v", info.Err)
}

func TestStoreCorruptFileMovedAside(t *testing.T) {
	t.Run("garbage", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ep.bbolt")
		garbage := bytes.Repeat([]byte("not a bbolt file "), 2000)
		if err := os.WriteFile(path, garbage, 0o600); err != nil {
			t.Fatal(err)
		}
		requireMovedAside(t, path, garbage)
	})
	for _, cut := range []struct {
		name string
		size func(n int) int
	}{
		{"truncated to 100 bytes", func(int) int { return 100 }},
		{"truncated to the meta pages", func(int) int { return 2 * 4096 }},
		{"truncated to half", func(n int) int { return n / 2 }},
		{"last used page cut", func(hwm int) int { return hwm - 4096 }},
	} {
		t.Run(cut.name, func(t *testing.T) {
			path, raw := storeFile(t, 40)
			raw = raw[:cut.size(highWaterMark(t, path))]
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			requireMovedAside(t, path, raw)
		})
	}
	t.Run("header does not parse", func(t *testing.T) {
		path, raw := storeFile(t, 3)
		rec := redisBatch(t0+1000, 1)
		var enc batchEncoder
		value := appendRecord(nil, &enc, &rec, headerOf(&rec))
		corruptEvery(t, raw, value, func(at []byte) { copy(at[4:], []byte{0, 0, 0, 0}) }) // 0 samples
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		requireMovedAside(t, path, raw)
	})
	t.Run("keys out of order", func(t *testing.T) {
		path, raw := storeFile(t, 3)
		rec := redisBatch(t0+1000, 1)
		var enc batchEncoder
		value := appendRecord(nil, &enc, &rec, headerOf(&rec))
		// Record 2's key, just before its value in the leaf, becomes
		// larger than record 3's.
		corruptEvery(t, raw, append(seqKey(2), value[:16]...), func(at []byte) { at[0] = 0xff })
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		requireMovedAside(t, path, raw)
		requireNoBoltGoroutines(t)
	})
	t.Run("branch key out of range", func(t *testing.T) {
		path, raw := storeFile(t, 30)
		// A branch page holds the first key of each page below it. Raise
		// one above that page's own first key: every leaf still iterates
		// in order, only the tree's ranges are wrong, which bbolt's own
		// walk checks.
		branch := branchPage(t, path)
		ne := binary.NativeEndian
		e := branch*4096 + boltPageHeader + boltElement // element 1
		k := raw[e+int(ne.Uint32(raw[e:])):][:ne.Uint32(raw[e+4:])]
		if len(k) != 8 {
			t.Fatalf("branch key %x is not a sequence number", k)
		}
		k[7]++
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		requireMovedAside(t, path, raw)
		requireNoBoltGoroutines(t)
	})
	t.Run("name taken", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ep.bbolt")
		if err := os.WriteFile(path+".corrupt-20250304T050607Z", []byte("earlier"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, info, err := OpenStore(path, StoreOptions{Now: func() time.Time { return time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC) }})
		if err != nil || info.MovedAside != path+".corrupt-20250304T050607Z-2" {
			t.Fatalf("OpenStore = %+v, %v; want the -2 name", info, err)
		}
		if earlier, _ := os.ReadFile(path + ".corrupt-20250304T050607Z"); string(earlier) != "earlier" {
			t.Fatal("an earlier corrupt file was overwritten")
		}
	})
}

// TestStoreQuarantine flips a byte in one record's payload: the file
// still opens, Peek skips that record and moves it to quarantine.
func TestStoreQuarantine(t *testing.T) {
	path, raw := storeFile(t, 5)
	rec := redisBatch(t0+2000, 2)
	var enc batchEncoder
	value := appendRecord(nil, &enc, &rec, headerOf(&rec))
	corruptEvery(t, raw, value, func(at []byte) { at[len(at)/2] ^= 0xff })
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	s := openT(t, path, testOptions())
	if st := s.Stats(); st.Batches != 5 {
		t.Fatalf("Stats = %+v: a payload flip must not fail the open scan", st)
	}
	recs, err := s.Peek(900) // records 1..3 fit; 3 is bad, so 4 takes its place
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(seqs(recs)); got != "[1 2 4]" {
		t.Fatalf("Peek = %s, want [1 2 4]", got)
	}
	checkInvariants(t, s)
	if q, st := s.Quarantined(), s.Stats(); q != 1 || st.Batches != 4 || st.Samples != 1200 {
		t.Fatalf("Quarantined %d, Stats %+v", q, st)
	}
	// Acking past it does not touch the quarantined record.
	if err := s.Delete(4); err != nil {
		t.Fatal(err)
	}
	var kept []byte
	err = s.db.View(func(tx *bolt.Tx) error {
		kept = bytes.Clone(tx.Bucket(bucketQuarantine).Get(seqKey(3)))
		return nil
	})
	if err != nil || len(kept) != len(value) {
		t.Fatalf("quarantined record: %d bytes, %v", len(kept), err)
	}
	if got := fmt.Sprint(seqs(peekAll(t, s))); got != "[5]" {
		t.Fatalf("after Delete(4): %s", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The quarantine survives a reopen and does not hold up Seq.
	s = openT(t, path, testOptions())
	mustAppend(t, s, smallBatch(1, 1, t0))
	if s.LastSeq() != 6 {
		t.Fatalf("LastSeq = %d, want 6", s.LastSeq())
	}
}

// TestStoreRandomCorruption damages a real file at random, many times, the
// ways storage fails: flipped bytes, a zeroed page, a stale page written
// over another. Whatever happens, no panic escapes, no process dies, and
// no bbolt goroutine is left behind; a store that opens keeps its
// invariants and stays usable.
func TestStoreRandomCorruption(t *testing.T) {
	path, raw := storeFile(t, 30)
	trials := 600
	if testing.Short() {
		trials = 60
	}
	const page = 4096
	pages := len(raw) / page
	rng := rand.New(rand.NewPCG(1, 2))
	outcomes := map[string]int{}
	for trial := range trials {
		bad := bytes.Clone(raw)
		switch rng.IntN(4) {
		case 0: // a page reads back as zeros
			p := 2 + rng.IntN(pages-2)
			clear(bad[p*page : (p+1)*page])
		case 1: // a stale copy of one page lands on another
			from, to := rng.IntN(pages), 2+rng.IntN(pages-2)
			copy(bad[to*page:(to+1)*page], raw[from*page:(from+1)*page])
		default: // bit rot, often in page headers
			for range 1 + rng.IntN(8) {
				off := rng.IntN(len(bad))
				if rng.IntN(2) == 0 {
					off = rng.IntN(pages)*page + rng.IntN(64)
				}
				bad[off] ^= byte(1 + rng.IntN(255))
			}
		}
		p := filepath.Join(filepath.Dir(path), fmt.Sprintf("trial%d.bbolt", trial))
		if err := os.WriteFile(p, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		s, info, err := OpenStore(p, testOptions())
		switch {
		case err != nil:
			outcomes["open failed"]++
			continue
		case info.MovedAside != "":
			outcomes["moved aside"]++
		case bytes.Equal(bad, raw):
			outcomes["unchanged"]++
		}
		checkInvariants(t, s)
		if _, err := s.Peek(math.MaxInt); err != nil {
			outcomes["peek failed"]++
		}
		checkInvariants(t, s)
		if s.Quarantined() > 0 {
			outcomes["quarantined"]++
		}
		if _, err := s.Append(smallBatch(1, 1, t0)); err != nil {
			outcomes["append failed"]++
		}
		checkInvariants(t, s)
		if err := s.Delete(s.LastSeq()); err != nil {
			outcomes["delete failed"]++
		}
		checkInvariants(t, s)
		if err := s.Close(); err != nil {
			outcomes["close failed"]++
		}
	}
	requireNoBoltGoroutines(t)
	t.Logf("%d trials: %v", trials, outcomes)
}

// requireNoBoltGoroutines fails if a bbolt goroutine outlived its store.
// bbolt rebuilds its freelist in a goroutine that, on damage that
// checkBoltFile missed, panics the opener and then blocks forever.
func requireNoBoltGoroutines(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "go.etcd.io/bbolt") {
		t.Fatalf("bbolt goroutines left behind:\n%s", stacks)
	}
}

func TestStoreCompact(t *testing.T) {
	for _, how := range []string{"Compact", "Close"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ep.bbolt")
			s := openT(t, path, testOptions())
			for i := range 1000 {
				if _, err := s.Append(redisBatch(t0+int64(i)*1000, i)); err != nil {
					t.Fatal(err)
				}
			}
			big := s.Stats().FileBytes
			if big <= compactThreshold {
				t.Fatalf("file is only %d bytes; the test needs more than %d", big, compactThreshold)
			}
			// Not empty: left alone.
			if err := s.Compact(); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.FileBytes != big || st.Batches != 1000 {
				t.Fatalf("Compact of a full store changed it: %+v", st)
			}
			for upTo := uint64(100); upTo <= 1000; upTo += 100 {
				if err := s.Delete(upTo); err != nil {
					t.Fatal(err)
				}
			}
			checkInvariants(t, s)
			if st := s.Stats(); st.FileBytes != big || st.Batches != 0 {
				t.Fatalf("drained: %+v (bbolt keeps its pages until compacted)", st)
			}
			switch how {
			case "Compact":
				if err := s.Compact(); err != nil {
					t.Fatal(err)
				}
				checkInvariants(t, s)
				if st := s.Stats(); st.FileBytes >= compactThreshold {
					t.Fatalf("after Compact the file has %d bytes (was %d)", st.FileBytes, big)
				}
				// Still locked against a second process, still usable.
				if _, _, err := OpenStore(path, testOptions()); !errors.Is(err, ErrLocked) {
					t.Fatalf("OpenStore during compacted store = %v, want ErrLocked", err)
				}
				mustAppend(t, s, smallBatch(1, 1, t0))
				if s.LastSeq() != 1001 {
					t.Fatalf("LastSeq after Compact = %d, want 1001", s.LastSeq())
				}
			case "Close":
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if n := fileSize(path); n >= compactThreshold {
					t.Fatalf("after Close the file has %d bytes (was %d)", n, big)
				}
				s = openT(t, path, testOptions())
				mustAppend(t, s, smallBatch(1, 1, t0))
				if s.LastSeq() != 1001 {
					t.Fatalf("LastSeq after compacting Close = %d, want 1001", s.LastSeq())
				}
			}
			if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("compaction left its temporary file: %v", err)
			}
			t.Logf("file %d bytes before, %d after", big, fileSize(path))
		})
	}
}

// TestStoreMinFreeBytes checks the free-space guard with a fake statfs,
// to the byte.
func TestStoreMinFreeBytes(t *testing.T) {
	opts := testOptions()
	opts.MinFreeBytes = 1 << 20
	s := openT(t, filepath.Join(t.TempDir(), "ep.bbolt"), opts)
	var free int64
	s.freeSpace = func(string) (int64, bool, error) { return free, true, nil }
	b := smallBatch(1, 5, t0)
	size := recordSize(b)

	free = opts.MinFreeBytes + size - 1
	before := dump(t, s)
	_, err := s.Append(b)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Append with %d bytes free = %v, want ErrNoSpace", free, err)
	}
	if after := dump(t, s); after != before {
		t.Fatalf("a refused Append changed the store:\n%s\n%s", before, after)
	}
	free++
	mustAppend(t, s, b)
	if s.LastSeq() != 1 {
		t.Fatalf("LastSeq = %d: the refused Append consumed a sequence number", s.LastSeq())
	}
	// Unknown free space (a platform without statfs) does not block.
	s.freeSpace = func(string) (int64, bool, error) { return 0, false, errors.New("no statfs") }
	mustAppend(t, s, b)
	// Acks must work on a full disk: they are how space comes back.
	s.freeSpace = func(string) (int64, bool, error) { return 0, true, nil }
	if err := s.Delete(2); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, s)
}

// mountTmpfs mounts a tmpfs of the given size (e.g. "2m") on a fresh
// directory, or skips the test if it may not.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a %s tmpfs to fill up (needs root or CAP_SYS_ADMIN on Linux): %v: %s", size, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file of n bytes.
func fill(t *testing.T, path string, n int) {
	t.Helper()
	if err := os.WriteFile(path, make([]byte, n), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStoreENOSPC fills a real filesystem: the commit fails with ENOSPC,
// Append reports ErrNoSpace, the store is unchanged and readable (also
// after a reopen on the full disk), and appends work again once space is
// freed.
func TestStoreENOSPC(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	path := filepath.Join(dir, "ep.bbolt")
	fill(t, filepath.Join(dir, "filler"), 1<<20)
	opts := testOptions()
	opts.NoSync = false
	opts.MinFreeBytes = -1 // no guard: hit the real ENOSPC
	s := openT(t, path, opts)

	var appended []sample.Batch
	var err error
	for i := 0; i < 10_000; i++ {
		b := redisBatch(t0+int64(i)*1000, i)
		before := dump(t, s)
		if _, err = s.Append(b); err != nil {
			if after := dump(t, s); after != before {
				t.Fatalf("a failed Append changed the store:\n%s\n%s", before, after)
			}
			break
		}
		appended = append(appended, b)
	}
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("filling the disk ended with %v, want ErrNoSpace", err)
	}
	t.Logf("disk full after %d appends: %v", len(appended), err)
	checkInvariants(t, s)
	requireRecords := func(s *Store) {
		t.Helper()
		recs := peekAll(t, s)
		if len(recs) != len(appended) {
			t.Fatalf("%d records readable, %d appended", len(recs), len(appended))
		}
		for i, r := range recs {
			requireBatchEqual(t, appended[i], r.Batch)
		}
	}
	requireRecords(s)
	// Failing again changes nothing either.
	if _, err := s.Append(redisBatch(t0, 0)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("second Append on a full disk = %v", err)
	}
	// A new store cannot be created on a disk with no page left, and
	// leaves no half-made file behind.
	f, err := os.Create(filepath.Join(dir, "filler2"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = f.Write(make([]byte, 4096))
	}
	_ = f.Close()
	other := filepath.Join(dir, "other.bbolt")
	if _, _, err := OpenStore(other, opts); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("OpenStore of a new file on a full disk = %v, want ErrNoSpace", err)
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed OpenStore left %s behind: %v", other, err)
	}

	// Reopen while the disk is still full.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, path, opts)
	requireRecords(s)

	for _, f := range []string{"filler", "filler2"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	b := redisBatch(t0+1_000_000, 1)
	mustAppend(t, s, b)
	appended = append(appended, b)
	requireRecords(s)
}

// TestStoreMinFreeBytesStatfs checks the guard against a real filesystem's
// statfs: it refuses before the disk is full and writes nothing.
func TestStoreMinFreeBytesStatfs(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	opts := testOptions()
	opts.MinFreeBytes = 1 << 20
	s := openT(t, filepath.Join(dir, "ep.bbolt"), opts)
	fill(t, filepath.Join(dir, "filler"), 2<<20)
	var err error
	n := 0
	for ; n < 10_000; n++ {
		before, size := dump(t, s), s.Stats().FileBytes
		if _, err = s.Append(redisBatch(t0+int64(n)*1000, n)); err != nil {
			if dump(t, s) != before || s.Stats().FileBytes != size {
				t.Fatal("a refused Append wrote something")
			}
			break
		}
	}
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "kept free") {
		t.Fatalf("after %d appends: %v, want ErrNoSpace from the free-space guard", n, err)
	}
	free, _, _ := diskFree(dir)
	if free < opts.MinFreeBytes/2 {
		t.Fatalf("only %d bytes left free; the guard should have kept about %d", free, opts.MinFreeBytes)
	}
	t.Logf("refused after %d appends with %d bytes free: %v", n, free, err)
}

// TestStoreRandomOps runs random sequences of every operation against a
// simple model of the FIFO and checks, after every step, the contents
// against the model and the in-memory counts against a rescan of the file.
func TestStoreRandomOps(t *testing.T) {
	seeds := 8
	steps := 1500
	if testing.Short() {
		seeds, steps = 2, 300
	}
	for seed := range seeds {
		t.Run(strconv.Itoa(seed), func(t *testing.T) {
			randomOps(t, uint64(seed), steps)
		})
	}
}

type modelRec struct {
	seq  uint64
	b    sample.Batch
	size int64
	h    recordHeader
}

func randomOps(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 99))
	now := time.UnixMilli(t0)
	opts := testOptions()
	opts.MinFreeBytes = 1
	opts.Now = func() time.Time { return now }
	if rng.IntN(2) == 0 {
		opts.MaxAge = time.Duration(10+rng.IntN(50)) * time.Second
	}
	if rng.IntN(2) == 0 {
		opts.MaxBytes = int64(2000 + rng.IntN(6000))
	}
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	diskFull := false
	open := func() *Store {
		s := openT(t, path, opts)
		s.freeSpace = func(string) (int64, bool, error) {
			if diskFull {
				return 0, true, nil
			}
			return 1 << 40, true, nil
		}
		s.compactAt = 32 << 10
		return s
	}
	s := open()

	var (
		model     []modelRec
		next      uint64 = 1 // what LastSeq+1 must be
		persisted uint64 = 1 // next_seq as last written to the file
		batchID   int
	)
	cutoff := func() int64 { return now.Add(-opts.MaxAge).UnixMilli() }
	modelBytes := func() (n int64) {
		for _, r := range model {
			n += r.size
		}
		return n
	}
	dropFront := func(d *Dropped, drop func(r modelRec) bool) {
		for len(model) > 0 && drop(model[0]) {
			d.Batches++
			d.Samples += int(model[0].h.samples)
			model = model[1:]
		}
	}

	events := map[string]int{}
	defer func() { t.Logf("seed %d, MaxAge %v, MaxBytes %d: %v", seed, opts.MaxAge, opts.MaxBytes, events) }()
	for step := range steps {
		var op string
		switch r := rng.IntN(100); {
		case r < 45:
			op = "append"
			batchID++
			n := 1 + rng.IntN(30)
			ts := now.UnixMilli() - int64(rng.IntN(30_000))
			b := smallBatch(batchID, n, ts)
			if rng.IntN(10) == 0 {
				b.Samples[0].V = staleNaN
			}
			rec := modelRec{seq: next, b: b, size: recordSize(b), h: headerOf(&b)}
			tooOld := Dropped{Reason: DropTooOld}
			full := Dropped{Reason: DropBufferFull}
			write := true
			switch {
			case opts.MaxAge > 0 && rec.h.maxT < cutoff():
				write = false
				tooOld.Batches, tooOld.Samples = 1, n
			case opts.MaxBytes > 0 && rec.size > opts.MaxBytes:
				write = false
				full.Batches, full.Samples = 1, n
			}
			before := dump(t, s)
			got, err := s.Append(b)
			for _, d := range got {
				events["dropped "+d.Reason]++
			}
			if write && diskFull {
				events["ErrNoSpace"]++
				if !errors.Is(err, ErrNoSpace) {
					t.Fatalf("step %d: Append on a full disk = %v", step, err)
				}
				if after := dump(t, s); after != before {
					t.Fatalf("step %d: failed Append changed the store", step)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: Append: %v", step, err)
			}
			if opts.MaxAge > 0 {
				dropFront(&tooOld, func(r modelRec) bool { return r.h.maxT < cutoff() })
			}
			if write {
				model = append(model, rec)
				persisted = next + 1
				if opts.MaxBytes > 0 {
					dropFront(&full, func(modelRec) bool { return modelBytes() > opts.MaxBytes })
				}
			}
			next++
			if want := dropIfAny(tooOld, full); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("step %d: Append dropped %v, model %v", step, got, want)
			}
		case r < 60:
			op = "peek"
			maxSamples := rng.IntN(80)
			recs, err := s.Peek(maxSamples)
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			var want []modelRec
			total := 0
			for _, m := range model {
				if len(want) > 0 && total+len(m.b.Samples) > maxSamples {
					break
				}
				want = append(want, m)
				total += len(m.b.Samples)
			}
			if len(recs) != len(want) {
				t.Fatalf("step %d: Peek(%d) returned %d records, model %d", step, maxSamples, len(recs), len(want))
			}
			for i := range recs {
				if recs[i].Seq != want[i].seq {
					t.Fatalf("step %d: Peek seq %d, model %d", step, recs[i].Seq, want[i].seq)
				}
				requireBatchEqual(t, want[i].b, recs[i].Batch)
			}
		case r < 70:
			op = "delete"
			if len(model) == 0 {
				break
			}
			upTo := model[0].seq - 1 + uint64(rng.IntN(len(model)+2))
			if rng.IntN(4) == 0 {
				upTo = next // drain: the way to an empty, compactable store
			}
			if err := s.Delete(upTo); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			var d Dropped
			dropFront(&d, func(r modelRec) bool { return r.seq <= upTo })
		case r < 80:
			op = "expire"
			now = now.Add(time.Duration(rng.IntN(20_000)) * time.Millisecond)
			d, err := s.Expire()
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			want := Dropped{Reason: DropTooOld}
			if opts.MaxAge > 0 {
				dropFront(&want, func(r modelRec) bool { return r.h.maxT < cutoff() })
			}
			if d != want {
				t.Fatalf("step %d: Expire = %+v, model %+v", step, d, want)
			}
		case r < 87:
			op = "disk"
			diskFull = rng.IntN(4) == 0
		case r < 95:
			op = "compact"
			if len(model) == 0 && s.Stats().FileBytes > s.compactAt {
				persisted = next
				events["compacted"]++
			}
			if err := s.Compact(); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		default:
			op = "reopen"
			if len(model) == 0 && s.Stats().FileBytes > s.compactAt {
				persisted = next // Close compacts
				events["compacted"]++
			}
			if err := s.Close(); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			s = open()
			// Sequence numbers of batches dropped at once are not
			// written down; the file remembers the last stored one.
			next = persisted
		}
		events[op]++
		checkInvariants(t, s)
		st := s.Stats()
		var samples int64
		for _, m := range model {
			samples += m.h.samples
		}
		if st.Batches != int64(len(model)) || st.Samples != samples || st.Bytes != modelBytes() {
			t.Fatalf("step %d (%s): Stats %+v, model %d batches %d samples %d bytes", step, op, st, len(model), samples, modelBytes())
		}
		if len(model) > 0 && st.OldestT != model[0].h.minT {
			t.Fatalf("step %d (%s): OldestT %d, model %d", step, op, st.OldestT, model[0].h.minT)
		}
		if s.LastSeq() != next-1 {
			t.Fatalf("step %d (%s): LastSeq %d, model %d", step, op, s.LastSeq(), next-1)
		}
	}
}
