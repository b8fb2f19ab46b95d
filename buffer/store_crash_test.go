package buffer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// TestStoreDurable: what Append returned for is in the file, for a clean
// Close and for a process that never closed it.
func TestStoreDurable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ep.bbolt")
	opts := testOptions()
	opts.NoSync = false
	s, _, err := OpenStore(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustAppend(t, s, batchtest.Redis(t0+int64(i)*1000, i))
	}

	// A copy taken while the store is open and never closed is what the
	// filesystem holds if the process dies now: every committed page was
	// written with pwrite before Append returned. (It says nothing about
	// power loss, which rests on fsync and cannot be tested here.)
	crashed := filepath.Join(dir, "crashed.bbolt")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crashed, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	c := openT(t, crashed, opts)
	if got := seqs(peekAll(t, c)); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("copy of an open store holds %v", got)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, path, opts)
	recs := peekAll(t, s)
	if len(recs) != 5 {
		t.Fatalf("after Close and reopen: %v", seqs(recs))
	}
	for i, r := range recs {
		batchtest.RequireEqual(t, batchtest.Redis(t0+int64(i)*1000, i), r.Batch)
	}
}

// killChildEnv names the store the kill -9 child appends to. Set, it makes
// the test binary that child (see init) instead of a test run, so no test
// exists that could pass without asserting anything.
const killChildEnv = "REDWIRE_TEST_KILL9_STORE"

// killBatch is the batch with sequence number seq in the kill -9 test.
func killBatch(seq uint64) sample.Batch { return batchtest.Redis(t0+int64(seq)*1000, int(seq)) }

// init turns the test binary into the process TestStoreKill9 kills when
// killChildEnv is set: it appends to the store until killed. It exits when
// its stdin closes (the test is gone), so it never outlives the test.
func init() {
	path := os.Getenv(killChildEnv)
	if path == "" {
		return
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	opts := testOptions()
	opts.NoSync = false
	s, _, err := OpenStore(path, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kill -9 child:", err)
		os.Exit(2)
	}
	for {
		if _, err := s.Append(killBatch(s.LastSeq() + 1)); err != nil {
			fmt.Fprintln(os.Stderr, "kill -9 child:", err)
			os.Exit(2)
		}
		// Printed only once Append has returned: the parent may rely on
		// every printed record.
		fmt.Printf("appended %d\n", s.LastSeq())
	}
}

// TestStoreKill9 kills a process with SIGKILL while it appends, most likely
// mid-commit, several times over the same file, and checks each time that
// every record it reported is there, in order and intact, and that nothing
// half-written shows up.
func TestStoreKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	var reported uint64
	for round := range 4 {
		reported = killChild(t, path, reported+uint64(10+round*7))

		s := openT(t, path, testOptions())
		recs := peekAll(t, s)
		if uint64(len(recs)) < reported {
			t.Fatalf("round %d: %d records after kill -9, child had reported %d", round, len(recs), reported)
		}
		for i, r := range recs {
			if r.Seq != uint64(i+1) {
				t.Fatalf("round %d: record %d has Seq %d: gap or reorder", round, i, r.Seq)
			}
			batchtest.RequireEqual(t, killBatch(r.Seq), r.Batch)
		}
		if q := s.Quarantined(); q != 0 {
			t.Fatalf("round %d: %d records quarantined after kill -9", round, q)
		}
		t.Logf("round %d: killed after %d reported appends; %d records in the file", round, reported, len(recs))
		reported = uint64(len(recs))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// killChild runs the test binary as the kill -9 child (see init) on path
// until it reports record until, then kills it with SIGKILL and returns the
// last record reported.
func killChild(t *testing.T, path string, until uint64) uint64 {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Held open until Wait: the child's way to notice the test is gone.
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var last uint64
	sc := bufio.NewScanner(out)
	for last < until && sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "appended "); ok {
			last, _ = strconv.ParseUint(n, 10, 64)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if last < until {
		t.Fatalf("child reported only up to record %d", last)
	}
	return last
}

// TestStoreRandomOps runs random sequences of every operation against a
// simple model of the FIFO and checks, after every step, the contents
// against the model and the in-memory counts against a rescan of the file.
func TestStoreRandomOps(t *testing.T) {
	seeds := 8
	steps := 1500
	if testing.Short() {
		seeds, steps = 2, 300
	}
	for seed := range seeds {
		t.Run(strconv.Itoa(seed), func(t *testing.T) {
			randomOps(t, uint64(seed), steps)
		})
	}
}

type modelRec struct {
	seq  uint64
	b    sample.Batch
	size int64
	h    codec.Header
}

// withFakeDisk makes s see a filesystem that is full while *full and
// plenty free otherwise, and compact at test sizes.
func withFakeDisk(s *Store, full *bool) *Store {
	s.freeSpace = func(string) (int64, bool, error) {
		if *full {
			return 0, true, nil
		}
		return 1 << 40, true, nil
	}
	s.compactAt, s.slack = 32<<10, 8<<10
	return s
}

func randomOps(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 99))
	now := time.UnixMilli(t0)
	opts := testOptions()
	opts.MinFreeBytes = 1
	opts.Now = func() time.Time { return now }
	if rng.IntN(2) == 0 {
		opts.MaxAge = time.Duration(10+rng.IntN(50)) * time.Second
	}
	if rng.IntN(2) == 0 {
		opts.MaxBytes = int64(2000 + rng.IntN(6000))
	}
	path := filepath.Join(t.TempDir(), "ep.bbolt")
	diskFull := false
	open := func() *Store { return withFakeDisk(openT(t, path, opts), &diskFull) }
	s := open()

	var (
		model     []modelRec
		next      uint64 = 1 // what LastSeq+1 must be
		persisted uint64 = 1 // next_seq as last written to the file
		batchID   int
	)
	var parked []modelRec // the parked area, in key order
	cutoff := func() int64 { return now.Add(-opts.MaxAge).UnixMilli() }
	modelBytes := func() (n int64) {
		for _, r := range model {
			n += r.size
		}
		return n
	}
	parkedBytes := func() (n int64) {
		for _, r := range parked {
			n += r.size
		}
		return n
	}
	over := func() bool { return modelBytes()+parkedBytes() > opts.MaxBytes }
	dropFront := func(d *Dropped, drop func(r modelRec) bool) {
		for len(model) > 0 && drop(model[0]) {
			d.Batches++
			d.Samples += int(model[0].h.Samples)
			model = model[1:]
		}
	}
	// makeRoom drops parked records first, then the FIFO's, oldest first.
	makeRoom := func(pfull, full *Dropped) {
		if opts.MaxBytes <= 0 {
			return
		}
		for len(parked) > 0 && over() {
			pfull.Batches++
			pfull.Samples += int(parked[0].h.Samples)
			parked = parked[1:]
		}
		dropFront(full, func(modelRec) bool { return over() })
	}

	events := map[string]int{}
	defer func() { t.Logf("seed %d, MaxAge %v, MaxBytes %d: %v", seed, opts.MaxAge, opts.MaxBytes, events) }()
	for step := range steps {
		var op string
		switch r := rng.IntN(112); {
		case r >= 100:
			op = parkedOp(t, rng, step, r, s, &parked, &next, &persisted, &batchID, now, opts, diskFull, makeRoom)
		case r < 45:
			op = "append"
			batchID++
			n := 1 + rng.IntN(30)
			ts := now.UnixMilli() - int64(rng.IntN(30_000))
			b := batchtest.Small(batchID, n, ts)
			if rng.IntN(10) == 0 {
				b.Samples[0].V = batchtest.StaleNaN
			}
			rec := modelRec{seq: next, b: b, size: recordSize(b), h: codec.HeaderOf(&b)}
			tooOld := Dropped{Reason: DropTooOld}
			full := Dropped{Reason: DropBufferFull}
			pfull := Dropped{Reason: DropBufferFull, Parked: true}
			write := true
			switch {
			case opts.MaxAge > 0 && rec.h.MaxT < cutoff():
				write = false
				tooOld.Batches, tooOld.Samples = 1, n
			case opts.MaxBytes > 0 && rec.size > opts.MaxBytes:
				write = false
				full.Batches, full.Samples = 1, n
			}
			before := dump(t, s)
			got, err := s.Append(b)
			for _, d := range got {
				events["dropped "+d.Reason]++
			}
			if write && diskFull {
				events["ErrNoSpace"]++
				if !errors.Is(err, ErrNoSpace) {
					t.Fatalf("step %d: Append on a full disk = %v", step, err)
				}
				if after := dump(t, s); after != before {
					t.Fatalf("step %d: failed Append changed the store", step)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: Append: %v", step, err)
			}
			if opts.MaxAge > 0 {
				dropFront(&tooOld, func(r modelRec) bool { return r.h.MaxT < cutoff() })
			}
			if write {
				model = append(model, rec)
				persisted = next + 1
				makeRoom(&pfull, &full)
			}
			next++
			if want := dropIfAny(tooOld, pfull, full); fmt.Sprint(counted(t, got)) != fmt.Sprint(counts(want)) {
				t.Fatalf("step %d: Append dropped %v, model %v", step, got, want)
			}
		case r < 60:
			op = "peek"
			maxSamples := rng.IntN(80)
			recs, err := s.Peek(maxSamples)
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			var want []modelRec
			total := 0
			for _, m := range model {
				if len(want) > 0 && total+len(m.b.Samples) > maxSamples {
					break
				}
				want = append(want, m)
				total += len(m.b.Samples)
			}
			if len(recs) != len(want) {
				t.Fatalf("step %d: Peek(%d) returned %d records, model %d", step, maxSamples, len(recs), len(want))
			}
			for i := range recs {
				if recs[i].Seq != want[i].seq {
					t.Fatalf("step %d: Peek seq %d, model %d", step, recs[i].Seq, want[i].seq)
				}
				batchtest.RequireEqual(t, want[i].b, recs[i].Batch)
			}
		case r < 70:
			op = "delete"
			if len(model) == 0 {
				break
			}
			upTo := model[0].seq - 1 + uint64(rng.IntN(len(model)+2))
			if rng.IntN(4) == 0 {
				upTo = next // drain: the way to an empty, compactable store
			}
			if err := s.Delete(upTo); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			var d Dropped
			dropFront(&d, func(r modelRec) bool { return r.seq <= upTo })
		case r < 80:
			op = "expire"
			now = now.Add(time.Duration(rng.IntN(20_000)) * time.Millisecond)
			d, err := s.Expire()
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			want := Dropped{Reason: DropTooOld}
			if opts.MaxAge > 0 {
				dropFront(&want, func(r modelRec) bool { return r.h.MaxT < cutoff() })
			}
			if n := spanSamples(d.Spans); n != d.Samples {
				t.Fatalf("step %d: Expire's spans hold %d samples, it dropped %d", step, n, d.Samples)
			}
			if d.Spans = nil; d.Reason != want.Reason || d.Samples != want.Samples || d.Batches != want.Batches {
				t.Fatalf("step %d: Expire = %+v, model %+v", step, d, want)
			}
		case r < 87:
			op = "disk"
			diskFull = rng.IntN(4) == 0
		case r < 95:
			op = "compact"
			if pb := parkedBytes(); len(model) == 0 && s.Stats().FileBytes > s.compactAt+pb+pb/2 {
				persisted = next
				events["compacted"]++
			}
			if err := s.Compact(); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		default:
			op = "reopen"
			if pb := parkedBytes(); len(model) == 0 && s.Stats().FileBytes > s.compactAt+pb+pb/2 {
				persisted = next // Close compacts
				events["compacted"]++
			}
			if err := s.Close(); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			s = open()
			// Sequence numbers of batches dropped at once are not
			// written down; the file remembers the last stored one.
			next = persisted
		}
		events[op]++
		checkInvariants(t, s)
		st := s.Stats()
		var samples int64
		for _, m := range model {
			samples += m.h.Samples
		}
		if st.Batches != int64(len(model)) || st.Samples != samples || st.Bytes != modelBytes() {
			t.Fatalf("step %d (%s): Stats %+v, model %d batches %d samples %d bytes", step, op, st, len(model), samples, modelBytes())
		}
		if len(model) > 0 && st.OldestT != model[0].h.MinT {
			t.Fatalf("step %d (%s): OldestT %d, model %d", step, op, st.OldestT, model[0].h.MinT)
		}
		if s.LastSeq() != next-1 {
			t.Fatalf("step %d (%s): LastSeq %d, model %d", step, op, s.LastSeq(), next-1)
		}
		if want := parkedStats(parked); st.Parked != want {
			t.Fatalf("step %d (%s): Parked %+v, model %+v", step, op, st.Parked, want)
		}
	}
}

// parkedOp is randomOps' step r (100 or more) on the parked area: park,
// peek or delete parked records, checked against the model.
func parkedOp(t *testing.T, rng *rand.Rand, step, r int, s *Store, parked *[]modelRec, next, persisted *uint64, batchID *int,
	now time.Time, opts StoreOptions, diskFull bool, makeRoom func(pfull, full *Dropped)) string {
	switch {
	case r < 106:
		*batchID++
		n := 1 + rng.IntN(30)
		b := batchtest.Small(*batchID, n, now.UnixMilli()-int64(rng.IntN(3_600_000))) // old, whatever MaxAge says
		rec := modelRec{seq: *next, b: b, size: recordSize(b), h: codec.HeaderOf(&b)}
		pfull := Dropped{Reason: DropBufferFull, Parked: true}
		full := Dropped{Reason: DropBufferFull}
		before := dump(t, s)
		got, err := s.Park(b)
		switch {
		case opts.MaxBytes > 0 && rec.size > opts.MaxBytes:
			pfull.Batches, pfull.Samples = 1, n
		case diskFull:
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("step %d: Park on a full disk = %v", step, err)
			}
			if after := dump(t, s); after != before {
				t.Fatalf("step %d: failed Park changed the store", step)
			}
			return "park ErrNoSpace"
		default:
			*parked = append(*parked, rec)
			*persisted = *next + 1
			makeRoom(&pfull, &full)
		}
		if err != nil {
			t.Fatalf("step %d: Park: %v", step, err)
		}
		*next++
		if want := dropIfAny(pfull, full); fmt.Sprint(counted(t, got)) != fmt.Sprint(counts(want)) {
			t.Fatalf("step %d: Park dropped %v, model %v", step, got, want)
		}
		return "park"
	case r < 109:
		var after uint64
		if len(*parked) > 0 && rng.IntN(2) == 0 {
			after = (*parked)[rng.IntN(len(*parked))].seq
		}
		maxSamples := rng.IntN(80)
		minT := int64(math.MinInt64)
		if rng.IntN(2) == 0 {
			minT = now.UnixMilli() - int64(rng.IntN(3_600_000))
		}
		recs, err := s.PeekParked(after, maxSamples, minT)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		var want []modelRec
		total := 0
		for _, m := range *parked {
			if m.seq <= after || m.h.MaxT < minT {
				continue
			}
			if len(want) > 0 && total+len(m.b.Samples) > maxSamples {
				break
			}
			want = append(want, m)
			total += len(m.b.Samples)
		}
		if len(recs) != len(want) {
			t.Fatalf("step %d: PeekParked(%d, %d, %d) returned %d records, model %d", step, after, maxSamples, minT, len(recs), len(want))
		}
		for i := range recs {
			if recs[i].Seq != want[i].seq {
				t.Fatalf("step %d: PeekParked seq %d, model %d", step, recs[i].Seq, want[i].seq)
			}
			batchtest.RequireEqual(t, want[i].b, recs[i].Batch)
		}
		return "peek parked"
	default:
		keys := []uint64{*next + 5} // never used: ignored
		kept := (*parked)[:0:0]
		for _, m := range *parked {
			if rng.IntN(3) == 0 {
				keys = append(keys, m.seq)
			} else {
				kept = append(kept, m)
			}
		}
		if err := s.DeleteParked(keys); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		*parked = kept
		return "delete parked"
	}
}

// parkedStats is what Parked must say of the model's parked records.
func parkedStats(parked []modelRec) ParkedStats {
	var st ParkedStats
	for i, m := range parked {
		if i == 0 {
			st.MinT, st.MaxT = m.h.MinT, m.h.MaxT
		}
		st.MinT, st.MaxT = min(st.MinT, m.h.MinT), max(st.MaxT, m.h.MaxT)
		st.Batches++
		st.Samples += m.h.Samples
		st.Bytes += m.size
	}
	return st
}

// spanSamples is how many samples spans cover.
func spanSamples(spans []sample.Span) (n int) {
	for _, sp := range spans {
		n += sp.Samples
	}
	return n
}

// counted checks that the spans of each drop in ds cover its samples and
// returns counts(ds).
func counted(t *testing.T, ds []Dropped) []dropCount {
	t.Helper()
	for _, d := range ds {
		if n := spanSamples(d.Spans); n != d.Samples {
			t.Fatalf("%s drop of %d samples has spans of %d", d.Reason, d.Samples, n)
		}
	}
	return counts(ds)
}

// dropCount is a Dropped without its spans, to compare by the counts.
type dropCount struct {
	Reason           string
	Samples, Batches int
	Parked           bool
}

func counts(ds []Dropped) []dropCount {
	out := make([]dropCount, len(ds))
	for i, d := range ds {
		out[i] = dropCount{d.Reason, d.Samples, d.Batches, d.Parked}
	}
	return out
}
