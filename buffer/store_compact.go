package buffer

// Giving disk space back: bbolt never returns pages to the filesystem, so
// the store rebuilds its file once a backlog has drained (Compact), and
// while one is held once freed pages outweigh the records (defragment).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// compactThreshold is the file size above which an empty store is
// recreated. bbolt never gives pages back to the filesystem, so without
// this a week-long outage would leave its high-water mark on disk forever.
const compactThreshold = 4 << 20

// Compact gives disk space back once a backlog has drained: if the store
// is empty and its file is larger than compactThreshold (on top of what
// parked records need), the file is replaced by a fresh one holding only
// the parked records, the quarantine and the sequence counter. The fresh file is built beside the old one and renamed over
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
	// Parked records are copied: with half as many bytes again of slack
	// for them, a file that holds them is not rebuilt at every call.
	parked := s.counts.parked.bytes
	if s.counts.batches > 0 || fileSize(s.path) <= s.compactAt+parked+parked/2 {
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
	all := s.counts.bytes + s.counts.parked.bytes // a rebuild copies both
	if s.counts.batches == 0 || hwm <= all+all/2+s.slack {
		return nil
	}
	if s.opts.MinFreeBytes > 0 {
		if free, known, _ := s.freeSpace(filepath.Dir(s.path)); known && free-all < s.opts.MinFreeBytes {
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

// rebuild replaces the file by a fresh one holding the parked records,
// the quarantine, the sequence counter and, with records, the records
// and the consumed mark.
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
				for _, name := range [][]byte{bucketRecords, bucketParked, bucketQuarantine, bucketMeta, bucketThinned} {
					if _, err := tx.CreateBucket(name); err != nil {
						return err
					}
				}
				if err := tx.Bucket(bucketMeta).Put(keyNextSeq, seqKey(s.next)); err != nil {
					return err
				}
				if err := copyGaps(old, tx); err != nil {
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
			if err != nil {
				return err
			}
			// Parked records are kept whatever happens to the FIFO.
			if err := copyBucket(old, fresh, bucketParked); err != nil || !records {
				return err
			}
			if err := copyBucket(old, fresh, bucketThinned); err != nil {
				return err
			}
			return copyBucket(old, fresh, bucketRecords)
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
		s.counts = storeCounts{parked: s.counts.parked}
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("buffer store %s: closing the compacted file: %w", s.path, err)
	}
	return nil
}

// copyBucket copies the bucket name (records or parked) of old into
// fresh, in order, in transactions of about defragTxBytes. A file from
// before the bucket existed has nothing to copy.
func copyBucket(old *bolt.Tx, fresh *bolt.DB, name []byte) error {
	b := old.Bucket(name)
	if b == nil {
		return nil
	}
	cur := b.Cursor()
	k, v := cur.First()
	for k != nil {
		err := fresh.Update(func(tx *bolt.Tx) error {
			records := tx.Bucket(name)
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
