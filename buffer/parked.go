package buffer

// The parked area: batches a receiver refused for their age (HTTP 400 "out
// of bounds": older than its head window). They are never given up for
// that. They wait in the endpoint's buffer file, in the bucket "parked",
// until they can be sent (the receiver declares an out-of-order window
// that reaches them) or an offline `redwire backfill` writes them into
// TSDB blocks.
//
// A parked record is a batch record exactly like those of the FIFO
// (internal/codec, header first), under a key from the same next_seq
// counter: keys are unique across records, parked and quarantine, so a bad
// parked record goes to the one quarantine under its own key, and the
// counter's invariant (greater than every key ever used) stays one
// statement. The FIFO's consumed mark does not apply to parked records.
//
// Rules, and where they are enforced:
//   - Durability: Park commits (and fsyncs, unless NoSync) in one
//     transaction before it returns; a failed Park (ErrNoSpace, I/O)
//     changes nothing (Store.write).
//   - Caps: parked bytes count against MaxBytes with the FIFO's. Over it,
//     the oldest parked records go first, oldest by key (the order they
//     were parked), and are reported as Dropped{Reason: DropBufferFull,
//     Parked: true}; the FIFO's oldest go only once nothing is parked.
//     Invariant: a FIFO record is never dropped for room while a parked
//     one is kept. So a Park never drops FIFO records unless MaxBytes was
//     lowered under what the FIFO alone holds, and a Park whose batch no
//     longer fits beside the FIFO drops that batch itself, counted.
//   - MaxAge does not apply: parked data is kept because it is old.
//   - Parked records are no backlog: Next never leases them, and Stats'
//     Batches, Samples and Bytes leave them out (see StoreStats.Parked).

import (
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// ParkedStats describes the parked area.
type ParkedStats struct {
	Batches int64
	Samples int64
	Bytes   int64 // record bytes, counted against MaxBytes
	// MinT and MaxT are the earliest and latest sample times (ms) of the
	// parked records; 0 when nothing is parked.
	MinT, MaxT int64
}

// Park keeps batch, which the receiver refused for its age, in the parked
// area of the buffer's file, committed and fsynced when it returns. To
// stay under max_bytes it may drop the oldest parked records, and reports
// them (Dropped.Parked); see the package's rules in parked.go. On error
// nothing changed: the caller still holds the batch.
func (b *Buffer) Park(batch sample.Batch) ([]Dropped, error) {
	batch.Metadata = nil // metadata rides with leases, not with stored records
	// Under mu, like the FIFO's writes: a Park that had to drop FIFO
	// records (max_bytes lowered below them) settles them as Append does.
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.store.Park(batch)
	return b.settle(d), err
}

// Parked is what the parked area holds. Cheap: no I/O.
func (b *Buffer) Parked() ParkedStats { return b.store.Parked() }

// PeekParked returns parked records oldest first (by key), those with a
// key after after and a newest sample at or after minT (math.MinInt64
// for all), whole records only, as many as fit in maxSamples but at least
// one if any matches. It removes nothing: DeleteParked does, once they
// are sent. A record that does not read is quarantined and skipped.
func (b *Buffer) PeekParked(after uint64, maxSamples int, minT int64) ([]Record, error) {
	return b.store.PeekParked(after, maxSamples, minT)
}

// DeleteParked removes the parked records under keys (Record.Seq), those
// delivered or backfilled, in one transaction. Keys that are not parked
// (any more) are ignored.
func (b *Buffer) DeleteParked(keys []uint64) error { return b.store.DeleteParked(keys) }

// Park is Buffer.Park on the store: one record, in the parked bucket.
func (s *Store) Park(b sample.Batch) ([]Dropped, error) {
	return s.write([]sample.Batch{b}, true)
}

// Parked is what the parked area holds; O(1).
func (s *Store) Parked() ParkedStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts.parked.stats()
}

// PeekParked is Buffer.PeekParked.
func (s *Store) PeekParked(after uint64, maxSamples int, minT int64) ([]Record, error) {
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
			cur := tx.Bucket(bucketParked).Cursor()
			for k, v := cur.Seek(seqKey(after + 1)); k != nil; k, v = cur.Next() {
				seq := binary.BigEndian.Uint64(k)
				h, err := codec.ParseHeader(v)
				if err != nil {
					bad = append(bad, seq)
					continue
				}
				if h.MaxT < minT {
					continue
				}
				if len(recs) > 0 && int64(total)+h.Samples > int64(maxSamples) {
					return nil
				}
				batches, err := decodeRecords(&s.dec, seq, v, 0)
				if err != nil {
					bad = append(bad, seq)
					continue
				}
				for _, r := range batches {
					recs = append(recs, r)
					total += len(r.Batch.Samples)
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("buffer store %s: reading parked records: %w", s.path, err)
	}
	if len(bad) > 0 {
		if err := s.quarantineParked(bad); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// DeleteParked is Buffer.DeleteParked; what `redwire backfill --delete`
// calls on keys it took from ReadStore with ReadOptions.Parked.
func (s *Store) DeleteParked(keys []uint64) error {
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
		parked := tx.Bucket(bucketParked)
		gone := make(map[uint64]bool, len(keys))
		recount := false
		for _, k := range keys {
			v := parked.Get(seqKey(k))
			if v == nil || gone[k] {
				continue
			}
			h, herr := codec.ParseHeader(v)
			size := int64(len(v))
			if err := parked.Delete(seqKey(k)); err != nil {
				return err
			}
			gone[k] = true
			if herr != nil {
				recount = true // counted as nothing: nothing to take off
				continue
			}
			ht.counts.parked.batches--
			ht.counts.parked.samples -= h.Samples
			ht.counts.parked.bytes -= size
		}
		if recount {
			var err error
			ht.counts.parked, ht.parked, err = scanParked(tx)
			return err
		}
		// A new slice: s.parked stays as it was until the commit.
		ht.parked = slices.DeleteFunc(slices.Clone(ht.parked), func(e parkedEntry) bool { return gone[e.seq] })
		ht.counts.parked.bounds(ht.parked)
		return nil
	})
	if err != nil {
		return err
	}
	s.commit(ht)
	return nil
}

// quarantineParked moves the given parked records to quarantine in one
// transaction and recounts the parked area; mu is held.
func (s *Store) quarantineParked(seqs []uint64) error {
	ht := s.headTx()
	err := s.update(func(tx *bolt.Tx) error {
		parked, q := tx.Bucket(bucketParked), tx.Bucket(bucketQuarantine)
		for _, seq := range seqs {
			k := seqKey(seq)
			v := parked.Get(k)
			if v == nil {
				continue
			}
			if err := q.Put(k, slices.Clone(v)); err != nil {
				return err
			}
			if err := parked.Delete(k); err != nil {
				return err
			}
			ht.quarantined++
		}
		var err error
		ht.counts.parked, ht.parked, err = scanParked(tx)
		return err
	})
	if err != nil {
		return err
	}
	s.commit(ht)
	return nil
}

// dropParked deletes the oldest parked records while over says so and
// counts them in d. A record whose header does not parse is quarantined,
// not dropped: nothing goes uncounted.
func (ht *headTx) dropParked(d *Dropped, over func() bool) error {
	parked := ht.tx.Bucket(bucketParked)
	cur := parked.Cursor()
	for k, v := cur.First(); k != nil && over(); k, v = cur.First() {
		seq := binary.BigEndian.Uint64(k)
		h, err := codec.ParseHeader(v)
		if err != nil {
			if err := ht.tx.Bucket(bucketQuarantine).Put(slices.Clone(k), slices.Clone(v)); err != nil {
				return err
			}
			if err := cur.Delete(); err != nil {
				return err
			}
			ht.quarantined++
			if ht.counts.parked, ht.parked, err = scanParked(ht.tx); err != nil {
				return err
			}
			continue
		}
		if recs, err := decodeRecords(&ht.dec, seq, v, 0); err == nil {
			for _, r := range recs {
				d.Spans = sample.AddSpans(d.Spans, r.Batch.Samples)
			}
		}
		size := int64(len(v))
		if err := cur.Delete(); err != nil {
			return err
		}
		c := &ht.counts.parked
		c.batches--
		c.samples -= h.Samples
		c.bytes -= size
		if len(ht.parked) > 0 && ht.parked[0].seq == seq {
			ht.parked = ht.parked[1:] // no write: s.parked stays as it was
		} else {
			ht.parked = slices.DeleteFunc(slices.Clone(ht.parked), func(e parkedEntry) bool { return e.seq == seq })
		}
		if h.MinT <= c.minT || h.MaxT >= c.maxT {
			c.bounds(ht.parked)
		}
		d.Batches++
		d.Samples += int(h.Samples)
	}
	return nil
}

// addParked counts a record parked under seq, size bytes with header h.
// The append writes past the end of s.parked's slice at most, which
// s.parked does not see: it stays as it was until the commit.
func (ht *headTx) addParked(seq uint64, h codec.Header, size int64) {
	ht.parked = append(ht.parked, parkedEntry{seq: seq, minT: h.MinT, maxT: h.MaxT})
	ht.counts.parked.add(h, size)
}

// parkedCounts is what Stats and Parked report of the parked area.
type parkedCounts struct {
	batches, samples, bytes int64
	minT, maxT              int64 // 0 when empty
}

// parkedEntry is what the Store keeps in memory of one parked record: its
// times, so that parkedCounts' bounds are exact after a deletion.
type parkedEntry struct {
	seq        uint64
	minT, maxT int64
}

func (c parkedCounts) stats() ParkedStats {
	return ParkedStats{Batches: c.batches, Samples: c.samples, Bytes: c.bytes, MinT: c.minT, MaxT: c.maxT}
}

func (c *parkedCounts) add(h codec.Header, size int64) {
	if c.batches == 0 {
		c.minT, c.maxT = h.MinT, h.MaxT
	}
	c.minT, c.maxT = min(c.minT, h.MinT), max(c.maxT, h.MaxT)
	c.batches++
	c.samples += h.Samples
	c.bytes += size
}

// bounds recomputes minT and maxT from the index of what is left.
func (c *parkedCounts) bounds(idx []parkedEntry) {
	c.minT, c.maxT = 0, 0
	for i, e := range idx {
		if i == 0 {
			c.minT, c.maxT = e.minT, e.maxT
		}
		c.minT, c.maxT = min(c.minT, e.minT), max(c.maxT, e.maxT)
	}
}

// scanParked counts and indexes the parked records from their headers. A
// record whose header does not parse counts as nothing; PeekParked
// quarantines it when it gets there. Without a parked bucket (a file
// from before it existed) nothing is parked.
func scanParked(tx *bolt.Tx) (parkedCounts, []parkedEntry, error) {
	var (
		c   parkedCounts
		idx []parkedEntry
	)
	b := tx.Bucket(bucketParked)
	if b == nil {
		return c, nil, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		h, err := codec.ParseHeader(v)
		if err != nil || len(k) != 8 {
			return nil
		}
		idx = append(idx, parkedEntry{seq: binary.BigEndian.Uint64(k), minT: h.MinT, maxT: h.MaxT})
		c.add(h, int64(len(v)))
		return nil
	})
	return c, idx, err
}
