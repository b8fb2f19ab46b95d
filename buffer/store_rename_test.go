package buffer

import (
	"path/filepath"
	"testing"

	"github.com/redwire/redwire/internal/batchtest"
)

// TestRenameKeepsTheBacklog: an open store renamed keeps appending, and a
// reopen under the new name finds everything.
func TestRenameKeepsTheBacklog(t *testing.T) {
	dir := t.TempDir()
	s, _, err := OpenStore(filepath.Join(dir, "old.bbolt"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(batchtest.Redis(1000, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(filepath.Join(dir, "new.bbolt")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(batchtest.Redis(2000, 2)); err != nil {
		t.Fatal(err)
	}
	want := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _, err = OpenStore(filepath.Join(dir, "new.bbolt"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Stats(); got.Batches != 2 || got.Samples != want.Samples {
		t.Fatalf("after reopen: %+v, want 2 batches, %d samples", got, want.Samples)
	}
	if err := s.Rename(filepath.Join(t.TempDir(), "x.bbolt")); err == nil {
		t.Error("a rename to another directory must be refused")
	}
}
