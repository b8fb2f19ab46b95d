package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// thinOutage is an outage scrape by scrape: targets Redis targets every
// second for minutes, each scrape one batch, plus per target a counter
// that resets every 7 minutes and a series that ends with a stale
// marker after 10 minutes.
func thinOutage(minutes, targets int) []sample.Batch {
	out := batchtest.Backlog(minutes*60, targets, 1000, 0)
	for i := range out {
		b := &out[i]
		inst := b.Samples[0].Labels.Get(sample.TargetLabel)
		t := b.Samples[0].T
		n := int64(i / targets)
		b.Samples = append(b.Samples, sample.Sample{
			Labels: labels.FromStrings("__name__", "redwire_test_resets_total", sample.TargetLabel, inst),
			T:      t, V: float64(n % 420),
		})
		switch {
		case n < 600:
			b.Samples = append(b.Samples, sample.Sample{Labels: labels.FromStrings("__name__", "redwire_test_gone", sample.TargetLabel, inst), T: t, V: float64(n)})
		case n == 600:
			b.Samples = append(b.Samples, sample.Sample{Labels: labels.FromStrings("__name__", "redwire_test_gone", sample.TargetLabel, inst), T: t, V: math.Float64frombits(value.StaleNaN)})
		}
		b.Metadata = nil
	}
	return out
}

// thinningStore opens a store with sealing at a small size, so that a
// few minutes make a segment and thinning has segments to work on.
func thinningStore(t *testing.T, path string, opts StoreOptions) *Store {
	t.Helper()
	s := openT(t, path, opts)
	s.sealAt, s.mergeAt = 6000, 4
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		s.counts, err = scanCounts(tx, s.smallBelow())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// seriesOf indexes samples by series, in time order.
func seriesOf(recs []Record) map[string][]sample.Sample {
	out := map[string][]sample.Sample{}
	for _, r := range recs {
		for _, s := range r.Batch.Samples {
			k := s.Labels.String()
			out[k] = append(out[k], s)
		}
	}
	return out
}

// increase is Prometheus' increase over samples without extrapolation:
// a decrease counts as a reset to 0.
func increase(ss []sample.Sample) float64 {
	var inc float64
	for i := 1; i < len(ss); i++ {
		if d := ss[i].V - ss[i-1].V; d >= 0 {
			inc += d
		} else {
			inc += ss[i].V
		}
	}
	return inc
}

// levels reads every segment record's thinning level, in key order.
func levels(t *testing.T, s *Store) []thinLevel {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []thinLevel
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			if h, err := codec.ParseHeader(v); err == nil && h.Segment {
				out = append(out, levelOf(tx, binary.BigEndian.Uint64(k)))
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestThinKeepsTheWholeOutageAtTheFloor: an outage ten times max_bytes,
// written scrape by scrape, is all there at the end: every 5-minute
// window holds a scrape of every target, the newest minute is whole,
// counters increase as they did, the stale marker is kept, the thinned
// ranges are reported with their resolution, and nothing is dropped.
func TestThinKeepsTheWholeOutageAtTheFloor(t *testing.T) {
	const minutes, targets = 40, 2
	in := thinOutage(minutes, targets)
	var full int64
	for _, b := range in {
		full += int64(b.Len())
	}
	opts := testOptions()
	opts.ThinFloor = 0 // the default: 5 minutes
	// About 2.3 bytes a sample once sealed: a tenth of the outage.
	opts.MaxBytes = full * 23 / 100
	s := thinningStore(t, filepath.Join(t.TempDir(), "ep.bbolt"), opts)

	var thinned, dropped int64
	every := map[time.Duration]int64{}
	for i, b := range in {
		ds := mustAppend(t, s, b)
		for _, d := range ds {
			if d.Reason != ReasonThinned {
				t.Fatalf("append %d: %d samples dropped (%s) while the floor would fit", i, d.Samples, d.Reason)
			}
			if d.KeptEvery <= 0 || len(d.Spans) == 0 {
				t.Fatalf("append %d: thinned without a resolution or ranges: %+v", i, d)
			}
			var n int
			for _, sp := range d.Spans {
				n += sp.Samples
				if sp.From > sp.To || sp.Target == "" {
					t.Fatalf("thinned range %+v", sp)
				}
			}
			if n != d.Samples {
				t.Fatalf("thinned %d samples, spans say %d", d.Samples, n)
			}
			thinned += int64(d.Samples)
			every[d.KeptEvery] += int64(d.Samples)
		}
		if i%500 == 0 {
			checkInvariants(t, s)
		}
	}
	checkInvariants(t, s)
	st := s.Stats()
	t.Logf("%d samples in, %d thinned at %v, %d kept in %d bytes (max %d)", full, thinned, every, st.Samples, st.Bytes, opts.MaxBytes)
	if st.Bytes > opts.MaxBytes {
		t.Fatalf("%d bytes stored, over max_bytes %d", st.Bytes, opts.MaxBytes)
	}
	if full != st.Samples+thinned+dropped {
		t.Fatalf("%d samples in, %d kept + %d thinned", full, st.Samples, thinned)
	}
	if thinned < full/2 {
		t.Fatalf("only %d of %d samples thinned: the test does not test thinning", thinned, full)
	}
	if len(every) < 3 {
		t.Fatalf("thinned to %v: want k growing with age", every)
	}

	recs := peekAll(t, s)
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Fatalf("records out of order: %d after %d", recs[i].Seq, recs[i-1].Seq)
		}
	}
	checkThinned(t, in, recs, 5*time.Minute)
}

// checkThinned checks what recs kept of in: every floor window of every
// target, the newest minute whole, whole scrapes, counters' increase and
// last values, the stale marker.
func checkThinned(t *testing.T, in []sample.Batch, recs []Record, floor time.Duration) {
	t.Helper()
	type scrape struct {
		target string
		t      int64
	}
	had, kept := map[scrape]int{}, map[scrape]int{}
	windows := map[string]map[int64]bool{}
	var newest int64
	for _, b := range in {
		for _, s := range b.Samples {
			had[scrape{s.Labels.Get(sample.TargetLabel), s.T}]++
			newest = max(newest, s.T)
		}
	}
	for _, r := range recs {
		for _, s := range r.Batch.Samples {
			tg := s.Labels.Get(sample.TargetLabel)
			kept[scrape{tg, s.T}]++
			if windows[tg] == nil {
				windows[tg] = map[int64]bool{}
			}
			windows[tg][s.T/floor.Milliseconds()] = true
		}
	}
	for sc, n := range had {
		w := sc.t / floor.Milliseconds()
		if !windows[sc.target][w] {
			t.Fatalf("target %s has no scrape left in the window from %v", sc.target, time.UnixMilli(w*floor.Milliseconds()).UTC())
		}
		k := kept[sc]
		if sc.t > newest-60_000 && k != n {
			t.Fatalf("target %s at %d (newest minute): %d of %d samples kept", sc.target, sc.t, k, n)
		}
		// Whole scrapes: all of it, or only what is always kept (stale
		// markers, the sample before a counter reset).
		if k != 0 && k != n && k > 2 {
			t.Fatalf("target %s at %d: %d of %d samples kept: not a whole scrape", sc.target, sc.t, k, n)
		}
	}
	orig, got := seriesOf([]Record{{Batch: sample.Batch{Samples: slices.Concat(batchSamples(in)...)}}}), seriesOf(recs)
	for k, ss := range orig {
		g := got[k]
		if len(g) == 0 {
			t.Fatalf("series %s lost", k)
		}
		last, glast := ss[len(ss)-1], g[len(g)-1]
		if last.T != glast.T || math.Float64bits(last.V) != math.Float64bits(glast.V) {
			t.Fatalf("series %s ends at %d=%v, was %d=%v", k, glast.T, glast.V, last.T, last.V)
		}
		if cumulative(ss[0].Labels) {
			if a, b := increase(ss), increase(g); math.Abs(a-b) > 1e-6*math.Max(1, math.Abs(a)) {
				t.Fatalf("counter %s: increase %v, was %v", k, b, a)
			}
		}
	}
	stale := 0
	for k, ss := range got {
		for _, s := range ss {
			if value.IsStaleNaN(s.V) {
				stale++
				if s.Labels.Get(model.MetricNameLabel) != "redwire_test_gone" {
					t.Fatalf("stale marker on %s", k)
				}
			}
		}
	}
	if want := len(windows); stale != want {
		t.Fatalf("%d stale markers kept, want %d", stale, want)
	}
}

func batchSamples(bs []sample.Batch) [][]sample.Sample {
	out := make([][]sample.Sample, len(bs))
	for i, b := range bs {
		out[i] = b.Samples
	}
	return out
}

// TestThinDropsOnlyAtTheFloor: with max_bytes too small even for the
// floor, the oldest records are dropped, but only once every segment
// that could be thinned is at the floor.
func TestThinDropsOnlyAtTheFloor(t *testing.T) {
	in := thinOutage(30, 1)
	opts := testOptions()
	opts.MaxBytes = 20 << 10
	opts.ThinFloor = time.Minute
	s := thinningStore(t, filepath.Join(t.TempDir(), "ep.bbolt"), opts)
	drops := 0
	for i, b := range in {
		for _, d := range mustAppend(t, s, b) {
			if d.Reason == ReasonThinned {
				continue
			}
			if d.Reason != DropBufferFull {
				t.Fatalf("append %d: dropped for %s", i, d.Reason)
			}
			drops++
			for j, l := range levels(t, s) {
				if l.every() < opts.ThinFloor {
					t.Fatalf("append %d: dropped %d samples while segment %d is at %v, finer than the floor %v", i, d.Samples, j, l.every(), opts.ThinFloor)
				}
			}
		}
	}
	if drops == 0 {
		t.Fatal("nothing dropped: max_bytes does not test the floor")
	}
	checkInvariants(t, s)
}

// TestThinCrashMidThinning: a crash in the middle of a thinning
// transaction leaves the file as the last commit left it; reopened, the
// store keeps order and resolutions, thins nothing twice, and goes on
// thinning from there.
func TestThinCrashMidThinning(t *testing.T) {
	in := thinOutage(30, 2)
	dir := t.TempDir()
	path := filepath.Join(dir, "ep.bbolt")
	opts := testOptions()
	opts.ThinFloor = 0 // the default: 5 minutes
	opts.MaxBytes = 400 << 10
	s := thinningStore(t, path, opts)
	i := 0
	for ; i < len(in) && len(levels(t, s)) < 3; i++ {
		mustAppend(t, s, in[i])
	}
	// Past the first thinning.
	for ; i < len(in); i++ {
		mustAppend(t, s, in[i])
		if ls := levels(t, s); len(ls) > 0 && ls[0].Floor != 0 {
			break
		}
	}
	// The next Append that thins dies in its transaction.
	crash := errors.New("crash")
	s.mu.Lock()
	s.thinHook = func() error { return crash }
	s.mu.Unlock()
	before := peekAll(t, s)
	beforeLevels := levels(t, s)
	for ; i < len(in); i++ {
		if _, err := s.Append(in[i]); errors.Is(err, crash) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		before, beforeLevels = peekAll(t, s), levels(t, s)
	}
	if i == len(in) {
		t.Fatal("no append thinned")
	}
	// What the disk holds now is the last commit: copy it as a crash
	// would leave it, and reopen.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.bbolt")
	if err := os.WriteFile(crashed, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	c := thinningStore(t, crashed, opts)
	after := peekAll(t, c)
	if fmt.Sprint(seqs(after)) != fmt.Sprint(seqs(before)) {
		t.Fatalf("reopened after the crash: %v, before it %v", seqs(after), seqs(before))
	}
	for j := range before {
		batchtest.RequireEqual(t, before[j].Batch, after[j].Batch)
	}
	if got := levels(t, c); fmt.Sprint(got) != fmt.Sprint(beforeLevels) {
		t.Fatalf("resolutions after the crash %v, before %v", got, beforeLevels)
	}
	// The rest of the outage on the reopened file: a scrape kept before
	// the crash in a thinned segment is one that thinning at a finer or
	// equal level keeps, so nothing is thinned twice below its level.
	for ; i < len(in); i++ {
		mustAppend(t, c, in[i])
	}
	checkInvariants(t, c)
	recs := peekAll(t, c)
	for j := 1; j < len(recs); j++ {
		if recs[j].Seq <= recs[j-1].Seq {
			t.Fatalf("records out of order after the crash: %d after %d", recs[j].Seq, recs[j-1].Seq)
		}
	}
	checkThinned(t, in, recs, 5*time.Minute)
}
