package offline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/sample"
)

// TestInspectWhileAgentRuns: a Store holds the exclusive lock as the
// running agent does; inspect falls back to a snapshot and reports the
// same numbers, export without --delete works, export --delete refuses.
func TestInspectWhileAgentRuns(t *testing.T) {
	dir := t.TempDir()
	sf := exportStore(t, dir, "ep", 7)
	in, err := InspectStore(sf, buffer.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if in.Mode != ReadLocked || in.Batches != 7 || in.Samples != 70 || in.Series != 7*10 ||
		in.OldestT != t0 || in.NewestT != t0+6000+9 || in.Quarantined != 0 || in.Corrupt != 0 {
		t.Fatalf("stopped agent: %+v", in)
	}
	running := openT(t, sf.Path, testOptions())
	live, err := InspectStore(sf, buffer.ReadOptions{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	in.Mode = ReadSnapshot
	if !reflect.DeepEqual(live, in) {
		t.Fatalf("running agent:\n got %+v\nwant %+v", live, in)
	}
	res, err := Export(context.Background(), filepath.Join(t.TempDir(), "x"), []buffer.StoreFile{sf}, ExportOptions{})
	if err != nil || res.Trailer.Records != 7 || res.Endpoints[0].Mode != ReadSnapshot {
		t.Fatalf("export from a running agent: %+v %v", res, err)
	}
	_, err = Export(context.Background(), filepath.Join(t.TempDir(), "y"), []buffer.StoreFile{sf}, ExportOptions{Delete: true})
	if !errors.Is(err, buffer.ErrLocked) {
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
	// Damage the payload of record 2 in place, as the disk would: the
	// store keeps its records in bucket "records" under 8-byte big-endian
	// sequence numbers.
	db, err := bolt.Open(sf.Path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("records"))
		key := binary.BigEndian.AppendUint64(nil, 2)
		v := bytes.Clone(b.Get(key))
		v[len(v)-3] ^= 0x40
		return b.Put(key, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	in, err := InspectStore(sf, buffer.ReadOptions{})
	if err != nil || in.Batches != 2 || in.Corrupt != 1 || in.Quarantined != 0 {
		t.Fatalf("%+v %v", in, err)
	}
	s := openT(t, sf.Path, testOptions())
	peekAll(t, s)
	s.Close()
	in, err = InspectStore(sf, buffer.ReadOptions{})
	if err != nil || in.Batches != 2 || in.Corrupt != 0 || in.Quarantined != 1 {
		t.Fatalf("%+v %v", in, err)
	}
}

// TestInspectShowsTheParkedArea: inspect reports the parked area apart
// from the FIFO, under the lock and from a snapshot; ReadStore with Parked
// reads the parked batches back and Store.DeleteParked removes them, the
// way `redwire backfill --delete` does.
func TestInspectShowsTheParkedArea(t *testing.T) {
	sf := exportStore(t, t.TempDir(), "ep", 3)
	s := openT(t, sf.Path, testOptions())
	old := []sample.Batch{batchtest.Small(100, 4, t0-7_200_000), batchtest.Small(101, 6, t0-3_600_000)}
	for _, b := range old {
		if _, err := s.Park(b); err != nil {
			t.Fatal(err)
		}
	}
	want := ParkedInspection{Batches: 2, Samples: 10, Bytes: s.Parked().Bytes, OldestT: t0 - 7_200_000, NewestT: t0 - 3_600_000 + 5}
	live, err := InspectStore(sf, buffer.ReadOptions{TempDir: t.TempDir()})
	if err != nil || live.Mode != ReadSnapshot || live.Parked != want || live.Batches != 3 || live.Samples != 30 {
		t.Fatalf("running agent: %+v %v, want parked %+v", live, err, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	in, err := InspectStore(sf, buffer.ReadOptions{})
	if err != nil || in.Mode != ReadLocked || in.Parked != want || in.Batches != 3 || in.OldestT != t0 {
		t.Fatalf("stopped agent: %+v %v, want parked %+v", in, err, want)
	}

	var keys []uint64
	var got []sample.Batch
	_, _, err = buffer.ReadStore(sf.Path, buffer.ReadOptions{Parked: true}, func(r buffer.FileRecord) error {
		if r.Err != nil {
			return r.Err
		}
		keys = append(keys, r.Key)
		for _, b := range r.Batches {
			got = append(got, b.Batch)
		}
		return nil
	})
	if err != nil || len(got) != len(old) {
		t.Fatalf("ReadStore of the parked area: %d batches, %v", len(got), err)
	}
	for i := range old {
		batchtest.RequireEqual(t, old[i], got[i])
	}
	s = openT(t, sf.Path, testOptions())
	if err := s.DeleteParked(keys); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	in, err = InspectStore(sf, buffer.ReadOptions{})
	if err != nil || in.Parked != (ParkedInspection{}) || in.Batches != 3 {
		t.Fatalf("after DeleteParked: %+v %v", in, err)
	}
}
