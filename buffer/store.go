package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// ErrLocked is returned by OpenStore when another process holds the
// buffer file: most likely a second redwire on the same buffer directory.
var ErrLocked = errors.New("buffer file is locked by another process")

// ErrNoSpace is returned when the filesystem is full or below
// StoreOptions.MinFreeBytes. Nothing was written; the store is unchanged.
var ErrNoSpace = errors.New("no space left for the buffer")

// The reasons a Dropped carries, as the agent's dropped-samples metric
// labels them.
const (
	DropBufferFull = "buffer_full" // over StoreOptions.MaxBytes
	DropTooOld     = "too_old"     // older than StoreOptions.MaxAge
)

// Defaults of StoreOptions.
const (
	DefaultLockTimeout  = time.Second
	DefaultMinFreeBytes = 16 << 20
)

// compactThreshold is the file size above which an empty store is
// recreated. bbolt never gives pages back to the filesystem, so without
// this a week-long outage would leave its high-water mark on disk forever.
const compactThreshold = 4 << 20

// The file's buckets. Keys in records and quarantine are 8-byte big-endian
// sequence numbers, so bbolt's byte order is append order.
var (
	bucketRecords    = []byte("records")
	bucketQuarantine = []byte("quarantine")
	bucketMeta       = []byte("meta")
	keyNextSeq       = []byte("next_seq") // in meta: 8-byte big-endian
	keyConsumed      = []byte("consumed") // in meta: 8-byte big-endian
)

// Sealing (seal.go; the segment record's format is in internal/codec):
// once the batch records after the last segment hold sealSamples
// samples, they become one segment record; once mergeSegments small
// segments end the file, they become one. A batch
// record takes about 17 bytes a sample, a segment of a minute at 1 s
// about 2.4 and one of ten minutes about 2.0, so sealing early keeps the
// uncompressed tail small and merging brings the segments to size.
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
	// bbolt's page overhead comes on top). Over it the oldest records are
	// dropped (reason buffer_full). 0 means no cap.
	MaxBytes int64
	// MaxAge drops records whose newest sample is older than now-MaxAge
	// (reason too_old). 0 means no limit.
	MaxAge time.Duration
	// LockTimeout is how long OpenStore waits for another process to
	// release the file before failing with ErrLocked. Default 1s.
	LockTimeout time.Duration
	// MinFreeBytes is the free space an Append must leave on the
	// filesystem, or it fails with ErrNoSpace. Default 16 MiB; negative
	// disables the check (ENOSPC from the filesystem still maps to
	// ErrNoSpace).
	MinFreeBytes int64
	// Now is the clock for MaxAge and corrupt-file names. Default time.Now.
	Now func() time.Time
	// NoSync skips fsync: a crash may then lose or corrupt the file. For
	// tests and benchmarks only.
	NoSync bool
}

func (o StoreOptions) withDefaults() StoreOptions {
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = DefaultMinFreeBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Dropped counts records given up on for one reason.
type Dropped struct {
	Reason  string
	Samples int
	Batches int
}

// Record is one stored batch and its sequence number.
type Record struct {
	Seq   uint64
	Batch sample.Batch
}

// StoreStats describes what a Store holds.
type StoreStats struct {
	Batches int64
	Samples int64
	Bytes   int64 // record bytes, the quantity MaxBytes caps
	// OldestT is the earliest sample time (ms) of the oldest record, 0 if
	// the store is empty: how far behind a replay is.
	OldestT   int64
	FileBytes int64 // size of the bbolt file
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
	defrags   int // rebuilds of a file holding a backlog, for tests

	mu  sync.Mutex
	db  *bolt.DB // nil once closed
	enc codec.BatchEncoder
	dec codec.BatchDecoder
	buf []byte // Append's record scratch
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
}

// OpenStore opens or creates the store at path, creating its directory
// (0700) and file (0600) if missing. If another process holds the file it
// fails with ErrLocked after opts.LockTimeout. A file that is not a valid
// store is renamed to <path>.corrupt-<UTC time>, never deleted, and a
// fresh store is started; OpenInfo says so.
func OpenStore(path string, opts StoreOptions) (*Store, OpenInfo, error) {
	s := &Store{path: path, opts: opts.withDefaults(), freeSpace: diskFree, compactAt: compactThreshold, slack: defragSlack,
		sealAt: sealSamples, mergeAt: mergeSegments}
	var info OpenInfo
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, info, fmt.Errorf("buffer store %s: %w", path, err)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)

	err := s.open()
	var corrupt *corruptError
	if errors.As(err, &corrupt) {
		aside, mvErr := moveAside(path, s.opts.Now())
		if mvErr != nil {
			return nil, info, fmt.Errorf("buffer store %s is corrupt (%v) and could not be moved aside: %w", path, corrupt.err, mvErr)
		}
		info = OpenInfo{MovedAside: aside, Err: corrupt.err}
		created = true
		err = s.open()
	}
	if err != nil {
		if created && !errors.Is(err, ErrLocked) {
			// Nothing was stored in a file this call created, and one
			// half-initialised on a full disk would pass for corrupt.
			_ = os.Remove(path)
		}
		return nil, info, err
	}
	if created {
		// A new file is durable only once its directory entry is.
		syncDir(dir)
	}
	return s, info, nil
}

// Append stores b as one record in one transaction, committed and fsynced
// before it returns, and first drops the oldest records that MaxAge and
// MaxBytes no longer allow, in the same transaction. A batch that is
// itself too old, or larger than MaxBytes, is dropped at once. An empty
// batch is not stored.
//
// Every Append that returns nil consumes a sequence number, LastSeq; a
// failed one changes nothing. ErrNoSpace means the disk is (nearly) full.
func (s *Store) Append(b sample.Batch) (dropped []Dropped, err error) {
	if len(b.Samples) == 0 {
		return nil, nil
	}
	if uint64(len(b.Samples)) >= codec.SegmentFlag {
		return nil, fmt.Errorf("buffer store %s: batch of %d samples is too large for one record", s.path, len(b.Samples))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil, s.errClosed()
	}
	h := codec.HeaderOf(&b)
	seq := s.next
	var tooOld, tooBig, full Dropped
	tooOld.Reason, tooBig.Reason, full.Reason = DropTooOld, DropBufferFull, DropBufferFull
	cutoff, expiring := s.cutoff()
	err = protect(func() error {
		s.buf = codec.AppendRecord(s.buf[:0], &s.enc, &b, h)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("buffer store %s: encoding: %w", s.path, err)
	}
	rec := s.buf
	write := true
	switch {
	case expiring && h.MaxT < cutoff:
		write, tooOld.Samples, tooOld.Batches = false, int(h.Samples), 1
	case s.opts.MaxBytes > 0 && int64(len(rec)) > s.opts.MaxBytes:
		write, tooBig.Samples, tooBig.Batches = false, int(h.Samples), 1
	}
	if write && s.opts.MinFreeBytes > 0 {
		// Checked before writing: bbolt may need several pages more than
		// the record, and a filesystem that fills up mid-commit costs a
		// rollback that rescans the whole file.
		dir := filepath.Dir(s.path)
		if free, known, _ := s.freeSpace(dir); known && free-int64(len(rec)) < s.opts.MinFreeBytes {
			return nil, fmt.Errorf("%w: %s has %d bytes free; a %d-byte record would leave less than the %d kept free",
				ErrNoSpace, dir, free, len(rec), s.opts.MinFreeBytes)
		}
	}
	needExpire := expiring && s.counts.batches > 0 && s.counts.headMaxT < cutoff
	if !write && !needExpire {
		s.next++
		return dropIfAny(tooOld, tooBig), nil
	}

	ht := s.headTx()
	err = s.update(func(tx *bolt.Tx) error {
		ht.begin(tx)
		if expiring {
			if err := ht.drop(&tooOld, func(_ uint64, h codec.Header) bool { return h.MaxT < cutoff }); err != nil {
				return err
			}
		}
		if !write {
			return ht.end()
		}
		records := tx.Bucket(bucketRecords)
		records.FillPercent = 1 // keys only ever grow: fill pages instead of splitting them in half
		if err := records.Put(seqKey(seq), rec); err != nil {
			return err
		}
		if err := ht.counts.add(seq, rec, h, ht.smallBelow); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put(keyNextSeq, seqKey(seq+1)); err != nil {
			return err
		}
		if s.opts.MaxBytes > 0 {
			// The new record fits on its own (checked above), so this
			// stops before reaching it.
			if err := ht.drop(&full, func(uint64, codec.Header) bool { return ht.counts.bytes > s.opts.MaxBytes }); err != nil {
				return err
			}
		}
		return ht.end()
	})
	if err != nil {
		return nil, err
	}
	s.commit(ht)
	s.next++
	s.compress()
	return dropIfAny(tooOld, tooBig, full), nil
}

// Peek returns the oldest records in order, whole records only, as many as
// fit in maxSamples but at least one if any is stored. It does not remove
// them: Delete does, once they are sent. A record that fails its checksum
// or does not decode is moved to the quarantine bucket, kept for
// inspection, counted in Quarantined, and skipped.
func (s *Store) Peek(maxSamples int) ([]Record, error) {
	return s.PeekAfter(0, maxSamples)
}

// PeekAfter is Peek of the records after sequence number after: what
// follows a batch that is being sent, so that a sender can read and
// encode it meanwhile.
func (s *Store) PeekAfter(after uint64, maxSamples int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil, s.errClosed()
	}
	var (
		recs []Record
		bad  []uint64
	)
	skip := max(s.counts.consumed, after)
	err := protect(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			total := 0
			cur := tx.Bucket(bucketRecords).Cursor()
			for k, v := firstAfter(cur, after); k != nil; k, v = cur.Next() {
				seq := binary.BigEndian.Uint64(k)
				h, herr := codec.ParseHeader(v)
				if herr == nil && len(recs) > 0 && int64(total)+h.Samples > int64(maxSamples) && !h.Segment {
					break
				}
				var batches []Record
				var err error
				if herr == nil && h.Segment {
					batches, err = s.segCache.get(seq, v)
				} else {
					batches, err = decodeRecords(&s.dec, seq, v, skip)
				}
				if err != nil {
					bad = append(bad, seq)
					continue
				}
				for _, r := range batches {
					if r.Seq <= skip {
						continue
					}
					if len(recs) > 0 && total+len(r.Batch.Samples) > maxSamples {
						return nil
					}
					recs = append(recs, r)
					total += len(r.Batch.Samples)
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("buffer store %s: reading: %w", s.path, err)
	}
	if len(bad) > 0 {
		// Records after a bad one are fine and already decoded; once the
		// bad ones are in quarantine, Delete up to the last returned Seq
		// cannot touch them.
		if err := s.quarantine(bad); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// firstAfter positions cur on the first record that may hold a batch
// after seq after: the record under the next key, or the segment record
// before it, whose batches run on past its key.
func firstAfter(cur *bolt.Cursor, after uint64) (k, v []byte) {
	if after == 0 {
		return cur.First()
	}
	var pk, pv []byte
	if k, _ := cur.Seek(seqKey(after + 1)); k == nil {
		pk, pv = cur.Last()
	} else {
		pk, pv = cur.Prev()
	}
	if h, err := codec.ParseHeader(pv); pk != nil && err == nil && h.Segment {
		return pk, pv
	}
	return cur.Seek(seqKey(after + 1))
}

// Delete removes every record with Seq <= upTo in one transaction: the
// acknowledgement after a successful send.
func (s *Store) Delete(upTo uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return s.errClosed()
	}
	if s.counts.batches == 0 || upTo < s.counts.headSeq {
		return nil
	}
	// Never mark as consumed what is not appended yet.
	upTo = min(upTo, s.next-1)
	ht := s.headTx()
	err := s.update(func(tx *bolt.Tx) error {
		ht.begin(tx)
		if err := ht.ack(upTo); err != nil {
			return err
		}
		return ht.end()
	})
	if err != nil {
		return err
	}
	s.commit(ht)
	return nil
}

// Expire applies MaxAge now; the agent calls it periodically so that old
// data goes even while nothing is appended.
func (s *Store) Expire() (Dropped, error) {
	d := Dropped{Reason: DropTooOld}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return d, s.errClosed()
	}
	cutoff, expiring := s.cutoff()
	if !expiring || s.counts.batches == 0 || s.counts.headMaxT >= cutoff {
		return d, nil
	}
	ht := s.headTx()
	err := s.update(func(tx *bolt.Tx) error {
		ht.begin(tx)
		if err := ht.drop(&d, func(_ uint64, h codec.Header) bool { return h.MaxT < cutoff }); err != nil {
			return err
		}
		return ht.end()
	})
	if err != nil {
		return Dropped{Reason: DropTooOld}, err
	}
	s.commit(ht)
	return d, nil
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
	return st
}

// LastSeq is the sequence number of the last successful Append, 0 if none
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
