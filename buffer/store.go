package buffer

import (
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// Every reason a sample is given up on, in one place: the reason a
// Dropped carries and the reason label of redwire_samples_dropped_total.
// The buffer decides the first four; the agent the last two.
const (
	DropBufferFull = "buffer_full"  // over StoreOptions.MaxBytes, oldest first
	DropTooOld     = "too_old"      // older than StoreOptions.MaxAge
	DropDiskFull   = "disk_full"    // the store could not take them and memory was full
	DropShutdown   = "shutdown"     // could not be stored when the buffer closed
	DropRejected   = "rejected"     // the receiver refused them for good (400, 409, 415, other 4xx)
	DropOutOfOrder = "out_of_order" // scraped while the wall clock was at or behind the last scrape sent for the target; never sent
)

// Defaults of StoreOptions.
const (
	defaultLockTimeout  = time.Second
	defaultMinFreeBytes = 16 << 20
)

// The file's buckets. Keys in records, parked and quarantine are 8-byte
// big-endian sequence numbers from the one next_seq counter, so bbolt's
// byte order is append order and a key is unique across the buckets: a
// record moves to quarantine under its own key. Parked records (parked.go)
// are batch records like those of records, never segments, and the
// consumed mark does not apply to them.
var (
	bucketRecords    = []byte("records")
	bucketParked     = []byte("parked")
	bucketQuarantine = []byte("quarantine")
	bucketMeta       = []byte("meta")
	keyNextSeq       = []byte("next_seq") // in meta: 8-byte big-endian
	keyConsumed      = []byte("consumed") // in meta: 8-byte big-endian
)

// Sealing (seal.go; the segment record's format is in internal/codec):
// once the batch records after the last segment hold sealSamples
// samples, they become one segment record; once mergeSegments small
// segments end the file, they become one. A batch record takes about 17
// bytes a sample, a segment of a minute at 1 s about 2.4 and one of ten
// minutes about 2.0, so sealing early keeps the uncompressed tail small
// and merging brings the segments to size.
const (
	sealSamples   = 1 << 14
	mergeSegments = 10
	// sealMaxSamples bounds one segment, and the memory its decoding takes
	// (about 32 bytes a sample).
	sealMaxSamples = 1 << 21
)

// StoreOptions shape a Store; the zero value is usable.
type StoreOptions struct {
	// MaxBytes caps the stored record bytes (headers and encoded batches;
	// bbolt's page overhead comes on top), parked records included. Over
	// it the oldest parked records are dropped first, then old sealed
	// segments are thinned by age down to ThinFloor (thin.go), and only
	// then are the oldest records dropped (reason buffer_full). 0 means
	// no cap.
	MaxBytes int64
	// MaxAge drops records whose newest sample is older than now-MaxAge
	// (reason too_old). 0 means no limit. It does not apply to parked
	// records: they are kept because they are old.
	MaxAge time.Duration
	// LockTimeout is how long OpenStore waits for another process to
	// release the file before failing with ErrLocked. Default 1s.
	LockTimeout time.Duration
	// MinFreeBytes is the free space an Append must leave on the
	// filesystem, or it fails with ErrNoSpace. Default 16 MiB; negative
	// disables the check (ENOSPC from the filesystem still maps to
	// ErrNoSpace).
	MinFreeBytes int64
	// ThinFloor is the coarsest resolution thinning goes to before
	// MaxBytes drops anything: one scrape per target every ThinFloor
	// (thin.go). Default 5 minutes; negative turns thinning off, and
	// MaxBytes then drops the oldest records at once.
	ThinFloor time.Duration
	// Now is the clock for MaxAge and corrupt-file names. Default time.Now.
	Now func() time.Time
	// NoSync skips fsync: a crash may then lose or corrupt the file. For
	// tests and benchmarks only.
	NoSync bool
}

func (o StoreOptions) withDefaults() StoreOptions {
	if o.LockTimeout <= 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = defaultMinFreeBytes
	}
	if o.ThinFloor == 0 {
		o.ThinFloor = defaultThinFloor
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Dropped counts records given up on for one reason, so that nothing is
// lost without the agent counting it.
type Dropped struct {
	Reason  string
	Samples int
	Batches int
	// Parked is true if the records dropped were parked ones (Park), not
	// the FIFO's: samples the receiver had refused for their age, which
	// MaxBytes gives up on before anything in the FIFO.
	Parked bool
	// Spans say which targets' samples were lost, and from when to when:
	// the agent reports them as lost ranges. A record whose body no
	// longer decodes is counted without them.
	Spans []sample.Span
	// KeptEvery is, for ReasonThinned, the resolution the Spans were
	// thinned to: one scrape per target every KeptEvery. Those samples
	// are not lost: the range is there at a coarser resolution.
	KeptEvery time.Duration
}

// leasedDrop is the part of a drop that fell on the records of the lease
// ending at upTo, which still holds them: the Buffer counts it only if
// that lease does not deliver them.
type leasedDrop struct {
	upTo uint64
	d    Dropped
}

// Record is one stored batch and its sequence number, which Delete
// acknowledges up to.
type Record struct {
	Seq   uint64
	Batch sample.Batch
}

// StoreStats describes what a Store holds.
type StoreStats struct {
	Batches int64
	Samples int64
	// Bytes are the FIFO's record bytes; MaxBytes caps them together
	// with Parked.Bytes.
	Bytes int64
	// OldestT is the earliest sample time (ms) of the oldest record, 0 if
	// the store is empty: how far behind a replay is.
	OldestT   int64
	FileBytes int64 // size of the bbolt file
	// Parked is the parked area (Park), which Batches, Samples and Bytes
	// leave out: it is no backlog, nothing replays it.
	Parked ParkedStats
}

// OpenInfo tells what OpenStore had to do besides opening.
type OpenInfo struct {
	// MovedAside is where the old file went if it was unreadable or
	// corrupt and a fresh one was started; empty otherwise.
	MovedAside string
	// Err is why it was moved aside.
	Err error
}

// Store is the on-disk FIFO of batches for one endpoint: one bbolt file,
// one record per Append, each write committed and fsynced before the call
// returns. It is safe for concurrent use.
//
// Invariant (order): records leave (Peek, Delete, drops) in the order they
// were appended, which is Seq order, which is key order in the file.
// Drops only ever take the oldest records.
//
// Invariant (atomicity): every method that writes does so in one bbolt
// transaction and changes the in-memory state only after it committed,
// so a failed call leaves file and Store exactly as they were.
type Store struct {
	path string
	opts StoreOptions
	// freeSpace reports free bytes on the filesystem holding a directory;
	// diskFree, replaced in tests.
	freeSpace func(dir string) (free int64, known bool, err error)
	compactAt int64 // compactThreshold, lowered in tests
	slack     int64 // defragSlack, lowered in tests
	sealAt    int64 // sealSamples, lowered in tests
	mergeAt   int   // mergeSegments, lowered in tests
	segCache  segmentCache
	// thinHook, if set, runs after each segment thinStore rewrites,
	// inside the transaction: an error rolls it back, as a crash would.
	// For tests.
	thinHook func() error
	defrags  int // rebuilds of a file holding a backlog, for tests
	// commits counts the write transactions committed since OpenStore,
	// each one bbolt commit and its fsyncs (unless NoSync); under mu,
	// for the tests and benchmarks of the group commit.
	commits int64

	mu   sync.Mutex
	db   *bolt.DB // nil once closed
	enc  codec.BatchEncoder
	dec  codec.BatchDecoder
	buf  []byte // Append's record scratch
	recs []byte // the records of one appendAll
	// Invariant: counts equals scanCounts of the file after every method
	// returns; Stats is O(1) because of it. Checked by the tests after
	// every operation of a randomized sequence.
	counts storeCounts
	// Invariant: next is greater than every sequence number ever used in
	// this file (records, quarantine, and appends dropped at once), and
	// the file's meta next_seq is at most next, so Seq never repeats
	// across Delete, Compact or a restart.
	next        uint64
	quarantined int64
	// parked indexes the parked records, in key order, for their times:
	// counts.parked.minT and maxT are kept exact without reading the
	// file. Invariant: it equals scanParked of the file, like counts.
	parked []parkedEntry
	// pins are the upTo of the leases handed out and not yet acked,
	// ascending; leased is what drops took of their records since the
	// Buffer last asked (takeLeased).
	pins   []uint64
	leased []leasedDrop
}

// takeLeased returns and forgets the parts of drops that fell on leased
// records, included in the Dropped the store reported.
func (s *Store) takeLeased() []leasedDrop {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leased
	s.leased = nil
	return l
}

// pin records that a lease covering the records up to upTo is out.
func (s *Store) pin(upTo uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, found := slices.BinarySearch(s.pins, upTo); !found {
		s.pins = slices.Insert(s.pins, i, upTo)
	}
}

// unpin forgets the leases up to upTo (all of them if upTo is 0).
func (s *Store) unpin(upTo uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if upTo == 0 {
		s.pins = nil
		return
	}
	i, found := slices.BinarySearch(s.pins, upTo)
	if found {
		i++
	}
	s.pins = s.pins[i:]
}

// storeCounts is what Stats reports from memory, and what seal and merge
// need to know without reading the file.
type storeCounts struct {
	// Batches and samples not yet deleted, and the bytes of the records
	// holding them.
	batches, samples, bytes int64
	// head is the oldest batch left (meaningful if batches > 0), kept to
	// answer Stats.OldestT and to skip transactions that would drop
	// nothing; the times are those of the record holding it.
	headSeq            uint64
	headMinT, headMaxT int64
	// tail is the run of batch records after the last segment record:
	// what seal takes.
	tailSeq                  uint64
	tailBatches, tailSamples int64
	// small is the run of small segment records (sealed, not merged)
	// that ends the segment records: what merge takes.
	smallSeq  uint64
	smallSegs int
	// consumed is the meta key of the same name: batches with seq <= it
	// are deleted, even inside a segment record that stays.
	consumed uint64
	// parked counts the parked area, which none of the above includes.
	parked parkedCounts
}

// Stats is O(1): no I/O but one stat of the file.
func (s *Store) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := StoreStats{
		Batches:   s.counts.batches,
		Samples:   s.counts.samples,
		Bytes:     s.counts.bytes,
		FileBytes: fileSize(s.path),
	}
	if st.Batches > 0 {
		st.OldestT = s.counts.headMinT
	}
	st.Parked = s.counts.parked.stats()
	return st
}

// LastSeq is the sequence number of the last successful Append (or Park),
// 0 if none
// since the file was created.
func (s *Store) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next - 1
}

// Quarantined is the number of records quarantined since OpenStore.
func (s *Store) Quarantined() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quarantined
}

// Close compacts an empty store whose file grew large, then closes it.
// Later calls do nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	cerr := s.compact()
	err := protect(s.db.Close)
	s.db = nil
	if err != nil {
		return fmt.Errorf("buffer store %s: %w", s.path, err)
	}
	return cerr
}
