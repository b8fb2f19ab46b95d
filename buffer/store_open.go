package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/redwire/redwire/internal/codec"
)

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
		parked []parkedEntry
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
				counts, parked, next, err = scanFile(tx, s.path, s.smallBelow())
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
	buckets := [][]byte{bucketRecords, bucketParked, bucketQuarantine, bucketMeta, bucketThinned}
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
			counts, parked, next, err = scanFile(tx, s.path, s.smallBelow())
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
	s.db, s.counts, s.parked, s.next = db, counts, parked, next
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

// scanFile reads every record header (not the payloads), parked ones
// included, and returns the counts, the index of parked records, the next
// sequence number, and the first sign that the file is not one this store
// wrote.
func scanFile(tx *bolt.Tx, path string, smallBelow int64) (c storeCounts, parked []parkedEntry, next uint64, err error) {
	c, next, err = scanBuckets(tx, path, smallBelow)
	if err != nil {
		return c, nil, 0, err
	}
	c.parked, parked, err = scanParked(tx)
	return c, parked, next, err
}

// scanBuckets is scanFile but for the parked area's counts and index: it
// checks every bucket's keys and headers, and counts the FIFO.
func scanBuckets(tx *bolt.Tx, path string, smallBelow int64) (c storeCounts, next uint64, err error) {
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
		if v := meta.Get(keyConsumed); v != nil {
			if len(v) != 8 {
				return c, 0, fmt.Errorf("meta consumed is %d bytes, want 8", len(v))
			}
			c.consumed = binary.BigEndian.Uint64(v)
		}
	}
	for _, name := range [][]byte{bucketQuarantine, bucketParked, bucketRecords} {
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
			if bytes.Equal(name, bucketQuarantine) {
				return nil
			}
			h, err := codec.ParseHeader(v)
			if err != nil && bytes.Equal(name, bucketParked) {
				return fmt.Errorf("parked record %d: %w", seq, err)
			}
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
			}
			if bytes.Equal(name, bucketParked) {
				return nil // counted by scanParked
			}
			// A segment table that does not parse counts as nothing:
			// like a bad payload, Peek quarantines it.
			_ = c.add(seq, v, h, smallBelow)
			return nil
		})
		if err != nil {
			return c, 0, err
		}
	}
	return c, next, nil
}

// add counts a record appended at the tail, rec under seq with header h.
// It fails, counting nothing, if a segment record's table does not parse.
func (c *storeCounts) add(seq uint64, rec []byte, h codec.Header, smallBelow int64) error {
	batches, samples, first, err := remaining(seq, rec, h, c.consumed)
	if err != nil {
		return err
	}
	if c.batches == 0 && batches > 0 {
		c.headSeq, c.headMinT, c.headMaxT = first, h.MinT, h.MaxT
	}
	c.batches += batches
	c.samples += samples
	c.bytes += int64(len(rec))
	if !h.Segment {
		if c.tailBatches == 0 {
			c.tailSeq = seq
		}
		c.tailBatches++
		c.tailSamples += h.Samples
		return nil
	}
	c.tailBatches, c.tailSamples = 0, 0
	if h.Samples >= smallBelow {
		c.smallSegs = 0
		return nil
	}
	if c.smallSegs == 0 {
		c.smallSeq = seq
	}
	c.smallSegs++
	return nil
}

// normal is c with the start of an empty run zeroed: where a run that is
// gone began does not matter, so two counts of one file compare equal.
func (c storeCounts) normal() storeCounts {
	if c.tailBatches == 0 {
		c.tailSeq = 0
	}
	if c.smallSegs == 0 {
		c.smallSeq = 0
	}
	return c
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
