package buffer

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestGapsSurviveReopenAndCompaction: the lost ranges saved in a buffer
// file are there after a restart, after the file is compacted, and to
// the offline reader, also while the store is open.
func TestGapsSurviveReopenAndCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	want := []Gap{
		{Target: "r1:6379", From: t0.Add(time.Minute), To: t0.Add(2 * time.Minute), Reason: GapAgentDown},
		{Target: "r1:6379", From: t0, To: t0.Add(30 * time.Second), Samples: 900, Reason: DropBufferFull},
	}
	s := openT(t, path, testOptions())
	b := New(s, Options{Capacity: 10, MaxBatch: 10})
	if gs, err := b.Gaps(); err != nil || len(gs) != 0 {
		t.Fatalf("a new file's gaps: %v, %v; want none", gs, err)
	}
	if err := b.SaveGaps(want); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, path, testOptions())
	if gs, err := s.gaps(); err != nil || fmt.Sprint(gs) != fmt.Sprint(want) {
		t.Fatalf("after reopening: %v, %v; want %v", gs, err, want)
	}
	s.compactAt = 0 // compact now, empty as it is
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if gs, err := s.gaps(); err != nil || fmt.Sprint(gs) != fmt.Sprint(want) {
		t.Fatalf("after compacting: %v, %v; want %v", gs, err, want)
	}
	var read []Gap
	if _, _, err := ReadStore(path, ReadOptions{LockTimeout: 50 * time.Millisecond, TempDir: t.TempDir(), Gaps: &read}, nil); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(read) != fmt.Sprint(want) {
		t.Fatalf("ReadStore of the open file: %v; want %v", read, want)
	}
}
