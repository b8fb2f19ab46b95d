package offline

import (
	"math"
	"testing"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// Buffer files for the tests, written through the buffer's API as the
// agent writes them.

// t0 is the time (ms) the test batches count from.
const t0 = batchtest.T0

// testOptions are fast store options: no fsync, no statfs check.
func testOptions() buffer.StoreOptions {
	return buffer.StoreOptions{NoSync: true, LockTimeout: 100 * time.Millisecond, MinFreeBytes: -1}
}

// openT opens a store that must open cleanly and closes it at cleanup.
func openT(t testing.TB, path string, opts buffer.StoreOptions) *buffer.Store {
	t.Helper()
	s, info, err := buffer.OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if info.MovedAside != "" {
		t.Fatalf("OpenStore moved a good file aside: %+v", info)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustAppend(t testing.TB, s *buffer.Store, b sample.Batch) {
	t.Helper()
	if _, err := s.Append(b); err != nil {
		t.Fatal(err)
	}
}

func peekAll(t testing.TB, s *buffer.Store) []buffer.Record {
	t.Helper()
	recs, err := s.Peek(math.MaxInt)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func seqs(recs []buffer.Record) []uint64 {
	var out []uint64
	for _, r := range recs {
		out = append(out, r.Seq)
	}
	return out
}

// exportStore fills a store with n batches of 10 samples, batch k at
// t0+k*1000, and returns its file.
func exportStore(t *testing.T, dir, name string, n int) buffer.StoreFile {
	t.Helper()
	sf := buffer.EndpointFile(dir, name)
	s, _, err := buffer.OpenStore(sf.Path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for k := range n {
		mustAppend(t, s, batchtest.Small(k, 10, t0+int64(k)*1000))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return sf
}
