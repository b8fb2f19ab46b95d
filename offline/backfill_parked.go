package offline

import "github.com/redwire/redwire/buffer"

// The areas of a buffer file that a backfill reads and, with --delete,
// empties. A buffer file holds pending records, which the agent still
// sends, and parked ones, which a receiver refused as older than its head
// window and which only a backfill can deliver.
//
// STAND-IN until the parked area lands in buffer (issue 14): buffer has
// no ReadOptions.Parked nor Store.DeleteParked yet, so this build treats
// the whole backlog as parked, and the default and --all read the same
// records. bufferAreas is the only code that knows about the parked
// area; once buffer has it, it becomes:
//
//	parked := backfillArea{name: "parked",
//		read: func(path string, ro buffer.ReadOptions, fn func(buffer.FileRecord) error) (bool, error) {
//			ro.Parked = true
//			snapshot, _, err := buffer.ReadStore(path, ro, fn)
//			return snapshot, err
//		},
//		// The caller holds the store's exclusive lock and writes nothing
//		// while it reads, so the copy ReadStore falls back to is the file.
//		readHeld: func(_ *buffer.Store, path string, fn func(buffer.FileRecord) error) error {
//			_, _, err := buffer.ReadStore(path, buffer.ReadOptions{Parked: true, LockTimeout: time.Millisecond}, fn)
//			return err
//		},
//		del: (*buffer.Store).DeleteParked}
//	if all {
//		return []backfillArea{parked, pendingArea}
//	}
//	return []backfillArea{parked}

// bufferAreas lists the areas a backfill reads from each buffer file:
// the parked records, and with all the pending ones too.
func bufferAreas(all bool) []backfillArea {
	_ = all // see above: until the parked area exists, both are the whole backlog
	return []backfillArea{pendingArea}
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
