package buffer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// alwaysBuffer is a buffer.mode always Buffer on a store at path, closed
// at the end of the test.
func alwaysBuffer(t *testing.T, path string, opts StoreOptions, capacity int) *Buffer {
	t.Helper()
	s, _, err := OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := New(s, Options{Always: true, Capacity: capacity, MaxBatch: 1 << 20, Deadline: time.Hour})
	t.Cleanup(func() { _, _ = b.Close() })
	return b
}

// appendResult is what one caller of Append heard.
type appendResult struct {
	dropped []Dropped
	err     error
}

// appendWhileHeld starts one Append per batch, all while the buffer's lock
// is held, so the committer can take at most one of them before the
// others are waiting; it releases the lock once all are handed over, and
// returns every caller's answer, in the order of batches.
func appendWhileHeld(t *testing.T, b *Buffer, batches []sample.Batch) []appendResult {
	t.Helper()
	res := make([]appendResult, len(batches))
	var wg sync.WaitGroup
	b.mu.Lock()
	received := func() int {
		b.group.mu.Lock()
		defer b.group.mu.Unlock()
		return b.group.received
	}
	before := received()
	for i, batch := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i].dropped, res[i].err = b.Append(batch)
		}()
	}
	harness.WaitFor(t, 10*time.Second, "every append handed to the committer", func() (bool, error) {
		return received()-before == len(batches), nil
	})
	b.mu.Unlock()
	wg.Wait()
	return res
}

func (s *Store) commitCount() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits
}

// TestAlwaysAppendsShareCommits: appends that wait at the same time are
// committed together. Fifty scrapes land while a commit is in progress
// (the buffer's lock held); they take at most two commits, the first
// (what the committer took before it blocked) and one for all the others,
// where one commit per Append took fifty. Every batch is stored once,
// whole.
func TestAlwaysAppendsShareCommits(t *testing.T) {
	opts := testOptions()
	opts.NoSync = false
	b := alwaysBuffer(t, filepath.Join(t.TempDir(), "ep.bbolt"), opts, 1000)
	const n = 50
	batches := make([]sample.Batch, n)
	for i := range batches {
		batches[i] = batchtest.Small(i, 3, t0+int64(i)*10)
	}
	before := b.store.commitCount()
	for i, r := range appendWhileHeld(t, b, batches) {
		if r.err != nil || len(r.dropped) > 0 {
			t.Fatalf("append %d: dropped %v, err %v", i, r.dropped, r.err)
		}
	}
	commits := b.store.commitCount() - before
	t.Logf("%d concurrent appends took %d commits", n, commits)
	if commits > 2 {
		t.Fatalf("%d concurrent appends took %d commits, want at most 2", n, commits)
	}
	recs := peekAll(t, b.store)
	if len(recs) != n {
		t.Fatalf("%d records stored, %d appended", len(recs), n)
	}
	seen := map[float64]bool{}
	for _, r := range recs {
		id := int(r.Batch.Samples[0].V) / 1000
		if seen[r.Batch.Samples[0].V] {
			t.Fatalf("batch %d stored twice", id)
		}
		seen[r.Batch.Samples[0].V] = true
		batchtest.RequireEqual(t, batches[id], r.Batch)
	}
	if st := b.Stats(); st.MemorySamples != 0 {
		t.Fatalf("%d samples left in memory", st.MemorySamples)
	}
}

// groupChildEnv names the store the group-commit kill -9 child appends
// to; set, it makes the test binary that child (see init).
const groupChildEnv = "REDWIRE_TEST_KILL9_GROUP"

// groupAppenders is how many goroutines of the child append at once.
const groupAppenders = 8

// groupBatch is the i-th batch of appender g in the kill -9 child.
func groupBatch(g, i int) sample.Batch { return batchtest.Small(g*1_000_000+i, 4, t0+int64(i)*1000) }

// init turns the test binary into the process TestAlwaysKill9GroupCommit
// kills: groupAppenders goroutines append to an always Buffer, each
// printing "appended g i" once its Append has returned, until killed or
// until stdin closes.
func init() {
	path := os.Getenv(groupChildEnv)
	if path == "" {
		return
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	opts := testOptions()
	opts.NoSync = false
	s, _, err := OpenStore(path, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kill -9 child:", err)
		os.Exit(2)
	}
	b := New(s, Options{Always: true, Capacity: 1 << 20, MaxBatch: 1 << 20, Deadline: time.Hour})
	start, _ := strconv.Atoi(os.Getenv(groupChildEnv + "_START"))
	var out sync.Mutex
	for g := range groupAppenders {
		go func() {
			for i := start; ; i++ {
				if _, err := b.Append(groupBatch(g, i)); err != nil {
					fmt.Fprintln(os.Stderr, "kill -9 child:", err)
					os.Exit(2)
				}
				out.Lock()
				fmt.Printf("appended %d %d\n", g, i)
				out.Unlock()
			}
		}()
	}
	select {}
}

// TestAlwaysKill9GroupCommit kills, with SIGKILL, a process in which
// several goroutines append to an always Buffer at once, most likely in
// the middle of a group commit, several times over the same file. Every
// batch whose Append had returned is in the file afterwards, intact, and
// each appender's batches are in the order it appended them.
func TestAlwaysKill9GroupCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := 0
	for round := range 4 {
		reported := killGroupChild(t, bin, path, start, 40+round*25)

		s := openT(t, path, testOptions())
		recs := peekAll(t, s)
		stored := map[[2]int]bool{}
		last := map[int]int{}
		for _, r := range recs {
			id := int(r.Batch.Samples[0].V) / 1000
			g, i := id/1_000_000, id%1_000_000
			batchtest.RequireEqual(t, groupBatch(g, i), r.Batch)
			if prev, ok := last[g]; ok && i <= prev {
				t.Fatalf("round %d: appender %d's batch %d stored after its batch %d", round, g, i, prev)
			}
			last[g] = i
			stored[[2]int{g, i}] = true
		}
		for _, k := range reported {
			if !stored[k] {
				t.Fatalf("round %d: batch %d of appender %d was acknowledged, then lost by kill -9", round, k[1], k[0])
			}
		}
		if q := s.Quarantined(); q != 0 {
			t.Fatalf("round %d: %d records quarantined after kill -9", round, q)
		}
		t.Logf("round %d: killed after %d acknowledged appends; %d records in the file",
			round, len(reported), len(recs))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for _, i := range last {
			start = max(start, i+1)
		}
	}
}

// killGroupChild runs the group-commit child on path, its batches
// numbered from start, until it has acknowledged n appends, then kills
// it and returns every (appender, batch) it acknowledged.
func killGroupChild(t *testing.T, bin, path string, start, n int) [][2]int {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), groupChildEnv+"="+path, groupChildEnv+"_START="+strconv.Itoa(start))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.StdinPipe(); err != nil { // held open until Wait
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked [][2]int
	sc := bufio.NewScanner(out)
	for len(acked) < n && sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "appended "); ok {
			var g, i int
			if _, err := fmt.Sscan(rest, &g, &i); err == nil {
				acked = append(acked, [2]int{g, i})
			}
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) < n {
		t.Fatalf("child acknowledged only %d appends", len(acked))
	}
	return acked
}

// TestAlwaysGroupOnFullDisk: when a group's commit fails on a full disk
// (a real one, ENOSPC), every batch of the group is kept in memory or
// counted as disk_full, none is half-stored, and they are committed once
// there is room again.
func TestAlwaysGroupOnFullDisk(t *testing.T) {
	dir := harness.MountTmpfs(t, "2m")
	opts := testOptions()
	opts.NoSync = false
	opts.MinFreeBytes = -1 // no guard: hit the real ENOSPC
	const capacity = 2000
	b := alwaysBuffer(t, filepath.Join(dir, "ep.bbolt"), opts, capacity)
	// Leave room for a few records only: sealing and merging a disk's
	// worth of them takes long under the race detector.
	free, _, err := diskFree(dir)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, filepath.Join(dir, "filler"), int(free)-64<<10)
	// Fill the disk through the buffer until a commit fails.
	for i := 0; b.Stats().MemorySamples == 0; i++ {
		if i == 10_000 {
			t.Fatal("the disk never filled")
		}
		if _, err := b.Append(batchtest.Redis(t0+int64(i)*1000, i)); err != nil {
			t.Fatal(err)
		}
	}
	stored, kept := b.Stats().Store.Samples, b.Stats().MemorySamples

	batches := make([]sample.Batch, 30)
	total := 0
	for i := range batches {
		batches[i] = batchtest.Small(i, 100, t0+100_000_000+int64(i)*1000)
		total += batches[i].Len()
	}
	dropped := 0
	for i, r := range appendWhileHeld(t, b, batches) {
		if r.err != nil {
			t.Fatalf("append %d on a full disk: %v (running out of room is no error: the batch is kept or counted)", i, r.err)
		}
		for _, d := range r.dropped {
			if d.Reason != DropDiskFull {
				t.Fatalf("append %d: dropped %+v", i, d)
			}
			dropped += d.Samples
		}
	}
	st := b.Stats()
	if st.Store.Samples != stored {
		t.Fatalf("store holds %d samples after failed commits, held %d", st.Store.Samples, stored)
	}
	if st.MemorySamples+dropped != kept+total || st.MemorySamples != capacity {
		t.Fatalf("memory %d + dropped %d, want %d kept before + %d appended, memory at capacity %d",
			st.MemorySamples, dropped, kept, total, capacity)
	}
	t.Logf("full disk: %d samples in memory, %d counted disk_full", st.MemorySamples, dropped)

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(batchtest.Small(99, 1, t0+200_000_000)); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.MemorySamples != 0 || st.Store.Samples != stored+capacity+1 {
		t.Fatalf("after freeing room: memory %d, store %d samples, want 0 and %d", st.MemorySamples, st.Store.Samples, stored+capacity+1)
	}
}

// TestAlwaysGroupErrorReachesEveryCaller: a commit that fails for another
// reason than room fails for every caller whose batch was in it, and each
// batch is still kept in memory.
func TestAlwaysGroupErrorReachesEveryCaller(t *testing.T) {
	b := alwaysBuffer(t, filepath.Join(t.TempDir(), "ep.bbolt"), testOptions(), 1<<20)
	if err := b.store.Close(); err != nil { // the store fails every write from now on
		t.Fatal(err)
	}
	batches := make([]sample.Batch, 20)
	total := 0
	for i := range batches {
		batches[i] = batchtest.Small(i, 5, t0+int64(i)*1000)
		total += batches[i].Len()
	}
	for i, r := range appendWhileHeld(t, b, batches) {
		if r.err == nil || !strings.Contains(r.err.Error(), "closed") {
			t.Fatalf("append %d into a failing store: err %v, want the store's error", i, r.err)
		}
		if errors.Is(r.err, ErrNoSpace) {
			t.Fatalf("append %d: %v", i, r.err)
		}
	}
	if got := b.Stats().MemorySamples; got != total {
		t.Fatalf("%d samples kept in memory, %d appended", got, total)
	}
}
