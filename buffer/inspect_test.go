package buffer

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestInspectWhileAgentRuns: a Store holds the exclusive lock as the
// running agent does; inspect falls back to a snapshot and reports the
// same numbers, export without --delete works, export --delete refuses.
func TestInspectWhileAgentRuns(t *testing.T) {
	dir := t.TempDir()
	sf := exportStore(t, dir, "ep", 7)
	in, err := InspectStore(sf, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if in.Mode != ReadLocked || in.Batches != 7 || in.Samples != 70 || in.Series != 7*10 ||
		in.OldestT != t0 || in.NewestT != t0+6000+9 || in.Quarantined != 0 || in.Corrupt != 0 {
		t.Fatalf("stopped agent: %+v", in)
	}
	running := openT(t, sf.Path, testOptions())
	live, err := InspectStore(sf, ReadOptions{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	in.Mode = ReadSnapshot
	if live != in {
		t.Fatalf("running agent:\n got %+v\nwant %+v", live, in)
	}
	res, err := Export(context.Background(), filepath.Join(t.TempDir(), "x"), []StoreFile{sf}, ExportOptions{})
	if err != nil || res.Trailer.Records != 7 || res.Endpoints[0].Mode != ReadSnapshot {
		t.Fatalf("export from a running agent: %+v %v", res, err)
	}
	_, err = Export(context.Background(), filepath.Join(t.TempDir(), "y"), []StoreFile{sf}, ExportOptions{Delete: true})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("export --delete under a running agent: %v, want ErrLocked", err)
	}
	if st := running.Stats(); st.Batches != 7 {
		t.Fatalf("store changed: %+v", st)
	}
}

// TestInspectCountsQuarantineAndCorrupt: a damaged record is counted as
// corrupt, and once the store has quarantined it, as quarantined.
func TestInspectCountsQuarantineAndCorrupt(t *testing.T) {
	sf := exportStore(t, t.TempDir(), "ep", 3)
	s, _, err := OpenStore(sf.Path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		v := bytes.Clone(b.Get(seqKey(2)))
		v[len(v)-3] ^= 0x40
		return b.Put(seqKey(2), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	in, err := InspectStore(sf, ReadOptions{})
	if err != nil || in.Batches != 2 || in.Corrupt != 1 || in.Quarantined != 0 {
		t.Fatalf("%+v %v", in, err)
	}
	s = openT(t, sf.Path, testOptions())
	peekAll(t, s)
	s.Close()
	in, err = InspectStore(sf, ReadOptions{})
	if err != nil || in.Batches != 2 || in.Corrupt != 0 || in.Quarantined != 1 {
		t.Fatalf("%+v %v", in, err)
	}
}
