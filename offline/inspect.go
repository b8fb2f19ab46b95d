package offline

import (
	"fmt"
	"os"

	"github.com/redwire/redwire/buffer"
)

// How a buffer file was read by InspectStore or Export.
const (
	// ReadLocked: under bbolt's shared lock, so no agent had the file
	// open and nothing changed while it was read.
	ReadLocked = "locked"
	// ReadSnapshot: a running agent holds the file's exclusive lock (a
	// shared lock would wait for it forever), so the file was copied
	// without a lock and the copy read; buffer.ReadStore says why the
	// copy is consistent.
	ReadSnapshot = "snapshot"
	// ReadExclusive: opened as the agent opens it, which an export that
	// deletes needs; no agent may run on the file.
	ReadExclusive = "exclusive"
)

// readMode names how buffer.ReadStore read a file.
func readMode(snapshot bool) string {
	if snapshot {
		return ReadSnapshot
	}
	return ReadLocked
}

// StoreInspection is what one buffer file holds.
type StoreInspection struct {
	Name      string `json:"endpoint"`
	Path      string `json:"path"`
	Mode      string `json:"read_mode"` // ReadLocked or ReadSnapshot
	Batches   int64  `json:"batches"`
	Samples   int64  `json:"samples"`
	Bytes     int64  `json:"bytes"` // record bytes, the quantity max_bytes caps
	FileBytes int64  `json:"file_bytes"`
	// OldestT and NewestT are the earliest and latest sample times (ms)
	// of all records; 0 when empty.
	OldestT int64 `json:"oldest_ms"`
	NewestT int64 `json:"newest_ms"`
	Series  int   `json:"series"` // distinct label sets
	// Quarantined records were set aside by the agent as unreadable.
	Quarantined int64 `json:"quarantined"`
	// Corrupt records are still in the FIFO but fail their checksum or do
	// not decode; the agent quarantines them when it reaches them.
	Corrupt int64 `json:"corrupt"`
	// Gaps are the lost ranges the agent recorded, newest first.
	Gaps []buffer.Gap `json:"gaps"`
	// Parked is the parked area: samples the receiver refused for their
	// age, kept for a later send or `redwire backfill`. None of the
	// fields above count it.
	Parked ParkedInspection `json:"parked"`
}

// ParkedInspection is what a buffer file's parked area holds.
type ParkedInspection struct {
	Batches int64 `json:"batches"`
	Samples int64 `json:"samples"`
	Bytes   int64 `json:"bytes"` // counted against max_bytes with the FIFO's
	// OldestT and NewestT are the earliest and latest sample times (ms);
	// 0 when empty.
	OldestT int64 `json:"oldest_ms"`
	NewestT int64 `json:"newest_ms"`
}

// InspectStore reads the buffer file f without changing it, safely even
// while an agent runs on it (then Mode is ReadSnapshot): its FIFO record
// by record, and its parked area's counts from the headers.
func InspectStore(f buffer.StoreFile, opts buffer.ReadOptions) (StoreInspection, error) {
	in := StoreInspection{Name: f.Name, Path: f.Path, FileBytes: fileSize(f.Path), Gaps: []buffer.Gap{}}
	opts.Gaps = &in.Gaps
	var parked buffer.ParkedStats
	opts.ParkedStats, opts.Parked = &parked, false
	series := make(map[uint64]struct{})
	snapshot, quarantined, err := buffer.ReadStore(f.Path, opts, func(r buffer.FileRecord) error {
		if r.Err != nil {
			in.Corrupt++
			return nil
		}
		if in.Batches == 0 || r.MinT < in.OldestT {
			in.OldestT = r.MinT
		}
		if in.Batches == 0 || r.MaxT > in.NewestT {
			in.NewestT = r.MaxT
		}
		in.Bytes += r.Bytes
		for _, b := range r.Batches {
			in.Batches++
			in.Samples += int64(len(b.Batch.Samples))
			for _, s := range b.Batch.Samples {
				series[s.Labels.Hash()] = struct{}{}
			}
		}
		return nil
	})
	in.Mode, in.Quarantined, in.Series = readMode(snapshot), quarantined, len(series)
	in.Parked = ParkedInspection{Batches: parked.Batches, Samples: parked.Samples, Bytes: parked.Bytes,
		OldestT: parked.MinT, NewestT: parked.MaxT}
	if err != nil {
		return in, fmt.Errorf("buffer file %s: %w", f.Path, err)
	}
	return in, nil
}

// fileSize is the size of the file at path, 0 if it cannot be read.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
