package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

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

	mu  sync.Mutex
	db  *bolt.DB // nil once closed
	enc batchEncoder
	dec batchDecoder
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

// storeCounts is what Stats reports from memory.
type storeCounts struct {
	batches, samples, bytes int64
	// head is the oldest record (meaningful if batches > 0), kept to
	// answer Stats.OldestT and to skip transactions that would drop
	// nothing.
	headSeq            uint64
	headMinT, headMaxT int64
}

// OpenStore opens or creates the store at path, creating its directory
// (0700) and file (0600) if missing. If another process holds the file it
// fails with ErrLocked after opts.LockTimeout. A file that is not a valid
// store is renamed to <path>.corrupt-<UTC time>, never deleted, and a
// fresh store is started; OpenInfo says so.
func OpenStore(path string, opts StoreOptions) (*Store, OpenInfo, error) {
	s := &Store{path: path, opts: opts.withDefaults(), freeSpace: diskFree, compactAt: compactThreshold}
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

// corruptError marks an open failure that moving the file aside cures.
type corruptError struct{ err error }

func (e *corruptError) Error() string { return e.err.Error() }

// open validates the file and opens it for writing, setting the
// in-memory state. It returns ErrLocked, a corruptError, or an
// environment error (permissions, I/O, memory) that moving the file
// aside would not fix.
//
// Validation happens under a read-only handle, whose shared lock keeps
// writers out, before the file is opened for writing: bbolt, opened for
// writing without a synced freelist, walks the whole page tree in a
// goroutine of its own, where a wild page number or key length in a
// corrupt file would crash the process beyond any recover. checkBoltFile
// proves that walk safe first.
func (s *Store) open() error {
	fi, err := os.Stat(s.path)
	exists := err == nil && fi.Size() > 0
	var (
		counts storeCounts
		next   uint64 = 1
		txid   int
	)
	if exists {
		ro, err := s.boltOpen(true)
		if err != nil {
			return err
		}
		f, err := os.Open(s.path)
		if err != nil {
			_ = protect(ro.Close)
			return fmt.Errorf("buffer store %s: %w", s.path, err)
		}
		err = protect(func() error {
			return ro.View(func(tx *bolt.Tx) error {
				if err := checkBoltFile(f, fileSize(s.path), ro.Info().PageSize, uint64(tx.ID())); err != nil {
					return err
				}
				var err error
				counts, next, err = scanFile(tx, s.path)
				txid = tx.ID()
				return err
			})
		})
		_ = f.Close()
		closeErr := protect(ro.Close)
		if err != nil {
			return &corruptError{err}
		}
		if closeErr != nil {
			return fmt.Errorf("buffer store %s: %w", s.path, closeErr)
		}
	}

	db, err := s.boltOpen(false)
	if err != nil {
		return err
	}
	buckets := [][]byte{bucketRecords, bucketQuarantine, bucketMeta}
	err = protect(func() error {
		missing := false
		if err := db.View(func(tx *bolt.Tx) error {
			for _, name := range buckets {
				missing = missing || tx.Bucket(name) == nil
			}
			if tx.ID() == txid {
				return nil
			}
			// Written between the two opens (another process got in):
			// what was scanned is stale.
			var err error
			counts, next, err = scanFile(tx, s.path)
			return err
		}); err != nil || !missing {
			return err
		}
		return db.Update(func(tx *bolt.Tx) error {
			for _, name := range buckets {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		_ = protect(db.Close)
		if isEnvError(err) {
			return s.envError(err)
		}
		return &corruptError{err}
	}
	s.db, s.counts, s.next = db, counts, next
	return nil
}

// boltOpen opens the file with bbolt, classifying failures as open does.
func (s *Store) boltOpen(readOnly bool) (*bolt.DB, error) {
	var file *os.File
	bopts := &bolt.Options{
		Timeout:  s.opts.LockTimeout,
		ReadOnly: readOnly,
		NoSync:   s.opts.NoSync,
		// A drained backlog leaves most pages free; a synced freelist
		// would rewrite all of them on every commit of the drain.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}
	var db *bolt.DB
	err := protect(func() error {
		var err error
		db, err = bolt.Open(s.path, 0o600, bopts)
		return err
	})
	var pe *panicError
	if errors.As(err, &pe) && file != nil {
		// bbolt panicked holding the file and its lock.
		_ = file.Close()
	}
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s not released within %v; another redwire probably runs on this buffer directory",
			ErrLocked, s.path, s.opts.LockTimeout)
	case isEnvError(err):
		return nil, s.envError(err)
	default:
		return nil, &corruptError{err}
	}
}

// envError wraps an operating-system failure of open, as ErrNoSpace if
// the disk is full (a new file needs a few pages).
func (s *Store) envError(err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%w: %s: %v", ErrNoSpace, s.path, err)
	}
	return fmt.Errorf("buffer store %s: %w", s.path, err)
}

// isEnvError tells an operating-system failure (permission, I/O, memory,
// read-only filesystem) from corruption: moving the file aside does not
// cure the former, and must not be done for it.
func isEnvError(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno)
}

// scanFile reads every record header (not the payloads) and returns the
// counts, the next sequence number, and the first sign that the file is
// not one this store wrote.
func scanFile(tx *bolt.Tx, path string) (c storeCounts, next uint64, err error) {
	next = 1
	if size := fileSize(path); int64(tx.Size()) > size {
		return c, 0, fmt.Errorf("file is shorter (%d bytes) than its meta page says (%d): truncated", size, tx.Size())
	}
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if v := meta.Get(keyNextSeq); v != nil {
			if len(v) != 8 {
				return c, 0, fmt.Errorf("meta next_seq is %d bytes, want 8", len(v))
			}
			next = binary.BigEndian.Uint64(v)
		}
	}
	for _, name := range [][]byte{bucketQuarantine, bucketRecords} {
		b := tx.Bucket(name)
		if b == nil {
			continue
		}
		var prev []byte
		err := b.ForEach(func(k, v []byte) error {
			if len(k) != 8 || v == nil {
				return fmt.Errorf("bucket %s: key %x is not an 8-byte sequence number with a value", name, k)
			}
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				return fmt.Errorf("bucket %s: key %x after %x: out of order", name, k, prev)
			}
			prev = k
			seq := binary.BigEndian.Uint64(k)
			if seq == math.MaxUint64 {
				return fmt.Errorf("bucket %s: sequence number %d leaves no room for another", name, seq)
			}
			next = max(next, seq+1)
			if !bytes.Equal(name, bucketRecords) {
				return nil
			}
			h, err := parseHeader(v)
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
			}
			c.add(seq, h, len(v))
			return nil
		})
		if err != nil {
			return c, 0, err
		}
	}
	return c, next, nil
}

// add counts a record appended at the tail.
func (c *storeCounts) add(seq uint64, h recordHeader, size int) {
	if c.batches == 0 {
		c.headSeq, c.headMinT, c.headMaxT = seq, h.minT, h.maxT
	}
	c.batches++
	c.samples += h.samples
	c.bytes += int64(size)
}

// moveAside renames a corrupt file to <path>.corrupt-<UTC time>, with a
// -N suffix if that exists: the old file is evidence and is never
// overwritten or deleted.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	to := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, to); err != nil {
		return "", err
	}
	syncDir(filepath.Dir(path))
	return to, nil
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
	if uint64(len(b.Samples)) > math.MaxUint32 {
		return nil, fmt.Errorf("buffer store %s: batch of %d samples is too large for one record", s.path, len(b.Samples))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil, s.errClosed()
	}
	h := headerOf(&b)
	seq := s.next
	var tooOld, tooBig, full Dropped
	tooOld.Reason, tooBig.Reason, full.Reason = DropTooOld, DropBufferFull, DropBufferFull
	cutoff, expiring := s.cutoff()
	err = protect(func() error {
		s.buf = appendRecord(s.buf[:0], &s.enc, &b, h)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("buffer store %s: encoding: %w", s.path, err)
	}
	rec := s.buf
	write := true
	switch {
	case expiring && h.maxT < cutoff:
		write, tooOld.Samples, tooOld.Batches = false, int(h.samples), 1
	case s.opts.MaxBytes > 0 && int64(len(rec)) > s.opts.MaxBytes:
		write, tooBig.Samples, tooBig.Batches = false, int(h.samples), 1
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
			if err := ht.drop(&tooOld, func(_ uint64, h recordHeader) bool { return h.maxT < cutoff }); err != nil {
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
		ht.counts.add(seq, h, len(rec))
		if err := tx.Bucket(bucketMeta).Put(keyNextSeq, seqKey(seq+1)); err != nil {
			return err
		}
		if s.opts.MaxBytes > 0 {
			// The new record fits on its own (checked above), so this
			// stops before reaching it.
			if err := ht.drop(&full, func(uint64, recordHeader) bool { return ht.counts.bytes > s.opts.MaxBytes }); err != nil {
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
	return dropIfAny(tooOld, tooBig, full), nil
}

// headTx removes records from the head of the FIFO within one write
// transaction, keeping a copy of the counts that becomes the Store's only
// once the transaction has committed (Store.commit).
type headTx struct {
	counts      storeCounts
	tx          *bolt.Tx
	quarantined int64
}

func (s *Store) headTx() *headTx { return &headTx{counts: s.counts} }

// commit adopts the state of a committed transaction; mu must be held.
func (s *Store) commit(ht *headTx) {
	s.counts = ht.counts
	s.quarantined += ht.quarantined
}

func (ht *headTx) begin(tx *bolt.Tx) { ht.tx = tx }

// drop deletes head records while drop says so and counts them in d.
// A record whose header no longer parses (the disk changed under us) is
// not dropped but quarantined: nothing is deleted without being counted,
// and a header that lies cannot be counted.
func (ht *headTx) drop(d *Dropped, drop func(seq uint64, h recordHeader) bool) error {
	records := ht.tx.Bucket(bucketRecords)
	cur := records.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.First() {
		seq := binary.BigEndian.Uint64(k)
		h, err := parseHeader(v)
		if err != nil {
			if err := ht.tx.Bucket(bucketQuarantine).Put(bytes.Clone(k), bytes.Clone(v)); err != nil {
				return err
			}
			if err := cur.Delete(); err != nil {
				return err
			}
			ht.quarantined++
			// What it once added to the counts is unknown: recount.
			if ht.counts, err = scanCounts(ht.tx); err != nil {
				return err
			}
			continue
		}
		if !drop(seq, h) {
			break
		}
		if err := cur.Delete(); err != nil {
			return err
		}
		ht.counts.batches--
		ht.counts.samples -= h.samples
		ht.counts.bytes -= int64(len(v))
		d.Batches++
		d.Samples += int(h.samples)
	}
	return nil
}

// end brings the head fields up to date before the transaction commits.
func (ht *headTx) end() error {
	k, v := ht.tx.Bucket(bucketRecords).Cursor().First()
	if k == nil {
		ht.counts.headSeq, ht.counts.headMinT, ht.counts.headMaxT = 0, 0, 0
		return nil
	}
	h, _ := parseHeader(v)
	ht.counts.headSeq, ht.counts.headMinT, ht.counts.headMaxT = binary.BigEndian.Uint64(k), h.minT, h.maxT
	return nil
}

// dropIfAny returns the drops that counted something.
func dropIfAny(ds ...Dropped) []Dropped {
	var out []Dropped
	for _, d := range ds {
		if d.Batches == 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Reason == d.Reason {
			out[n-1].Samples += d.Samples
			out[n-1].Batches += d.Batches
			continue
		}
		out = append(out, d)
	}
	return out
}

// cutoff is the time (ms) before which MaxAge drops records.
func (s *Store) cutoff() (int64, bool) {
	if s.opts.MaxAge <= 0 {
		return 0, false
	}
	return s.opts.Now().Add(-s.opts.MaxAge).UnixMilli(), true
}

// Peek returns the oldest records in order, whole records only, as many as
// fit in maxSamples but at least one if any is stored. It does not remove
// them: Delete does, once they are sent. A record that fails its checksum
// or does not decode is moved to the quarantine bucket, kept for
// inspection, counted in Quarantined, and skipped.
func (s *Store) Peek(maxSamples int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil, s.errClosed()
	}
	var (
		recs []Record
		bad  []uint64
	)
	err := protect(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			total := 0
			cur := tx.Bucket(bucketRecords).Cursor()
			for k, v := cur.First(); k != nil; k, v = cur.Next() {
				seq := binary.BigEndian.Uint64(k)
				if h, err := parseHeader(v); err == nil && len(recs) > 0 && int64(total)+h.samples > int64(maxSamples) {
					break
				}
				b, err := decodeRecord(&s.dec, v)
				if err != nil {
					bad = append(bad, seq)
					continue
				}
				recs = append(recs, Record{Seq: seq, Batch: b})
				total += len(b.Samples)
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

// quarantine moves the given records out of the FIFO in one transaction.
// Their headers are not trusted, so the counts are rebuilt by a rescan,
// which is rare enough to afford.
func (s *Store) quarantine(seqs []uint64) error {
	ht := s.headTx()
	err := s.update(func(tx *bolt.Tx) error {
		records, q := tx.Bucket(bucketRecords), tx.Bucket(bucketQuarantine)
		for _, seq := range seqs {
			k := seqKey(seq)
			v := records.Get(k)
			if v == nil {
				continue
			}
			if err := q.Put(k, bytes.Clone(v)); err != nil {
				return err
			}
			if err := records.Delete(k); err != nil {
				return err
			}
			ht.quarantined++
		}
		var err error
		ht.counts, err = scanCounts(tx)
		return err
	})
	if err != nil {
		return err
	}
	s.commit(ht)
	return nil
}

// scanCounts recomputes storeCounts from the records' headers.
func scanCounts(tx *bolt.Tx) (storeCounts, error) {
	var c storeCounts
	err := tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
		h, _ := parseHeader(v)
		c.add(binary.BigEndian.Uint64(k), h, len(v))
		return nil
	})
	return c, err
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
	ht := s.headTx()
	var d Dropped
	err := s.update(func(tx *bolt.Tx) error {
		ht.begin(tx)
		if err := ht.drop(&d, func(seq uint64, _ recordHeader) bool { return seq <= upTo }); err != nil {
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
		if err := ht.drop(&d, func(_ uint64, h recordHeader) bool { return h.maxT < cutoff }); err != nil {
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

// update runs fn in one write transaction, mapping a full disk to
// ErrNoSpace and a bbolt panic to an error.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	err := protect(func() error { return s.db.Update(fn) })
	switch {
	case err == nil:
		return nil
	case isNoSpace(err):
		return fmt.Errorf("%w: %s: %v", ErrNoSpace, s.path, err)
	default:
		return fmt.Errorf("buffer store %s: %w", s.path, err)
	}
}

// isNoSpace recognises a full filesystem or quota. bbolt formats some
// errors (growing the file) with %s, losing the errno, hence the text.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(err.Error(), syscall.ENOSPC.Error()) ||
		strings.Contains(err.Error(), syscall.EDQUOT.Error())
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

// Compact gives disk space back once a backlog has drained: if the store
// is empty and its file is larger than compactThreshold, the file is
// replaced by a fresh one holding only the quarantine and the sequence
// counter. The fresh file is built beside the old one and renamed over
// it while both are locked, so at no moment can another process open the
// path unlocked. A store that is not empty is left alone.
func (s *Store) Compact() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return s.errClosed()
	}
	return s.compact()
}

func (s *Store) compact() error {
	if s.counts.batches > 0 || fileSize(s.path) <= s.compactAt {
		return nil
	}
	tmp := s.path + ".compact"
	// A leftover from a crash mid-compaction; only the holder of the
	// store's lock, which is us, ever writes it.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("buffer store %s: compacting: %w", s.path, err)
	}
	fresh, err := bolt.Open(tmp, 0o600, &bolt.Options{
		Timeout: s.opts.LockTimeout, NoSync: s.opts.NoSync,
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		return fmt.Errorf("buffer store %s: compacting: %w", s.path, err)
	}
	err = protect(func() error {
		return s.db.View(func(old *bolt.Tx) error {
			return fresh.Update(func(tx *bolt.Tx) error {
				for _, name := range [][]byte{bucketRecords, bucketQuarantine, bucketMeta} {
					if _, err := tx.CreateBucket(name); err != nil {
						return err
					}
				}
				if err := tx.Bucket(bucketMeta).Put(keyNextSeq, seqKey(s.next)); err != nil {
					return err
				}
				q := tx.Bucket(bucketQuarantine)
				return old.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
					return q.Put(bytes.Clone(k), bytes.Clone(v))
				})
			})
		})
	})
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		_ = fresh.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("buffer store %s: compacting: %w", s.path, err)
	}
	syncDir(filepath.Dir(s.path))
	old := s.db
	s.db, s.counts = fresh, storeCounts{}
	if err := old.Close(); err != nil {
		return fmt.Errorf("buffer store %s: closing the compacted file: %w", s.path, err)
	}
	return nil
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

func (s *Store) errClosed() error { return fmt.Errorf("buffer store %s: closed", s.path) }

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// syncDir makes renames and creations in dir durable. Best effort: some
// filesystems cannot fsync a directory, and the file itself is already
// synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// panicError is a panic turned into an error by protect.
type panicError struct{ v any }

func (e *panicError) Error() string { return fmt.Sprintf("bbolt panicked (file corrupt?): %v", e.v) }

// protect runs fn, turning a panic into an error. bbolt panics on some
// corrupt pages, and with SetPanicOnFault a read of a truncated or
// damaged mapping panics too instead of killing the process.
func protect(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{r}
		}
	}()
	return fn()
}

// bbolt's on-disk format, as far as checkBoltFile needs it (bbolt
// internal/common: page.go, meta.go, bucket.go). It has been stable since
// bbolt's format version 2; the meta page's txid is compared with what
// bbolt itself reads, so a misreading of the format fails the check
// instead of passing it.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16 // id u64, flags u16, count u16, overflow u32
	boltElement     = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	boltBucketValue = 16 // root pgid u64, sequence u64; an inline page follows if root is 0
	boltBranch      = 0x01
	boltLeaf        = 0x02
	boltFreelist    = 0x10
	boltBucketEntry = 0x01
	boltNoFreelist  = math.MaxUint64
	// boltMaxDepth bounds the page tree: a B+tree of 4 KiB pages holding
	// 16-byte elements is 5 levels deep at a terabyte.
	boltMaxDepth = 32
)

// checkBoltFile checks, reading the file with ReadAt rather than through
// bbolt's mmap, every bound bbolt trusts when it walks the page tree: each
// page number is below the high-water mark and inside the file, each page
// is reached once (no cycles, no shared pages), the tree is shallow, each
// key and value lies inside its page, each page has the type its parent
// says, and freed pages are not in use. bbolt's own walks (freelist
// rebuild, Check) cannot then read outside the file or loop, whatever the
// file's content. txid is the meta bbolt opened, which must be the one
// read here; size is the file's size.
func checkBoltFile(f io.ReaderAt, size int64, pageSize int, txid uint64) error {
	c := &treeCheck{f: f, pageSize: int64(pageSize)}
	m, err := c.meta(txid)
	if err != nil {
		return err
	}
	if m.pgid > uint64(size/c.pageSize) {
		return fmt.Errorf("file of %d bytes is shorter than its %d pages: truncated", size, m.pgid)
	}
	c.hwm = m.pgid
	c.used = make([]uint64, (m.pgid+63)/64)
	if _, err := c.node(m.root, 0, nil, nil); err != nil {
		return err
	}
	if m.freelist != boltNoFreelist {
		return c.freelist(m.freelist)
	}
	return nil
}

type treeCheck struct {
	f        io.ReaderAt
	pageSize int64
	hwm      uint64   // pages below it are in use or free; none above
	used     []uint64 // bitmap of pages reached so far, overflow included
}

// read reads len(buf) bytes at off, part of page id.
func (c *treeCheck) read(buf []byte, off int64, id uint64) error {
	_, err := c.f.ReadAt(buf, off)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("page %d lies past the end of the file: truncated", id)
	case err != nil:
		return fmt.Errorf("page %d: %w", id, err)
	}
	return nil
}

type boltMetaPage struct{ root, freelist, pgid, txid uint64 }

// meta picks the meta page as bbolt does: the valid one with the higher
// transaction id.
func (c *treeCheck) meta(txid uint64) (boltMetaPage, error) {
	ne := binary.NativeEndian
	pick, found := boltMetaPage{}, false
	for i := range int64(2) {
		buf := make([]byte, boltPageHeader+64)
		if _, err := c.f.ReadAt(buf, i*c.pageSize); err != nil {
			continue
		}
		m := buf[boltPageHeader:]
		h := fnv.New64a()
		h.Write(m[:56])
		if ne.Uint32(m) != boltMagic || ne.Uint32(m[4:]) != boltVersion || h.Sum64() != ne.Uint64(m[56:]) {
			continue
		}
		mp := boltMetaPage{root: ne.Uint64(m[16:]), freelist: ne.Uint64(m[32:]), pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}
		if !found || mp.txid > pick.txid {
			pick, found = mp, true
		}
	}
	switch {
	case !found:
		return pick, errors.New("no valid meta page")
	case pick.txid != txid:
		return pick, fmt.Errorf("meta page of transaction %d, bbolt opened %d", pick.txid, txid)
	}
	return pick, nil
}

// page reads the header of page id, checks it and marks the page and its
// overflow as reached. It returns the flags, element count and the size
// in bytes of the page with its overflow.
func (c *treeCheck) page(id uint64) (flags uint16, count int, size int64, err error) {
	if id < 2 || id >= c.hwm {
		return 0, 0, 0, fmt.Errorf("page %d outside [2, %d)", id, c.hwm)
	}
	var h [boltPageHeader]byte
	if err := c.read(h[:], int64(id)*c.pageSize, id); err != nil {
		return 0, 0, 0, err
	}
	ne := binary.NativeEndian
	overflow := uint64(ne.Uint32(h[12:]))
	switch {
	case ne.Uint64(h[:]) != id:
		return 0, 0, 0, fmt.Errorf("page %d is labelled %d", id, ne.Uint64(h[:]))
	case id+overflow >= c.hwm:
		return 0, 0, 0, fmt.Errorf("page %d: %d overflow pages run past %d", id, overflow, c.hwm)
	}
	for p := id; p <= id+overflow; p++ {
		if c.used[p/64]&(1<<(p%64)) != 0 {
			return 0, 0, 0, fmt.Errorf("page %d reached twice", p)
		}
		c.used[p/64] |= 1 << (p % 64)
	}
	return ne.Uint16(h[8:]), int(ne.Uint16(h[10:])), int64(overflow+1) * c.pageSize, nil
}

// node checks the branch or leaf page id and everything below it,
// including the key order bbolt's own walk insists on: keys ascend within
// a page, and a child's keys lie in [its key in the parent, the parent's
// next key). It returns the largest key below id.
func (c *treeCheck) node(id uint64, depth int, minKey, maxKey []byte) ([]byte, error) {
	if depth > boltMaxDepth {
		return nil, fmt.Errorf("page tree deeper than %d at page %d", boltMaxDepth, id)
	}
	flags, count, size, err := c.page(id)
	if err != nil {
		return nil, err
	}
	if flags != boltBranch && flags != boltLeaf {
		return nil, fmt.Errorf("page %d has type %#x, want branch or leaf", id, flags)
	}
	if flags == boltBranch && count == 0 {
		return nil, fmt.Errorf("branch page %d is empty", id)
	}
	if boltPageHeader+int64(count)*boltElement > size {
		return nil, fmt.Errorf("page %d: %d elements overflow it", id, count)
	}
	base := int64(id) * c.pageSize
	elems := make([]byte, count*boltElement)
	if err := c.read(elems, base+boltPageHeader, id); err != nil {
		return nil, err
	}
	ne := binary.NativeEndian
	posAt, ksizeAt := 0, 4 // in a branch element
	if flags == boltLeaf {
		posAt, ksizeAt = 4, 8
	}
	// key reads element i's key, which lies at offset pos from the element.
	key := func(i int) ([]byte, error) {
		e := elems[i*boltElement:]
		at := int64(boltPageHeader+i*boltElement) + int64(ne.Uint32(e[posAt:]))
		ksize := int64(ne.Uint32(e[ksizeAt:]))
		if ksize > bolt.MaxKeySize || at+ksize > size {
			return nil, fmt.Errorf("page %d: key %d lies outside the page", id, i)
		}
		k := make([]byte, ksize)
		return k, c.read(k, base+at, id)
	}
	prev := minKey
	for i := range count {
		k, err := key(i)
		if err != nil {
			return nil, err
		}
		if (i == 0 && prev != nil && bytes.Compare(prev, k) > 0) || (i > 0 && bytes.Compare(prev, k) >= 0) ||
			(maxKey != nil && bytes.Compare(k, maxKey) >= 0) {
			return nil, fmt.Errorf("page %d: key %d (%x) out of order", id, i, k)
		}
		e := elems[i*boltElement:]
		if flags == boltBranch {
			next := maxKey
			if i+1 < count {
				if next, err = key(i + 1); err != nil {
					return nil, err
				}
			}
			if prev, err = c.node(ne.Uint64(e[8:]), depth+1, k, next); err != nil {
				return nil, err
			}
			continue
		}
		prev = k
		vat := int64(boltPageHeader+i*boltElement) + int64(ne.Uint32(e[4:])) + int64(ne.Uint32(e[8:]))
		vsize := int64(ne.Uint32(e[12:]))
		if vat+vsize > size {
			return nil, fmt.Errorf("leaf page %d: value %d lies outside the page", id, i)
		}
		if ne.Uint32(e)&boltBucketEntry == 0 {
			continue
		}
		if vsize < boltBucketValue || vsize > c.pageSize {
			return nil, fmt.Errorf("leaf page %d: bucket %d has a %d-byte value", id, i, vsize)
		}
		v := make([]byte, vsize)
		if err := c.read(v, base+vat, id); err != nil {
			return nil, err
		}
		if err := c.bucket(v, depth+1); err != nil {
			return nil, err
		}
	}
	return prev, nil
}

// bucket checks a bucket value: its root page, or its inline page.
func (c *treeCheck) bucket(v []byte, depth int) error {
	if depth > boltMaxDepth {
		return fmt.Errorf("buckets nested deeper than %d", boltMaxDepth)
	}
	ne := binary.NativeEndian
	if root := ne.Uint64(v); root != 0 {
		_, err := c.node(root, depth, nil, nil)
		return err
	}
	p := v[boltBucketValue:]
	if len(p) < boltPageHeader || ne.Uint16(p[8:]) != boltLeaf {
		return errors.New("inline bucket without a leaf page")
	}
	count := int(ne.Uint16(p[10:]))
	if boltPageHeader+count*boltElement > len(p) {
		return fmt.Errorf("inline bucket: %d elements overflow it", count)
	}
	for i := range count {
		e := p[boltPageHeader+i*boltElement:]
		vat := boltPageHeader + i*boltElement + int(ne.Uint32(e[4:])) + int(ne.Uint32(e[8:]))
		vend := vat + int(ne.Uint32(e[12:]))
		if vat < 0 || vend < vat || vend > len(p) {
			return fmt.Errorf("inline bucket: element %d lies outside it", i)
		}
		if ne.Uint32(e)&boltBucketEntry != 0 {
			if vend-vat < boltBucketValue {
				return fmt.Errorf("inline bucket: bucket %d has a %d-byte header", i, vend-vat)
			}
			if err := c.bucket(p[vat:vend], depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// freelist checks that the freelist page lists pages that exist and are
// not in the tree.
func (c *treeCheck) freelist(id uint64) error {
	flags, count, size, err := c.page(id)
	if err != nil {
		return err
	}
	if flags != boltFreelist {
		return fmt.Errorf("freelist page %d has type %#x", id, flags)
	}
	start, n := int64(boltPageHeader), int64(count)
	if count == 0xFFFF { // the real count is the first element
		var b [8]byte
		if err := c.read(b[:], int64(id)*c.pageSize+start, id); err != nil {
			return err
		}
		n, start = int64(binary.NativeEndian.Uint64(b[:])), start+8
	}
	if n < 0 || n > size/8 || start+n*8 > size {
		return fmt.Errorf("freelist page %d: %d ids overflow it", id, n)
	}
	ids := make([]byte, n*8)
	if err := c.read(ids, int64(id)*c.pageSize+start, id); err != nil {
		return err
	}
	for i := range n {
		p := binary.NativeEndian.Uint64(ids[i*8:])
		if p < 2 || p >= c.hwm || c.used[p/64]&(1<<(p%64)) != 0 {
			return fmt.Errorf("freelist page %d lists page %d: out of range, in use or listed twice", id, p)
		}
		c.used[p/64] |= 1 << (p % 64)
	}
	return nil
}
