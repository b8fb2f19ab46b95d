package offline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/batchtest"
)

// FuzzReadExport: whatever the bytes, reading an export file returns
// records or errors, never panics or allocates beyond the input, and a
// file Verify calls whole yields exactly its trailer's counts. The seed
// corpus in testdata/fuzz/FuzzReadExport holds a valid file and damaged
// variants of it.
func FuzzReadExport(f *testing.F) {
	dir := f.TempDir()
	sf := buffer.EndpointFile(dir, "a")
	s, _, err := buffer.OpenStore(sf.Path, testOptions())
	if err != nil {
		f.Fatal(err)
	}
	for k := range 3 {
		if _, err := s.Append(batchtest.Small(k, 3, t0+int64(k)*1000)); err != nil {
			f.Fatal(err)
		}
	}
	s.Close()
	out := filepath.Join(dir, "x")
	if _, err := Export(context.Background(), out, []buffer.StoreFile{sf}, ExportOptions{}); err != nil {
		f.Fatal(err)
	}
	valid, err := os.ReadFile(out)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Fuzz(func(t *testing.T, data []byte) {
		ef, err := OpenExport(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		c, err := ef.Verify()
		if err != nil {
			t.Fatalf("Verify of in-memory input: %v", err)
		}
		if c.OK() && (c.Trailer.Records != c.Records || c.Trailer.Samples != c.Samples) {
			t.Fatalf("verified file: trailer %+v, read %d records %d samples", c.Trailer, c.Records, c.Samples)
		}
		for _, cf := range c.Corrupt {
			if cf.Offset < ef.Start() || cf.Offset > int64(len(data)) {
				t.Fatalf("corruption reported outside the file: %v", cf)
			}
		}
	})
}
