package buffer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

func TestStoreCompact(t *testing.T) {
	for _, how := range []string{"Compact", "Close"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ep.bbolt")
			s := openT(t, path, testOptions())
			s.sealAt = 1 << 62 // batch records, to grow the file past the threshold
			for i := range 1000 {
				if _, err := s.Append(batchtest.Redis(t0+int64(i)*1000, i)); err != nil {
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
				mustAppend(t, s, batchtest.Small(1, 1, t0))
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
				mustAppend(t, s, batchtest.Small(1, 1, t0))
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
	b := batchtest.Small(1, 5, t0)
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
	dir := harness.MountTmpfs(t, "2m")
	path := filepath.Join(dir, "ep.bbolt")
	fill(t, filepath.Join(dir, "filler"), 1<<20)
	opts := testOptions()
	opts.NoSync = false
	opts.MinFreeBytes = -1 // no guard: hit the real ENOSPC
	s := openT(t, path, opts)

	var appended []sample.Batch
	var err error
	for i := 0; i < 10_000; i++ {
		b := batchtest.Redis(t0+int64(i)*1000, i)
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
			batchtest.RequireEqual(t, appended[i], r.Batch)
		}
	}
	requireRecords(s)
	// Failing again changes nothing either.
	if _, err := s.Append(batchtest.Redis(t0, 0)); !errors.Is(err, ErrNoSpace) {
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
	b := batchtest.Redis(t0+1_000_000, 1)
	mustAppend(t, s, b)
	appended = append(appended, b)
	requireRecords(s)
}

// TestStoreMinFreeBytesStatfs checks the guard against a real filesystem's
// statfs: it refuses before the disk is full and writes nothing.
func TestStoreMinFreeBytesStatfs(t *testing.T) {
	dir := harness.MountTmpfs(t, "4m")
	opts := testOptions()
	opts.MinFreeBytes = 1 << 20
	s := openT(t, filepath.Join(dir, "ep.bbolt"), opts)
	fill(t, filepath.Join(dir, "filler"), 2<<20)
	var err error
	n := 0
	for ; n < 10_000; n++ {
		before, size := dump(t, s), s.Stats().FileBytes
		if _, err = s.Append(batchtest.Redis(t0+int64(n)*1000, n)); err != nil {
			if dump(t, s) != before || s.Stats().FileBytes != size {
				t.Fatal("a refused Append wrote something")
			}
			break
		}
	}
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "buffer.min_free_bytes") {
		t.Fatalf("after %d appends: %v, want ErrNoSpace from the free-space guard", n, err)
	}
	free, _, _ := diskFree(dir)
	if free < opts.MinFreeBytes/2 {
		t.Fatalf("only %d bytes left free; the guard should have kept about %d", free, opts.MinFreeBytes)
	}
	t.Logf("refused after %d appends with %d bytes free: %v", n, free, err)
}
