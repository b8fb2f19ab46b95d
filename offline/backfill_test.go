package offline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// backlog is what the backfill tests store and expect back.
type backlog struct {
	batches    []sample.Batch
	want       map[string][]point // by series, in time order, the first read of each timestamp
	minT, maxT int64
	samples    int64 // in batches
	dups       int64 // samples at a timestamp their series already had
	conflicts  int64 // of those, with another value
}

// newBacklog is 5 hours of four series at 60 s from base (ms), spread
// over records in shuffled order, so that no record is in time order and
// a series' samples are out of order across records; then three records
// stored again (an agent's retry), and one sample again with another
// value. Series redwire_bf_nan holds NaNs and stale markers.
func newBacklog(base int64) backlog {
	const n = 300
	var all []sample.Sample
	for s := range 3 {
		ls := labels.FromStrings("__name__", "redwire_bf_gauge", "s", strconv.Itoa(s), "job", "redis")
		for i := range n {
			all = append(all, sample.Sample{Labels: ls, T: base + int64(i)*60_000, V: float64(i)*1.5 + float64(s)})
		}
	}
	nan := labels.FromStrings("__name__", "redwire_bf_nan", "job", "redis")
	for i := range n {
		v := float64(i)
		switch {
		case i%11 == 5:
			v = math.Float64frombits(value.StaleNaN)
		case i%7 == 3:
			v = math.NaN()
		}
		all = append(all, sample.Sample{Labels: nan, T: base + int64(i)*60_000, V: v})
	}
	bl := backlog{want: map[string][]point{}, minT: base, maxT: base + (n-1)*60_000}
	for _, s := range all {
		bl.want[s.Labels.String()] = append(bl.want[s.Labels.String()], point{s.T, s.V})
	}
	rng := rand.New(rand.NewPCG(14, 5))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for chunk := range slices.Chunk(all, 50) {
		bl.batches = append(bl.batches, sample.Batch{Samples: chunk})
	}
	bl.batches = append(bl.batches, bl.batches[0], bl.batches[7], bl.batches[20])
	bl.dups = 150
	conflict := all[0]
	conflict.V = 1e9
	bl.batches = append(bl.batches, sample.Batch{Samples: []sample.Sample{conflict}})
	bl.dups, bl.conflicts = bl.dups+1, 1
	for _, b := range bl.batches {
		bl.samples += int64(len(b.Samples))
	}
	return bl
}

// store parks the backlog in a new buffer file, as an agent whose
// receiver refused it for its age does.
func (bl backlog) store(t *testing.T, dir, name string) buffer.StoreFile {
	t.Helper()
	sf := buffer.EndpointFile(dir, name)
	s, _, err := buffer.OpenStore(sf.Path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bl.batches {
		if _, err := s.Park(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return sf
}

// daysAgo is a base time a few days back, beyond any receiver's head.
func daysAgo() int64 { return time.Now().Add(-75 * time.Hour).Truncate(time.Hour).UnixMilli() }

func backfillT(t *testing.T, opts BackfillOptions) BackfillSummary {
	t.Helper()
	sum, err := Backfill(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// checkSummary checks the counts of a backfill of bl.
func checkSummary(t *testing.T, bl backlog, sum BackfillSummary) {
	t.Helper()
	if sum.Read != bl.samples || sum.Duplicates != bl.dups || sum.Conflicts != bl.conflicts ||
		sum.Samples != bl.samples-bl.dups || sum.Series != len(bl.want) {
		t.Fatalf("summary %+v; want %d read, %d duplicates, %d conflicts, %d series", sum, bl.samples, bl.dups, bl.conflicts, len(bl.want))
	}
	var inBlocks uint64
	for i, b := range sum.Blocks {
		inBlocks += b.Samples
		if b.MinT/7_200_000 != (b.MaxT-1)/7_200_000 {
			t.Errorf("block %s spans [%d, %d), across a 2h boundary", b.ULID, b.MinT, b.MaxT)
		}
		if i > 0 && b.MinT < sum.Blocks[i-1].MaxT {
			t.Errorf("block %s overlaps the one before", b.ULID)
		}
	}
	// 5 hours from a whole hour: 3 or 4 two-hour ranges.
	if inBlocks != uint64(sum.Samples) || len(sum.Blocks) < 3 {
		t.Fatalf("%d blocks holding %d samples; want %d samples in at least 3", len(sum.Blocks), inBlocks, sum.Samples)
	}
}

// blockSamples reads every sample of the blocks in dir with the TSDB
// library itself: stale markers and NaN payloads, which the query API
// does not show, bit for bit.
func blockSamples(t *testing.T, dir string) map[string][]point {
	t.Helper()
	db, err := tsdb.OpenDBReadOnly(dir, t.TempDir(), promslog.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Block by block: the read-only DB's own querier wants a WAL, which
	// an output directory has not.
	blocks, err := db.Blocks()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(blocks, func(a, b tsdb.BlockReader) int { return cmp.Compare(a.Meta().MinTime, b.Meta().MinTime) })
	got := map[string][]point{}
	for _, b := range blocks {
		q, err := tsdb.NewBlockQuerier(b, math.MinInt64, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
		for set.Next() {
			s := set.At()
			it := s.Iterator(nil)
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				got[s.Labels().String()] = append(got[s.Labels().String()], point{ts, v})
			}
			if it.Err() != nil {
				t.Fatal(it.Err())
			}
		}
		if set.Err() != nil {
			t.Fatal(set.Err())
		}
		q.Close()
	}
	return got
}

// samePoints says how got differs from want, values bit for bit.
func samePoints(want, got map[string][]point) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d series, want %d", len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if len(g) != len(w) {
			return fmt.Errorf("%s: %d samples, want %d", k, len(g), len(w))
		}
		for i := range w {
			if g[i].t != w[i].t || math.Float64bits(g[i].v) != math.Float64bits(w[i].v) {
				return fmt.Errorf("%s sample %d: %d %#x, want %d %#x", k, i, g[i].t, math.Float64bits(g[i].v), w[i].t, math.Float64bits(w[i].v))
			}
		}
	}
	return nil
}

func blockDirs(sum BackfillSummary) []string {
	var dirs []string
	for _, b := range sum.Blocks {
		dirs = append(dirs, b.Dir)
	}
	return dirs
}

// TestBackfillBlocksServeEverySampleFromAFreshPrometheus writes a
// shuffled backlog with duplicates, NaNs and stale markers into blocks,
// finds every sample in them bit for bit, and then has a real Prometheus
// (2.42 and 3.x) that never took a sample serve each one back, with its
// timestamp and value, from those blocks alone.
func TestBackfillBlocksServeEverySampleFromAFreshPrometheus(t *testing.T) {
	bl := newBacklog(daysAgo())
	sf := bl.store(t, t.TempDir(), "prom")
	out := filepath.Join(t.TempDir(), "blocks")
	sum := backfillT(t, BackfillOptions{Output: out, Stores: []buffer.StoreFile{sf}, All: true})
	checkSummary(t, bl, sum)
	if err := samePoints(bl.want, blockSamples(t, out)); err != nil {
		t.Fatalf("blocks: %v", err)
	}
	// The query API shows NaN but no stale marker.
	wantAPI := map[string][]point{}
	for k, pts := range bl.want {
		for _, p := range pts {
			if !value.IsStaleNaN(p.v) {
				wantAPI[k] = append(wantAPI[k], p)
			}
		}
	}
	for _, v3 := range []bool{false, true} {
		t.Run(map[bool]string{false: "prometheus-2.42", true: "prometheus-3"}[v3], func(t *testing.T) {
			p := harness.StartPrometheusWithBlocks(t, harness.PrometheusOptions{Version3: v3}, blockDirs(sum)...)
			window := time.Since(time.UnixMilli(bl.minT)) + time.Hour
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rs, err := p.Samples(ctx, `{__name__=~"redwire_bf_.+"}`, window)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]point{}
			for _, s := range rs {
				k := labels.FromMap(s.Labels).String()
				for _, pt := range s.Points {
					got[k] = append(got[k], point{pt.T.UnixMilli(), pt.V})
				}
			}
			// JSON carries NaN as "NaN": any NaN reads back as the
			// canonical one, so compare NaN by class here; the bits were
			// checked in the blocks.
			for k, pts := range got {
				for i, pt := range pts {
					if w := wantAPI[k]; i < len(w) && math.IsNaN(pt.v) && math.IsNaN(w[i].v) {
						pts[i].v = w[i].v
					}
				}
			}
			if err := samePoints(wantAPI, got); err != nil {
				t.Fatalf("%s serves: %v", p.URL(), err)
			}
		})
	}
}

// TestBackfillExportFilesWriteTheSameBlocks: an export file of the same
// backlog backfills to the same samples, and is left as it was.
func TestBackfillExportFilesWriteTheSameBlocks(t *testing.T) {
	bl := newBacklog(daysAgo())
	sf := bl.store(t, t.TempDir(), "a")
	exp := filepath.Join(t.TempDir(), "a.rwx")
	if _, err := Export(context.Background(), exp, []buffer.StoreFile{sf}, ExportOptions{Parked: true}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(exp)
	out := t.TempDir()
	sum := backfillT(t, BackfillOptions{Output: out, ExportFiles: []string{exp}})
	checkSummary(t, bl, sum)
	if err := samePoints(bl.want, blockSamples(t, out)); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(exp); string(after) != string(before) {
		t.Fatal("backfill changed the export file")
	}
	if s := sum.Sources[0]; s.Area != "export" || s.Records != int64(len(bl.batches)) || s.Samples != bl.samples {
		t.Fatalf("source %+v", s)
	}
}

func storeBatches(t *testing.T, sf buffer.StoreFile) []sample.Batch {
	t.Helper()
	var out []sample.Batch
	if _, _, err := buffer.ReadStore(sf.Path, buffer.ReadOptions{Parked: true}, func(r buffer.FileRecord) error {
		for _, b := range r.Batches {
			out = append(out, b.Batch)
		}
		return r.Err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBackfillDeleteRemovesExactlyWhatItWrote: without --delete the
// buffer is unchanged; with it, the records written leave the file
// backfilled and no other; a backfill that fails before its blocks are
// on disk deletes nothing.
func TestBackfillDeleteRemovesExactlyWhatItWrote(t *testing.T) {
	bl := newBacklog(daysAgo())
	dir := t.TempDir()
	a, b := bl.store(t, dir, "a"), bl.store(t, dir, "b")

	backfillT(t, BackfillOptions{Output: t.TempDir(), Stores: []buffer.StoreFile{a}})
	if got := storeBatches(t, a); len(got) != len(bl.batches) {
		t.Fatalf("without delete: %d batches left of %d", len(got), len(bl.batches))
	}

	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Backfill(context.Background(), BackfillOptions{Output: filepath.Join(notADir, "blocks"), Stores: []buffer.StoreFile{a}, Delete: true}); err == nil {
		t.Fatal("backfill into a path under a file succeeded")
	}
	if got := storeBatches(t, a); len(got) != len(bl.batches) {
		t.Fatalf("a failed backfill deleted: %d batches left of %d", len(got), len(bl.batches))
	}

	out := t.TempDir()
	sum := backfillT(t, BackfillOptions{Output: out, Stores: []buffer.StoreFile{a}, Delete: true})
	if err := samePoints(bl.want, blockSamples(t, out)); err != nil {
		t.Fatal(err)
	}
	for _, s := range sum.Sources {
		if s.Mode != ReadExclusive || s.Deleted != s.Records || s.Records != int64(len(bl.batches)) {
			t.Errorf("source %+v", s)
		}
	}
	if got := storeBatches(t, a); len(got) != 0 {
		t.Fatalf("%d batches left in %s after backfill --delete", len(got), a.Name)
	}
	got := storeBatches(t, b)
	if len(got) != len(bl.batches) {
		t.Fatalf("%s, not backfilled, lost batches: %d of %d", b.Name, len(got), len(bl.batches))
	}
	for i := range got {
		batchtest.RequireEqual(t, bl.batches[i], got[i])
	}
}

// TestBackfillTakesParkedByDefaultAndAllWithAll: a buffer file holding
// a backlog still to send (pending) and one the receiver refused
// (parked): a backfill takes only the parked one unless --all, and
// --delete removes only what it wrote.
func TestBackfillTakesParkedByDefaultAndAllWithAll(t *testing.T) {
	parked, pending := newBacklog(daysAgo()), newBacklog(daysAgo()+int64(10*time.Hour/time.Millisecond))
	sf := buffer.EndpointFile(t.TempDir(), "mixed")
	s, _, err := buffer.OpenStore(sf.Path, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range parked.batches {
		if _, err := s.Park(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range pending.batches {
		mustAppend(t, s, b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	sum := backfillT(t, BackfillOptions{Output: t.TempDir(), Stores: []buffer.StoreFile{sf}})
	if sum.Samples != parked.samples-parked.dups {
		t.Errorf("default backfill wrote %d samples, want the parked %d", sum.Samples, parked.samples-parked.dups)
	}
	sum = backfillT(t, BackfillOptions{Output: t.TempDir(), Stores: []buffer.StoreFile{sf}, All: true})
	if want := parked.samples - parked.dups + pending.samples - pending.dups; sum.Samples != want {
		t.Errorf("--all wrote %d samples, want %d", sum.Samples, want)
	}
	backfillT(t, BackfillOptions{Output: t.TempDir(), Stores: []buffer.StoreFile{sf}, Delete: true})
	if got := storeBatches(t, sf); len(got) != 0 {
		t.Errorf("%d parked batches left after --delete", len(got))
	}
	var left int
	if _, _, err := buffer.ReadStore(sf.Path, buffer.ReadOptions{}, func(r buffer.FileRecord) error {
		left += len(r.Batches)
		return r.Err
	}); err != nil {
		t.Fatal(err)
	}
	if left != len(pending.batches) {
		t.Errorf("--delete of the parked area left %d pending batches of %d", left, len(pending.batches))
	}
}

// TestBackfillDeleteRefusesAFileAnAgentHolds: the agent's lock makes
// --delete fail, naming the file and the way out; without --delete the
// file is read from a snapshot.
func TestBackfillDeleteRefusesAFileAnAgentHolds(t *testing.T) {
	bl := newBacklog(daysAgo())
	sf := bl.store(t, t.TempDir(), "held")
	openT(t, sf.Path, testOptions()) // the running agent
	ro := buffer.ReadOptions{LockTimeout: 50 * time.Millisecond, TempDir: t.TempDir()}
	out := t.TempDir()
	_, err := Backfill(context.Background(), BackfillOptions{Output: out, Stores: []buffer.StoreFile{sf}, Delete: true, Read: ro})
	if !errors.Is(err, buffer.ErrLocked) || !strings.Contains(err.Error(), sf.Path) || !strings.Contains(err.Error(), "stop the agent") {
		t.Fatalf("backfill --delete of a held file: %v", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("a refused backfill wrote %d entries", len(ents))
	}
	sum := backfillT(t, BackfillOptions{Output: out, Stores: []buffer.StoreFile{sf}, Read: ro})
	if sum.Sources[0].Mode != ReadSnapshot || sum.Samples != bl.samples-bl.dups {
		t.Fatalf("backfill of a held file without --delete: %+v", sum)
	}
}

// BenchmarkBackfill: a day of 400 series at 10 s (3.5M samples, one
// batch a scrape) from a buffer file into blocks, read to fsync.
func BenchmarkBackfill(b *testing.B) {
	const seriesN, scrapes = 400, 8640
	base := time.Now().Add(-72 * time.Hour).Truncate(2 * time.Hour).UnixMilli()
	lsets := make([]labels.Labels, seriesN)
	for i := range lsets {
		lsets[i] = labels.FromStrings("__name__", "redis_bench_"+strconv.Itoa(i%40), "instance", "redis-"+strconv.Itoa(i/40)+":6379", "job", "redis")
	}
	sf := buffer.EndpointFile(b.TempDir(), "bench")
	s, _, err := buffer.OpenStore(sf.Path, testOptions())
	if err != nil {
		b.Fatal(err)
	}
	for k := range scrapes {
		batch := sample.Batch{Samples: make([]sample.Sample, seriesN)}
		for i := range batch.Samples {
			batch.Samples[i] = sample.Sample{Labels: lsets[i], T: base + int64(k)*10_000, V: float64(k*i) / 3}
		}
		mustAppend(b, s, batch)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	var samples int64
	for b.Loop() {
		sum, err := Backfill(context.Background(), BackfillOptions{Output: b.TempDir(), Stores: []buffer.StoreFile{sf}, All: true})
		if err != nil {
			b.Fatal(err)
		}
		samples += sum.Samples
	}
	b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
}
