package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackfillCLI: backfill --delete refuses a running agent's buffer,
// naming the file; stopped, it writes the blocks, prints them and how to
// import them, and empties the buffer; export files cannot be given with
// buffer flags.
func TestBackfillCLI(t *testing.T) {
	const scrapes, perScrape = 6, 20
	dir := t.TempDir()
	running := fillBuffer(t, dir, scrapes, perScrape)
	out := filepath.Join(t.TempDir(), "blocks")
	code, _, errOut := runCLI(t, "backfill", "--buffer.path="+dir, "-o", out, "--delete")
	if code == 0 || !strings.Contains(errOut, filepath.Join(dir, "local.bbolt")) || !strings.Contains(errOut, "stop the agent") {
		t.Fatalf("backfill --delete under a running agent: exit %d: %s", code, errOut)
	}
	running.Close()
	// The buffer holds a backlog, not parked samples: --all takes it.
	code, stdout, errOut := runCLI(t, "backfill", "--buffer.path="+dir, "-o", out, "--endpoint=local", "--all", "--delete")
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("%d series, %d samples", perScrape, scrapes*perScrape)) ||
		!strings.Contains(stdout, "BLOCK") || !strings.Contains(stdout, "--storage.tsdb.path") || !strings.Contains(stdout, "6 deleted") {
		t.Fatalf("backfill: exit %d\n%s\n%s", code, stdout, errOut)
	}
	// A minute of scrapes: one block, or two across a 2h boundary.
	if ents, err := os.ReadDir(out); err != nil || len(ents) == 0 || !strings.Contains(stdout, fmt.Sprintf("wrote %d blocks", len(ents))) {
		t.Fatalf("output holds %v (%v); stdout:\n%s", ents, err, stdout)
	}
	t.Logf("backfill says:\n%s", stdout)
	if in := inspectJSON(t, dir); in.Batches != 0 {
		t.Fatalf("after backfill --delete: %+v", in)
	}
	code, _, errOut = runCLI(t, "backfill", "-o", out, "--delete", filepath.Join(dir, "local.bbolt"))
	if code != 2 || !strings.Contains(errOut, "export files") {
		t.Fatalf("backfill --delete FILE: exit %d: %s", code, errOut)
	}
}
