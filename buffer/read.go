package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/codec"
)

// What the offline tools (redwire buffer inspect and export) need of a
// buffer file, which the agent may have open: read its records without
// changing it, and remove the ones they took.

// ReadOptions shape how ReadStore reads a buffer file that may belong to
// a running agent. The zero value is usable.
type ReadOptions struct {
	// LockTimeout is how long to wait for the shared lock before copying
	// the file instead. Default 200ms.
	LockTimeout time.Duration
	// TempDir holds the snapshot copy while it is read; default
	// os.TempDir(). It needs room for the whole buffer file.
	TempDir string
	// Gaps, if set, receives the lost ranges the agent saved in the file
	// (see Gap), read in the same pass as the records.
	Gaps *[]Gap
	// ParkedStats, if set, receives what the parked area holds (from its
	// headers, as Buffer.Parked counts it), read in the same pass.
	ParkedStats *ParkedStats
	// Parked reads the parked area (Buffer.Park) instead of the FIFO:
	// batches the receiver refused for their age, which `redwire
	// backfill` writes into TSDB blocks. The consumed mark does not
	// apply to them; Store.DeleteParked removes what was taken.
	Parked bool
}

// FileRecord is one record of a buffer file as ReadStore finds it: a
// batch record, holding one batch, or a segment record, holding the
// batches sealed together to save space.
type FileRecord struct {
	// Key is the record's key: the sequence number of its first batch.
	Key uint64
	// Bytes is the record's size, header included: what max_bytes caps.
	Bytes int64
	// MinT and MaxT are the earliest and latest sample times (ms) its
	// header gives: of all its batches, acknowledged ones included.
	MinT, MaxT int64
	// Batches are those not acknowledged yet, oldest first, each under
	// its own sequence number. A segment record stays whole until all
	// its batches are acknowledged, so a record may hold none.
	Batches []Record
	// Err says why the record does not read (a key that is no sequence
	// number, a bad checksum, a payload that does not decode); Batches
	// is then nil. The agent quarantines such a record when it gets
	// there.
	Err error
}

// ReadStore calls fn with each record of the buffer file at path (of its
// parked area with opts.Parked), in order, without changing the file, and safely while an agent runs on
// it: under bbolt's shared lock if it can be had within opts.LockTimeout,
// else on a copy of the file (a running agent holds an exclusive lock
// for as long as it runs), and then snapshot is true. The copy is
// consistent: bbolt overwrites no page of the committed tree before the
// next transaction but one, and a copy is kept only if the file's meta
// page did not change while it was taken. The file is checked as
// OpenStore checks it before it is read. quarantined is the number of
// records the agent set aside as unreadable. A nil fn only checks the
// file.
func ReadStore(path string, opts ReadOptions, fn func(FileRecord) error) (snapshot bool, quarantined int64, err error) {
	snapshot, err = viewStore(path, opts, func(tx *bolt.Tx) error {
		if opts.Gaps != nil {
			gs, err := gapsIn(tx)
			if err != nil {
				return err
			}
			*opts.Gaps = gs
		}
		if opts.ParkedStats != nil {
			c, _, err := scanParked(tx)
			if err != nil {
				return err
			}
			*opts.ParkedStats = c.stats()
		}
		if fn == nil {
			return nil
		}
		if q := tx.Bucket(bucketQuarantine); q != nil {
			quarantined = int64(q.Stats().KeyN)
		}
		bucket := bucketRecords
		if opts.Parked {
			bucket = bucketParked
		}
		return readRecords(tx, bucket, fn)
	})
	return snapshot, quarantined, err
}

// Read is ReadStore of an open store, under its lock: what an export
// that deletes what it read uses, holding the store from the read to the
// deletion so that nothing it read can change in between.
func (s *Store) Read(fn func(FileRecord) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return s.errClosed()
	}
	return protect(func() error {
		return s.db.View(func(tx *bolt.Tx) error { return readRecords(tx, bucketRecords, fn) })
	})
}

// ReadParked is Read of the store's parked area: what a backfill that
// deletes what it wrote uses, as Read is for an export.
func (s *Store) ReadParked(fn func(FileRecord) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return s.errClosed()
	}
	return protect(func() error {
		return s.db.View(func(tx *bolt.Tx) error { return readRecords(tx, bucketParked, fn) })
	})
}

// readRecords calls fn with each record of the bucket name (records or
// parked) in tx, decoding the batches that the consumed mark does not
// hide; it hides no parked ones.
func readRecords(tx *bolt.Tx, name []byte, fn func(FileRecord) error) error {
	records := tx.Bucket(name)
	if records == nil {
		return nil
	}
	var consumed uint64
	if v := tx.Bucket(bucketMeta).Get(keyConsumed); len(v) == 8 && bytes.Equal(name, bucketRecords) {
		consumed = binary.BigEndian.Uint64(v)
	}
	var dec codec.BatchDecoder
	c := records.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r := FileRecord{Bytes: int64(len(v))}
		if len(k) != 8 {
			r.Err = fmt.Errorf("key %x is not an 8-byte sequence number", k)
		} else {
			r.Key = binary.BigEndian.Uint64(k)
			h, err := codec.ParseHeader(v)
			if err == nil {
				r.MinT, r.MaxT = h.MinT, h.MaxT
				r.Batches, err = decodeRecords(&dec, r.Key, v, consumed)
			}
			if err != nil {
				r.Batches, r.Err = nil, err
			}
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// DeleteRecords removes the records under the given keys (FileRecord.Key)
// in one transaction: what an export that deletes took. A record goes
// whole, every batch in it.
func (s *Store) DeleteRecords(keys []uint64) error {
	if len(keys) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return s.errClosed()
	}
	ht := s.headTx()
	err := s.update(func(tx *bolt.Tx) error {
		ht.begin(tx)
		records := tx.Bucket(bucketRecords)
		for _, k := range keys {
			if err := records.Delete(seqKey(k)); err != nil {
				return err
			}
		}
		return ht.recount()
	})
	if err != nil {
		return err
	}
	s.commit(ht)
	return nil
}
