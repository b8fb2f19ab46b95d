package offline

// Turning samples, in whatever order the records hold them, into
// Prometheus TSDB blocks: every sample is gathered per series, each
// series sorted by time once, and then one block is written per block
// range (2h, aligned to multiples of it as Prometheus aligns its own),
// as promtool's create-blocks-from does.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/redwire/redwire/sample"
)

// appendsPerCommit bounds the samples a block writer's appender holds
// before it commits them into the writer's head, as promtool does.
const appendsPerCommit = 50_000

// point is one sample of a series.
type point struct {
	t int64
	v float64
}

// series is one label set and its samples. Until seriesSet.finish they
// are in the order read; after it, sorted by time with no timestamp twice.
type series struct {
	lset labels.Labels
	pts  []point
	next *series // another label set with the same hash
}

// seriesSet gathers samples by series. Memory: 16 bytes a sample plus
// one label set a series; the zero value is not usable (newSeriesSet).
type seriesSet struct {
	byHash     map[uint64]*series
	all        []*series
	samples    int64
	minT, maxT int64
	// Duplicates are samples of a series at a timestamp it already had;
	// Conflicts, those of them whose value differed (bit for bit). The
	// first one read is kept, as a receiver keeps the first it is sent.
	duplicates, conflicts int64
}

func newSeriesSet() *seriesSet {
	return &seriesSet{byHash: map[uint64]*series{}, minT: math.MaxInt64, maxT: math.MinInt64}
}

// add takes a batch's samples.
func (ss *seriesSet) add(b *sample.Batch) {
	for i := range b.Samples {
		s := &b.Samples[i]
		h := s.Labels.Hash()
		sr := ss.byHash[h]
		for sr != nil && !labels.Equal(sr.lset, s.Labels) {
			sr = sr.next
		}
		if sr == nil {
			sr = &series{lset: s.Labels, next: ss.byHash[h]}
			ss.byHash[h] = sr
			ss.all = append(ss.all, sr)
		}
		sr.pts = append(sr.pts, point{s.T, s.V})
		ss.minT, ss.maxT = min(ss.minT, s.T), max(ss.maxT, s.T)
	}
	ss.samples += int64(len(b.Samples))
}

// finish sorts every series by time, keeping the first read of samples
// with the same timestamp, and drops the hash index.
func (ss *seriesSet) finish() {
	for _, sr := range ss.all {
		sr.next = nil
		if !slices.IsSortedFunc(sr.pts, cmpPoint) {
			// Stable: of samples at one timestamp the first read stays first.
			slices.SortStableFunc(sr.pts, cmpPoint)
		}
		out := sr.pts[:0]
		for i, p := range sr.pts {
			if i > 0 && p.t == out[len(out)-1].t {
				ss.duplicates++
				if math.Float64bits(p.v) != math.Float64bits(out[len(out)-1].v) {
					ss.conflicts++
				}
				continue
			}
			out = append(out, p)
		}
		sr.pts = out
	}
	ss.byHash = nil
}

func cmpPoint(a, b point) int { return cmp.Compare(a.t, b.t) }

// BackfillBlock is one block a backfill wrote.
type BackfillBlock struct {
	ULID string
	Dir  string // the block's directory, in the output directory
	// MinT and MaxT are the block's time range in ms, [MinT, MaxT) as
	// meta.json has it: MaxT is one past its newest sample.
	MinT, MaxT int64
	Series     uint64
	Samples    uint64
}

// writeBlocks writes ss into one block per block range of d ms that holds
// samples, in time order, each fsynced (files and directories) before the
// next is begun, and then fsyncs dir. It returns the blocks written, also
// when it fails part way.
func (ss *seriesSet) writeBlocks(ctx context.Context, dir string, d int64) ([]BackfillBlock, error) {
	var blocks []BackfillBlock
	cur := make([]int, len(ss.all)) // per series, its first sample not yet written
	for lo := floorTo(ss.minT, d); len(ss.all) > 0; {
		if err := ctx.Err(); err != nil {
			return blocks, err
		}
		b, err := ss.writeBlock(ctx, dir, lo, lo+d, d, cur)
		if err != nil {
			return blocks, fmt.Errorf("block for [%d, %d): %w", lo, lo+d, err)
		}
		blocks = append(blocks, b)
		// The next range with a sample: a backlog may have days of gap.
		next := int64(math.MaxInt64)
		for i, sr := range ss.all {
			if cur[i] < len(sr.pts) {
				next = min(next, sr.pts[cur[i]].t)
			}
		}
		if next == math.MaxInt64 {
			break
		}
		lo = floorTo(next, d)
	}
	if err := syncDirStrict(dir); err != nil {
		return blocks, fmt.Errorf("fsync %s: %w", dir, err)
	}
	return blocks, nil
}

// writeBlock writes the samples in [lo, hi) as one block and advances cur
// past them. The range holds at least one sample.
func (ss *seriesSet) writeBlock(ctx context.Context, dir string, lo, hi, d int64, cur []int) (blk BackfillBlock, err error) {
	// A block writer's head takes samples at most half its chunk range
	// older than the newest appended; series are appended one after the
	// other, each from lo, so the range is twice the block's (as
	// promtool's backfill does).
	w, err := tsdb.NewBlockWriter(promslog.NewNopLogger(), dir, 2*d)
	if err != nil {
		return blk, err
	}
	defer func() { err = errors.Join(err, w.Close()) }()
	app := w.Appender(ctx)
	pending := 0
	for i, sr := range ss.all {
		var ref storage.SeriesRef
		j := cur[i]
		for ; j < len(sr.pts) && sr.pts[j].t < hi; j++ {
			if sr.pts[j].t < lo {
				return blk, fmt.Errorf("series %s: sample at %d before the block (internal error)", sr.lset, sr.pts[j].t)
			}
			if ref, err = app.Append(ref, sr.lset, sr.pts[j].t, sr.pts[j].v); err != nil {
				_ = app.Rollback()
				return blk, fmt.Errorf("series %s at %d: %w", sr.lset, sr.pts[j].t, err)
			}
			if pending++; pending == appendsPerCommit {
				if err := app.Commit(); err != nil {
					return blk, fmt.Errorf("commit: %w", err)
				}
				app, pending = w.Appender(ctx), 0
			}
		}
		cur[i] = j
	}
	if err := app.Commit(); err != nil {
		return blk, fmt.Errorf("commit: %w", err)
	}
	id, err := w.Flush(ctx)
	if err != nil {
		return blk, fmt.Errorf("flush: %w", err)
	}
	blk.ULID, blk.Dir = id.String(), filepath.Join(dir, id.String())
	meta, err := readBlockMeta(blk.Dir)
	if err != nil {
		return blk, err
	}
	blk.MinT, blk.MaxT = meta.MinTime, meta.MaxTime
	blk.Series, blk.Samples = meta.Stats.NumSeries, meta.Stats.NumSamples
	if err := syncTree(blk.Dir); err != nil {
		return blk, fmt.Errorf("block %s: fsync: %w", blk.Dir, err)
	}
	return blk, nil
}

// readBlockMeta reads a block's meta.json.
func readBlockMeta(dir string) (tsdb.BlockMeta, error) {
	var m tsdb.BlockMeta
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		return m, fmt.Errorf("block %s: meta.json: %w", dir, err)
	}
	return m, nil
}

// syncTree fsyncs every file and directory under root, root last: the
// block must be on disk before any buffer record it holds is deleted,
// whatever the TSDB library syncs itself.
func syncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			dirs = append(dirs, path)
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		return err
	}
	// Deepest first, so that root is synced after the entries it names.
	for _, d := range slices.Backward(dirs) {
		if err := syncDirStrict(d); err != nil {
			return err
		}
	}
	return nil
}

// floorTo rounds t down to a multiple of d, negative times included.
func floorTo(t, d int64) int64 {
	r := t % d
	if r < 0 {
		r += d
	}
	return t - r
}
