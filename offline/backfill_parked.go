package offline

import "github.com/redwire/redwire/buffer"

// The areas of a buffer file that a backfill reads and, with --delete,
// empties. A buffer file holds pending records, which the agent still
// sends, and parked ones, which a receiver refused as older than its head
// window and which only a backfill can deliver.
//

// bufferAreas lists the areas a backfill reads from each buffer file:
// the parked records, and with all the pending ones too.
func bufferAreas(all bool) []backfillArea {
	if all {
		return []backfillArea{parkedArea, pendingArea}
	}
	return []backfillArea{parkedArea}
}

// parkedArea is the buffer's parked records: refused by the receiver for
// their age, which only a backfill or a declared out-of-order window
// delivers.
var parkedArea = backfillArea{
	name: "parked",
	read: func(path string, ro buffer.ReadOptions, fn func(buffer.FileRecord) error) (bool, error) {
		ro.Parked = true
		snapshot, _, err := buffer.ReadStore(path, ro, fn)
		return snapshot, err
	},
	readHeld: func(s *buffer.Store, _ string, fn func(buffer.FileRecord) error) error { return s.ReadParked(fn) },
	del:      (*buffer.Store).DeleteParked,
}

// pendingArea is the buffer's FIFO of records the agent still sends.
var pendingArea = backfillArea{
	name: "pending",
	read: func(path string, ro buffer.ReadOptions, fn func(buffer.FileRecord) error) (bool, error) {
		snapshot, _, err := buffer.ReadStore(path, ro, fn)
		return snapshot, err
	},
	readHeld: func(s *buffer.Store, _ string, fn func(buffer.FileRecord) error) error { return s.Read(fn) },
	del:      (*buffer.Store).DeleteRecords,
}

// backfillArea is one area of a buffer file: how to read it, with or
// without holding the store, and how to remove records from it by key.
type backfillArea struct {
	name string
	// read reads the file without changing it, safely while an agent
	// runs on it; snapshot as buffer.ReadStore reports it.
	read func(path string, ro buffer.ReadOptions, fn func(buffer.FileRecord) error) (snapshot bool, err error)
	// readHeld reads the area of s, opened exclusively from path.
	readHeld func(s *buffer.Store, path string, fn func(buffer.FileRecord) error) error
	// del removes the records under keys (FileRecord.Key).
	del func(s *buffer.Store, keys []uint64) error
}
