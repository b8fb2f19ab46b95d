package offline

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/batchtest"
)

func readAll(t *testing.T, path string) (*ExportFile, []ExportRecord, ExportCheck) {
	t.Helper()
	f, fh, err := ReadExportFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	var recs []ExportRecord
	if _, err := f.Records(f.Start(), func(r ExportRecord) error { recs = append(recs, r); return nil }, nil); err != nil {
		t.Fatal(err)
	}
	c, err := f.Verify()
	if err != nil {
		t.Fatal(err)
	}
	return f, recs, c
}

func TestExportRoundTripAndDelete(t *testing.T) {
	dir := t.TempDir()
	a := exportStore(t, dir, "a", 5)
	b := exportStore(t, dir, "b", 3)
	out := filepath.Join(t.TempDir(), "x.rwexport")
	res, err := Export(context.Background(), out, []buffer.StoreFile{a, b}, ExportOptions{Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Trailer.Records != 8 || res.Trailer.Samples != 80 || res.Endpoints[0].Deleted != 5 || res.Endpoints[1].Deleted != 3 {
		t.Fatalf("result %+v", res)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file mode: %v %v", fi, err)
	}
	f, recs, c := readAll(t, out)
	if !c.OK() || c.Records != 8 || c.Samples != 80 || c.MinT != t0 || c.MaxT != t0+4*1000+9 {
		t.Fatalf("check %+v", c)
	}
	if len(f.Header.Endpoints) != 2 || f.Header.Endpoints[1] != "b" {
		t.Fatalf("header %+v", f.Header)
	}
	for i, r := range recs {
		id, ep := i, "a"
		if i >= 5 {
			id, ep = i-5, "b"
		}
		if r.Endpoint != ep || r.Seq != uint64(id+1) {
			t.Errorf("record %d: endpoint %s seq %d", i, r.Endpoint, r.Seq)
		}
		batchtest.RequireEqual(t, batchtest.Small(id, 10, t0+int64(id)*1000), r.Batch)
	}
	for _, sf := range []buffer.StoreFile{a, b} {
		s := openT(t, sf.Path, testOptions())
		if st := s.Stats(); st.Batches != 0 {
			t.Errorf("%s still holds %d batches after export --delete", sf.Name, st.Batches)
		}
	}
	if _, err := Export(context.Background(), out, []buffer.StoreFile{a}, ExportOptions{}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("overwrote an export file: %v", err)
	}
}

// TestExportTimeFilter: a batch is selected if any of its samples lies in
// [from, to), and then whole; deleting removes exactly the selection.
func TestExportTimeFilter(t *testing.T) {
	dir := t.TempDir()
	a := exportStore(t, dir, "a", 6) // batch k: [t0+k*1000, t0+k*1000+9]
	out := filepath.Join(t.TempDir(), "x")
	res, err := Export(context.Background(), out, []buffer.StoreFile{a}, ExportOptions{FromMs: t0 + 1005, ToMs: t0 + 3000, Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	_, recs, _ := readAll(t, out)
	var got []uint64
	for _, r := range recs {
		got = append(got, r.Seq)
		if len(r.Batch.Samples) != 10 {
			t.Errorf("batch %d split: %d samples", r.Seq, len(r.Batch.Samples))
		}
	}
	if len(got) != 2 || got[0] != 2 || got[1] != 3 || res.Endpoints[0].Deleted != 2 {
		t.Fatalf("selected seqs %v (deleted %d), want [2 3]", got, res.Endpoints[0].Deleted)
	}
	s := openT(t, a.Path, testOptions())
	if rest := seqs(peekAll(t, s)); len(rest) != 4 || rest[0] != 1 || rest[1] != 4 {
		t.Fatalf("left in store %v, want [1 4 5 6]", rest)
	}
}

// TestExportFlippedByte: every single flipped byte after the header is
// detected, at the offset of the damaged frame (or the trailer), and the
// other records still read.
func TestExportFlippedByte(t *testing.T) {
	dir := t.TempDir()
	a := exportStore(t, dir, "a", 4)
	out := filepath.Join(t.TempDir(), "x")
	if _, err := Export(context.Background(), out, []buffer.StoreFile{a}, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	f, recs, _ := readAll(t, out)
	raw, _ := os.ReadFile(out)
	for at := 0; at < len(raw); at++ {
		bad := bytes.Clone(raw)
		bad[at] ^= 0x20
		ef, err := OpenExport(bytes.NewReader(bad), int64(len(bad)))
		if at < int(f.Start()) {
			if err == nil {
				t.Fatalf("flip at %d in the header not detected", at)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		c, err := ef.Verify()
		if err != nil {
			t.Fatal(err)
		}
		if c.OK() || len(c.Corrupt) == 0 {
			t.Fatalf("flip at %d not detected: %+v", at, c)
		}
		want := int64(len(raw)) - TrailerFrameSize // in the trailer
		for _, r := range recs {
			if int64(at) >= r.Offset && int64(at) < r.End {
				want = r.Offset
			}
		}
		if c.Corrupt[0].Offset != want {
			t.Fatalf("flip at %d reported at offset %d, want %d: %v", at, c.Corrupt[0].Offset, want, c.Corrupt)
		}
		if want < int64(len(raw))-TrailerFrameSize && c.Records != int64(len(recs)-1) {
			t.Fatalf("flip at %d: %d good records, want %d", at, c.Records, len(recs)-1)
		}
		var cf *CorruptFrame
		if _, err := ef.Records(ef.Start(), func(ExportRecord) error { return nil }, nil); !errors.As(err, &cf) || cf.Offset != want {
			t.Fatalf("flip at %d: Records without onCorrupt returned %v", at, err)
		}
	}
}

func TestExportTruncated(t *testing.T) {
	a := exportStore(t, t.TempDir(), "a", 3)
	out := filepath.Join(t.TempDir(), "x")
	if _, err := Export(context.Background(), out, []buffer.StoreFile{a}, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(out)
	cut := raw[:len(raw)-TrailerFrameSize-7]
	ef, err := OpenExport(bytes.NewReader(cut), int64(len(cut)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ef.Verify()
	if err != nil || c.OK() || c.Trailer != nil || c.Records != 2 {
		t.Fatalf("truncated file: %+v %v", c, err)
	}
}
