package offline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/prometheus/tsdb"

	"github.com/redwire/redwire/buffer"
)

// BackfillOptions shape Backfill.
type BackfillOptions struct {
	// Output is the directory the blocks are written to, created if
	// missing. Blocks already there are left alone; give an empty one.
	Output string
	// Stores are the buffer files to read: their parked records, and
	// with All their whole backlog (parked and pending).
	Stores []buffer.StoreFile
	All    bool
	// ExportFiles are export files (redwire buffer export) to read
	// whole; they are never changed. A damaged one is refused.
	ExportFiles []string
	// Delete removes the records written from their buffer files, and
	// only once every block and the output directory are fsynced. It
	// needs each file's exclusive lock, so it fails with
	// buffer.ErrLocked while an agent runs on one; each is held from the
	// read to the deletion, so nothing written can change in between.
	Delete bool
	// Read shapes the reads of buffer files without Delete.
	Read buffer.ReadOptions
	// BlockDuration is the blocks' time range; default 2h, Prometheus'
	// own (tsdb.DefaultBlockDuration). Blocks are aligned to multiples
	// of it.
	BlockDuration time.Duration
}

// BackfillSource is what a backfill took from one area of a buffer file,
// or from one export file.
type BackfillSource struct {
	Name string // the endpoint; for an export file, its path
	Path string
	// Area is "parked" or "pending" for a buffer file, "export" for an
	// export file.
	Area string
	// Mode is how a buffer file was read: ReadLocked, ReadSnapshot, or
	// ReadExclusive with Delete.
	Mode    string
	Records int64
	Samples int64
	// Corrupt records did not read; they are neither written nor deleted.
	Corrupt int64
	Deleted int64 // records removed from the buffer file
}

// BackfillSummary is what Backfill did.
type BackfillSummary struct {
	Output  string
	Sources []BackfillSource
	Blocks  []BackfillBlock // in time order
	Series  int             // distinct label sets
	// Read is every sample read; Samples those written, which is Read
	// less Duplicates (a series' samples at a timestamp it already had).
	// Conflicts are duplicates whose value differed: the first read was
	// kept.
	Read, Samples         int64
	Duplicates, Conflicts int64
	Duration              time.Duration
}

// Backfill writes the samples of buffer files and export files into
// Prometheus TSDB blocks in opts.Output, for a receiver that refuses them
// over remote write because they are older than its head. Samples keep
// their timestamps and values bit for bit, NaN and stale markers
// included, and their label sets as stored; a series' samples are sorted
// by time, and of several at one timestamp the first read is written.
//
// Everything is read before the first block is written, so a source that
// fails to read leaves no blocks. Memory is about 16 bytes a sample plus
// a label set a series. With opts.Delete the records written leave their
// buffer files only after every block is on disk; a failure before that
// deletes nothing.
func Backfill(ctx context.Context, opts BackfillOptions) (sum BackfillSummary, err error) {
	start := time.Now()
	defer func() { sum.Duration = time.Since(start) }()
	sum.Output = opts.Output
	d := opts.BlockDuration.Milliseconds()
	if opts.BlockDuration == 0 {
		d = tsdb.DefaultBlockDuration
	}
	switch {
	case opts.Output == "":
		return sum, errors.New("backfill: no output directory")
	case d <= 0:
		return sum, fmt.Errorf("backfill: block duration %v: want at least 1ms", opts.BlockDuration)
	case len(opts.Stores) == 0 && len(opts.ExportFiles) == 0:
		return sum, errors.New("backfill: nothing to read: no buffer file and no export file")
	}
	ss := newSeriesSet()
	held, err := readStores(ctx, opts, ss, &sum)
	defer func() {
		for _, h := range held {
			_ = h.s.Close()
		}
	}()
	if err != nil {
		return sum, err
	}
	for _, p := range opts.ExportFiles {
		src, err := readExportInto(ctx, p, ss)
		sum.Sources = append(sum.Sources, src)
		if err != nil {
			return sum, err
		}
	}
	ss.finish()
	sum.Series, sum.Read = len(ss.all), ss.samples
	sum.Duplicates, sum.Conflicts = ss.duplicates, ss.conflicts
	sum.Samples = ss.samples - ss.duplicates
	if err := os.MkdirAll(opts.Output, 0o755); err != nil {
		return sum, fmt.Errorf("backfill: output directory: %w", err)
	}
	sum.Blocks, err = ss.writeBlocks(ctx, opts.Output, d)
	if err != nil {
		return sum, fmt.Errorf("backfill: writing blocks into %s (%d complete; nothing deleted): %w", opts.Output, len(sum.Blocks), err)
	}
	for _, h := range held {
		for _, a := range h.areas {
			if err := a.area.del(h.s, a.keys); err != nil {
				return sum, fmt.Errorf("backfill: the blocks in %s are complete, but deleting the %s records written from %s failed (they are still there): %w",
					opts.Output, a.area.name, h.path, err)
			}
			sum.Sources[a.source].Deleted = int64(len(a.keys))
		}
	}
	return sum, nil
}

// heldStore is a buffer file opened exclusively for Delete, with the keys
// of the records read from each of its areas.
type heldStore struct {
	s     *buffer.Store
	path  string
	areas []heldArea
}

type heldArea struct {
	area   backfillArea
	source int // index in BackfillSummary.Sources
	keys   []uint64
}

// readStores reads the areas of every buffer file into ss. With Delete it
// returns the stores it holds, which the caller closes, also on error.
func readStores(ctx context.Context, opts BackfillOptions, ss *seriesSet, sum *BackfillSummary) ([]heldStore, error) {
	var held []heldStore
	for _, f := range opts.Stores {
		var h *heldStore
		if opts.Delete {
			s, err := openForDelete(f.Path, opts.Read)
			if errors.Is(err, buffer.ErrLocked) {
				return held, fmt.Errorf("backfill --delete: buffer file %s is held by a running agent (%w): stop the agent, or backfill without --delete (the buffer is then left as it is)",
					f.Path, buffer.ErrLocked)
			}
			if err != nil {
				return held, fmt.Errorf("backfill: buffer file %s: %w", f.Path, err)
			}
			held = append(held, heldStore{s: s, path: f.Path})
			h = &held[len(held)-1]
		}
		for _, a := range bufferAreas(opts.All) {
			src := BackfillSource{Name: f.Name, Path: f.Path, Area: a.name}
			var keys []uint64
			fn := func(r buffer.FileRecord) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				if r.Err != nil {
					src.Corrupt++
					return nil
				}
				for i := range r.Batches {
					ss.add(&r.Batches[i].Batch)
					src.Samples += int64(len(r.Batches[i].Batch.Samples))
				}
				src.Records++
				keys = append(keys, r.Key)
				return nil
			}
			var err error
			if h != nil {
				src.Mode = ReadExclusive
				err = a.readHeld(h.s, f.Path, fn)
			} else {
				var snapshot bool
				snapshot, err = a.read(f.Path, opts.Read, fn)
				src.Mode = readMode(snapshot)
			}
			sum.Sources = append(sum.Sources, src)
			if err != nil {
				return held, fmt.Errorf("backfill: reading the %s records of buffer file %s: %w", a.name, f.Path, err)
			}
			if h != nil {
				h.areas = append(h.areas, heldArea{area: a, source: len(sum.Sources) - 1, keys: keys})
			}
		}
	}
	return held, nil
}

// readExportInto reads the export file at path whole into ss.
func readExportInto(ctx context.Context, path string, ss *seriesSet) (BackfillSource, error) {
	src := BackfillSource{Name: path, Path: path, Area: "export"}
	f, fh, err := ReadExportFile(path)
	if err != nil {
		return src, fmt.Errorf("backfill: export file %w", err)
	}
	defer fh.Close()
	t, err := f.Records(f.Start(), func(r ExportRecord) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ss.add(&r.Batch)
		src.Records++
		src.Samples += int64(len(r.Batch.Samples))
		return nil
	}, nil)
	if err == nil && t == nil {
		err = errors.New("no trailer: truncated")
	}
	if err != nil {
		return src, fmt.Errorf("backfill: export file %s: %w (damaged: nothing written; redwire replay --skip-corrupt can send its readable records)", path, err)
	}
	return src, nil
}
