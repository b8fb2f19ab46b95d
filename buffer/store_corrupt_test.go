package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/internal/codec"
)

// storeFile writes a store with n records to a fresh file and returns its
// path and bytes.
func storeFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	s := openT(t, path, testOptions())
	for i := range n {
		mustAppend(t, s, batchtest.Redis(t0+int64(i)*1000, i))
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
	mustAppend(t, s, batchtest.Small(1, 1, t0))
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
		rec := batchtest.Redis(t0+1000, 1)
		var enc codec.BatchEncoder
		value := codec.AppendRecord(nil, &enc, &rec, codec.HeaderOf(&rec))
		corruptEvery(t, raw, value, func(at []byte) { copy(at[4:], []byte{0, 0, 0, 0}) }) // 0 samples
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		requireMovedAside(t, path, raw)
	})
	t.Run("keys out of order", func(t *testing.T) {
		path, raw := storeFile(t, 3)
		rec := batchtest.Redis(t0+1000, 1)
		var enc codec.BatchEncoder
		value := codec.AppendRecord(nil, &enc, &rec, codec.HeaderOf(&rec))
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
	rec := batchtest.Redis(t0+2000, 2)
	var enc codec.BatchEncoder
	value := codec.AppendRecord(nil, &enc, &rec, codec.HeaderOf(&rec))
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
	mustAppend(t, s, batchtest.Small(1, 1, t0))
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
		if _, err := s.Append(batchtest.Small(1, 1, t0)); err != nil {
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
