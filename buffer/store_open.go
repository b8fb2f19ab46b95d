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
				counts, next, err = scanFile(tx, s.path, s.smallBelow())
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
			counts, next, err = scanFile(tx, s.path, s.smallBelow())
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
func scanFile(tx *bolt.Tx, path string, smallBelow int64) (c storeCounts, next uint64, err error) {
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
			h, err := codec.ParseHeader(v)
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
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
	return s.rebuild(false)
}

// defragSlack is what defragment allows on top of 1.5 times the records:
// a small backlog's file may be this much larger before it is rebuilt.
// Rebuilding a file this small costs little, and less slack keeps the
// bytes on disk per sample of a short outage near its records'.
const defragSlack = 256 << 10

// defragment rebuilds a store that holds a backlog once bbolt's
// high-water mark passes 1.5 times its records plus defragSlack: pages
// freed by
// sealed batch records and merged segments are scattered, a new segment
// needs a contiguous run, and bbolt never gives pages back, so an outage
// would otherwise leave the file at two or three times its data. Each
// rebuild copies the records once; the next needs half as many bytes
// again of freed pages, so the cost per byte stored stays constant. The
// copy goes to a new file, in transactions of defragTxBytes, and is
// renamed over the old one only when whole; a crash or a full disk
// midway leaves the old file as it was. mu is held.
func (s *Store) defragment() error {
	var hwm int64
	if err := s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil }); err != nil {
		return err
	}
	if s.counts.batches == 0 || hwm <= s.counts.bytes+s.counts.bytes/2+s.slack {
		return nil
	}
	if s.opts.MinFreeBytes > 0 {
		if free, known, _ := s.freeSpace(filepath.Dir(s.path)); known && free-s.counts.bytes < s.opts.MinFreeBytes {
			return fmt.Errorf("%w: no room for a defragmented copy of %s", ErrNoSpace, s.path)
		}
	}
	if err := s.rebuild(true); err != nil {
		return err
	}
	s.defrags++
	return nil
}

// defragTxBytes bounds one transaction of a rebuild: bbolt keeps a
// transaction's dirty pages in memory until it commits.
const defragTxBytes = 8 << 20

// rebuild replaces the file by a fresh one holding the quarantine, the
// sequence counter and, with records, the records and the consumed mark.
func (s *Store) rebuild(records bool) error {
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
			err := fresh.Update(func(tx *bolt.Tx) error {
				for _, name := range [][]byte{bucketRecords, bucketQuarantine, bucketMeta} {
					if _, err := tx.CreateBucket(name); err != nil {
						return err
					}
				}
				if err := tx.Bucket(bucketMeta).Put(keyNextSeq, seqKey(s.next)); err != nil {
					return err
				}
				if v := old.Bucket(bucketMeta).Get(keyConsumed); records && v != nil {
					if err := tx.Bucket(bucketMeta).Put(keyConsumed, bytes.Clone(v)); err != nil {
						return err
					}
				}
				q := tx.Bucket(bucketQuarantine)
				return old.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
					return q.Put(bytes.Clone(k), bytes.Clone(v))
				})
			})
			if err != nil || !records {
				return err
			}
			return copyRecords(old, fresh)
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
	s.db = fresh
	if !records {
		s.counts = storeCounts{}
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("buffer store %s: closing the compacted file: %w", s.path, err)
	}
	return nil
}

// copyRecords copies the records bucket of old into fresh, in order, in
// transactions of about defragTxBytes.
func copyRecords(old *bolt.Tx, fresh *bolt.DB) error {
	cur := old.Bucket(bucketRecords).Cursor()
	k, v := cur.First()
	for k != nil {
		err := fresh.Update(func(tx *bolt.Tx) error {
			records := tx.Bucket(bucketRecords)
			records.FillPercent = 1
			for n := 0; k != nil && n < defragTxBytes; k, v = cur.Next() {
				if err := records.Put(bytes.Clone(k), bytes.Clone(v)); err != nil {
					return err
				}
				n += len(v)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
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
