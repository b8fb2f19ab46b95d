package buffer

// The store's FIFO: Append at the tail; Peek, PeekAfter and Delete at the
// head; Expire, and the drops Append makes, from the head.

import (
	"encoding/binary"
	"fmt"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// Append stores b as one record in one transaction, committed and fsynced
// before it returns, and first drops the oldest records that MaxAge and
// MaxBytes no longer allow, in the same transaction. A batch that is
// itself too old, or larger than MaxBytes, is dropped at once. An empty
// batch is not stored.
//
// Every Append that returns nil consumes a sequence number, LastSeq; a
// failed one changes nothing. ErrNoSpace means the disk is (nearly) full.
func (s *Store) Append(b sample.Batch) (dropped []Dropped, err error) {
	return s.appendAll([]sample.Batch{b})
}

// maxKeptRecs bounds the records' scratch a Store keeps between appends.
const maxKeptRecs = 4 << 20

// appendAll is Append of several batches, one record each, in the order
// given and in one transaction: one fsync for all of them (the group
// commit of buffer.mode always, groupcommit.go). It succeeds or fails
// whole. Each non-empty batch consumes a sequence number.
func (s *Store) appendAll(bs []sample.Batch) (dropped []Dropped, err error) {
	return s.write(bs, false)
}

// write is appendAll to the FIFO (records), or with parked to the parked
// area (parked.go), where MaxAge does not apply and nothing is sealed.
// Over MaxBytes it drops the oldest parked records first, then the
// FIFO's oldest.
func (s *Store) write(bs []sample.Batch, parked bool) (dropped []Dropped, err error) {
	for _, b := range bs {
		if uint64(len(b.Samples)) >= codec.SegmentFlag {
			return nil, fmt.Errorf("buffer store %s: batch of %d samples is too large for one record", s.path, len(b.Samples))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil, s.errClosed()
	}
	tooOld := Dropped{Reason: DropTooOld}
	tooBig := Dropped{Reason: DropBufferFull, Parked: parked}
	parkedFull := Dropped{Reason: DropBufferFull, Parked: true}
	full := Dropped{Reason: DropBufferFull}
	var thinned []Dropped // by resolution
	cutoff, expiring := s.cutoff()
	expiring = expiring && !parked // parked data is kept for being old
	bucket := bucketRecords
	if parked {
		bucket = bucketParked
	}

	// Each record to write, with its sequence number, its bytes
	// s.recs[start:end]. Slices of s.recs are taken once it has stopped
	// growing: bbolt keeps a reference to every value until the
	// transaction ends.
	type pending struct {
		seq        uint64
		start, end int
		h          codec.Header
	}
	var writes []pending
	seq := s.next
	s.recs = s.recs[:0]
	for i := range bs {
		b := &bs[i]
		if len(b.Samples) == 0 {
			continue
		}
		h := codec.HeaderOf(b)
		// Encoded into s.buf, then copied: the encoder grows its buffer
		// by exactly what it lacks, which for a group of records in one
		// buffer would copy all of them again for each one.
		err = protect(func() error {
			s.buf = codec.AppendRecord(s.buf[:0], &s.enc, b, h)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("buffer store %s: encoding: %w", s.path, err)
		}
		switch {
		case expiring && h.MaxT < cutoff:
			tooOld.Samples, tooOld.Batches = tooOld.Samples+int(h.Samples), tooOld.Batches+1
			tooOld.Spans = sample.AddSpans(tooOld.Spans, b.Samples)
		case s.opts.MaxBytes > 0 && int64(len(s.buf)) > s.opts.MaxBytes:
			tooBig.Samples, tooBig.Batches = tooBig.Samples+int(h.Samples), tooBig.Batches+1
			tooBig.Spans = sample.AddSpans(tooBig.Spans, b.Samples)
		default:
			start := len(s.recs)
			s.recs = append(s.recs, s.buf...)
			writes = append(writes, pending{seq: seq, start: start, end: len(s.recs), h: h})
		}
		seq++
	}
	used := seq - s.next // sequence numbers consumed, also by batches dropped at once
	if used == 0 {
		return nil, nil
	}
	if len(writes) > 0 && s.opts.MinFreeBytes > 0 {
		// Checked before writing: bbolt may need several pages more than
		// the records, and a filesystem that fills up mid-commit costs a
		// rollback that rescans the whole file.
		dir := filepath.Dir(s.path)
		if free, known, _ := s.freeSpace(dir); known && free-int64(len(s.recs)) < s.opts.MinFreeBytes {
			return nil, fmt.Errorf("%w: %s has %d bytes free; %d record bytes would leave less than the %d that buffer.min_free_bytes keeps free",
				ErrNoSpace, dir, free, len(s.recs), s.opts.MinFreeBytes)
		}
	}
	needExpire := expiring && s.counts.batches > 0 && s.counts.headMaxT < cutoff
	if len(writes) == 0 && !needExpire {
		s.next += used
		return dropIfAny(tooOld, tooBig), nil
	}

	ht := s.headTx()
	err = s.update(func(tx *bolt.Tx) error {
		ht.begin(tx)
		thinned = nil // a transaction bbolt retries starts over
		if expiring {
			if err := ht.drop(&tooOld, func(_ uint64, h codec.Header) bool { return h.MaxT < cutoff }); err != nil {
				return err
			}
		}
		if len(writes) == 0 {
			return ht.end()
		}
		records := tx.Bucket(bucket)
		records.FillPercent = 1 // keys only ever grow: fill pages instead of splitting them in half
		for _, w := range writes {
			rec := s.recs[w.start:w.end]
			if err := records.Put(seqKey(w.seq), rec); err != nil {
				return err
			}
			if parked {
				ht.addParked(w.seq, w.h, int64(len(rec)))
			} else if err := ht.counts.add(w.seq, rec, w.h, ht.smallBelow); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyNextSeq, seqKey(seq)); err != nil {
			return err
		}
		if s.opts.MaxBytes > 0 {
			over := func() bool { return ht.counts.bytes+ht.counts.parked.bytes > s.opts.MaxBytes }
			// Parked records go first, new ones of a Park too, last.
			if err := ht.dropParked(&parkedFull, over); err != nil {
				return err
			}
			// Then old segments are thinned, down to the floor.
			if err := s.thinStore(ht, &thinned, over); err != nil {
				return err
			}
			if s.thinFloor() != 0 {
				if err := s.trimHead(ht, &full, over); err != nil {
					return err
				}
			}
			// Then the FIFO's. The last new record fits on its own
			// (checked above), and nothing is parked any more, so this
			// stops before reaching it; earlier ones of the same call
			// may go, oldest first, like any other.
			if err := ht.drop(&full, func(uint64, codec.Header) bool { return over() }); err != nil {
				return err
			}
		}
		return ht.end()
	})
	if err != nil {
		return nil, err
	}
	s.commit(ht)
	s.next += used
	if cap(s.recs) > maxKeptRecs {
		s.recs = nil // a large group's: not worth keeping for the next
	}
	if !parked {
		s.compress()
	}
	return append(thinned, dropIfAny(tooOld, tooBig, parkedFull, full)...), nil
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
