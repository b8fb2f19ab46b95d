package offline

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/batchtest"
)

// segments counts the segment records in s: records holding more than
// one batch.
func segments(t *testing.T, s *buffer.Store) (n int) {
	t.Helper()
	err := s.Read(func(r buffer.FileRecord) error {
		if r.Err != nil {
			return r.Err
		}
		if len(r.Batches) > 1 {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSealedStoreExportAndInspect: inspect and export read a store of
// segment records, one of them partly acknowledged, as the batches left:
// the acknowledged ones neither counted nor exported, the rest exported as
// batch records under their own sequence numbers, and deleted after.
func TestSealedStoreExportAndInspect(t *testing.T) {
	const perBatch = 300 // the store seals its tail at 16384 samples: 55 batches
	dir := t.TempDir()
	sf := buffer.EndpointFile(dir, "a")
	s := openT(t, sf.Path, testOptions())
	var want []buffer.Record
	for i := range 60 {
		b := batchtest.Small(i, perBatch, t0+int64(i)*1000)
		mustAppend(t, s, b)
		want = append(want, buffer.Record{Seq: s.LastSeq(), Batch: b})
	}
	if segments(t, s) == 0 {
		t.Fatal("nothing sealed")
	}
	// Acknowledge into the first segment.
	if err := s.Delete(want[3].Seq); err != nil {
		t.Fatal(err)
	}
	want = want[4:]
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	in, err := InspectStore(sf, buffer.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if in.Batches != int64(len(want)) || in.Samples != int64(perBatch*len(want)) || in.Corrupt != 0 {
		t.Errorf("inspect %+v, want %d batches", in, len(want))
	}
	out := filepath.Join(t.TempDir(), "x.rwexport")
	res, err := Export(context.Background(), out, []buffer.StoreFile{sf}, ExportOptions{Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Endpoints[0].Records != int64(len(want)) || res.Endpoints[0].Deleted != int64(len(want)) {
		t.Errorf("export %+v, want %d batches exported and deleted", res.Endpoints[0], len(want))
	}
	_, recs, _ := readAll(t, out)
	if len(recs) != len(want) {
		t.Fatalf("%d records in the export, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if r.Seq != want[i].Seq {
			t.Fatalf("export record %d: seq %d, want %d", i, r.Seq, want[i].Seq)
		}
		if err := batchtest.Diff(want[i].Batch, r.Batch); err != nil {
			t.Fatalf("export record %d: %v", i, err)
		}
	}
	if in, _ := InspectStore(sf, buffer.ReadOptions{}); in.Batches != 0 {
		t.Errorf("after export with delete: %+v", in)
	}
}
