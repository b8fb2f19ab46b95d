package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// headTx removes records from the head of the FIFO within one write
// transaction, keeping a copy of the counts that becomes the Store's only
// once the transaction has committed (Store.commit).
type headTx struct {
	counts      storeCounts
	tx          *bolt.Tx
	quarantined int64
	smallBelow  int64    // a segment of fewer samples is small (see merge)
	pins        []uint64 // the store's, when the transaction began
	leased      []leasedDrop
	dec         codec.BatchDecoder // reads dropped records for their spans
	// parked is the store's index of parked records as the transaction
	// leaves it. Invariant: no write to it changes an element s.parked
	// sees, so a transaction that fails leaves s.parked as it was.
	parked []parkedEntry
}

func (s *Store) headTx() *headTx {
	return &headTx{counts: s.counts, smallBelow: s.smallBelow(), pins: slices.Clone(s.pins), parked: s.parked}
}

// commit adopts the state of a committed transaction; mu must be held.
func (s *Store) commit(ht *headTx) {
	s.counts = ht.counts
	s.parked = ht.parked
	s.quarantined += ht.quarantined
	s.leased = append(s.leased, ht.leased...)
}

func (ht *headTx) begin(tx *bolt.Tx) { ht.tx = tx }

// drop deletes head records while drop says so and counts what was left
// of them in d. A segment record goes whole. A record whose header no
// longer parses (the disk changed under us) is not dropped but
// quarantined: nothing is deleted without being counted, and a header
// that lies cannot be counted.
func (ht *headTx) drop(d *Dropped, drop func(seq uint64, h codec.Header) bool) error {
	records := ht.tx.Bucket(bucketRecords)
	cur := records.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.First() {
		seq := binary.BigEndian.Uint64(k)
		h, err := codec.ParseHeader(v)
		var batches, samples int64
		if err == nil {
			batches, samples, _, err = remaining(seq, v, h, ht.counts.consumed)
		}
		if err != nil {
			if err := ht.quarantineHead(k, v); err != nil {
				return err
			}
			continue
		}
		if !drop(seq, h) {
			break
		}
		ht.spansOf(d, seq, v, h)
		if err := ht.deleteHead(cur, seq, h, int64(len(v)), batches, samples); err != nil {
			return err
		}
		d.Batches += int(batches)
		d.Samples += int(samples)
	}
	return nil
}

// spansOf adds where the record at key lay in time, per target, to d,
// or, for the batches a lease holds, to that lease's held-back drop
// (see Buffer.settle): a lost range is reported once it is lost. A
// record whose body does not decode is still counted, by its header,
// but without spans.
func (ht *headTx) spansOf(d *Dropped, key uint64, rec []byte, h codec.Header) {
	recs, err := decodeRecords(&ht.dec, key, rec, ht.counts.consumed)
	if err != nil {
		if len(ht.pins) > 0 {
			ht.leasedOf(d.Reason, key, rec, h)
		}
		return
	}
	for _, r := range recs {
		held := ht.heldBy(r.Seq, d.Reason)
		if held == nil {
			d.Spans = sample.AddSpans(d.Spans, r.Batch.Samples)
			continue
		}
		held.Samples += r.Batch.Len()
		held.Spans = sample.AddSpans(held.Spans, r.Batch.Samples)
	}
}

// heldBy is the held-back drop for reason of the lease that holds the
// batch seq, nil if no lease holds it.
func (ht *headTx) heldBy(seq uint64, reason string) *Dropped {
	i, _ := slices.BinarySearch(ht.pins, seq)
	if seq <= ht.counts.consumed || i == len(ht.pins) {
		return nil
	}
	if n := len(ht.leased); n > 0 && ht.leased[n-1].upTo == ht.pins[i] && ht.leased[n-1].d.Reason == reason {
		return &ht.leased[n-1].d
	}
	ht.leased = append(ht.leased, leasedDrop{upTo: ht.pins[i], d: Dropped{Reason: reason}})
	return &ht.leased[len(ht.leased)-1].d
}

// leasedOf is spansOf for a record that does not decode: the samples of
// the record at key that a lease holds, by that lease, from its index.
func (ht *headTx) leasedOf(reason string, key uint64, rec []byte, h codec.Header) {
	add := func(seq uint64, samples int64) {
		if held := ht.heldBy(seq, reason); held != nil {
			held.Samples += int(samples)
		}
	}
	if !h.Segment {
		add(key, h.Samples)
		return
	}
	entries, _, err := codec.SegmentIndex(key, rec, h)
	if err != nil {
		return // remaining, which parsed it just before, would have failed
	}
	for _, e := range entries {
		add(e.Seq, e.Samples)
	}
}

// ack deletes the batches with seq <= upTo: whole records, and in a
// segment record that holds later batches too, those up to upTo, which
// the consumed mark then hides.
func (ht *headTx) ack(upTo uint64) error {
	records := ht.tx.Bucket(bucketRecords)
	cur := records.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.First() {
		seq := binary.BigEndian.Uint64(k)
		if seq > upTo {
			break
		}
		h, err := codec.ParseHeader(v)
		var entries []codec.SegmentEntry
		if err == nil && h.Segment {
			entries, _, err = codec.SegmentIndex(seq, v, h)
		}
		if err != nil {
			// Peek quarantines it when it gets there; a record the
			// agent acknowledges was read whole, so this is rare.
			break
		}
		batches, samples, _, _ := remaining(seq, v, h, ht.counts.consumed)
		if !h.Segment || entries[len(entries)-1].Seq <= upTo {
			if err := ht.deleteHead(cur, seq, h, int64(len(v)), batches, samples); err != nil {
				return err
			}
			continue
		}
		for _, e := range entries {
			if e.Seq > ht.counts.consumed && e.Seq <= upTo {
				ht.counts.batches--
				ht.counts.samples -= e.Samples
			}
		}
		break
	}
	// The mark never passes the last seq the file knows of: a restart
	// takes the next seq from the file, and a batch must never get one
	// the mark hides.
	meta := ht.tx.Bucket(bucketMeta)
	if v := meta.Get(keyNextSeq); len(v) == 8 {
		upTo = min(upTo, binary.BigEndian.Uint64(v)-1)
	}
	if upTo <= ht.counts.consumed {
		return nil
	}
	ht.counts.consumed = upTo
	return meta.Put(keyConsumed, seqKey(upTo))
}

// deleteHead deletes the record seq under cur, the first, which still
// held batches and samples, and keeps the tail and small-segment runs
// right.
func (ht *headTx) deleteHead(cur *bolt.Cursor, seq uint64, h codec.Header, size, batches, samples int64) error {
	if err := cur.Delete(); err != nil {
		return err
	}
	c := &ht.counts
	c.batches -= batches
	c.samples -= samples
	c.bytes -= size
	next, _ := cur.First()
	if !h.Segment {
		// With segment records present, batch records follow them all:
		// a batch record at the head is the tail's first.
		c.tailBatches--
		c.tailSamples -= h.Samples
		if next != nil {
			c.tailSeq = binary.BigEndian.Uint64(next)
		}
		return nil
	}
	if err := forgetLevel(ht.tx, seq); err != nil {
		return err
	}
	if c.smallSegs > 0 && seq == c.smallSeq {
		c.smallSegs--
		if next != nil {
			c.smallSeq = binary.BigEndian.Uint64(next)
		}
	}
	return nil
}

// quarantineHead moves the head record, whose header or table does not
// parse, to quarantine and recounts.
func (ht *headTx) quarantineHead(k, v []byte) error {
	if err := ht.tx.Bucket(bucketQuarantine).Put(bytes.Clone(k), bytes.Clone(v)); err != nil {
		return err
	}
	if err := ht.tx.Bucket(bucketRecords).Delete(bytes.Clone(k)); err != nil {
		return err
	}
	ht.quarantined++
	// What it once added to the counts is unknown: recount.
	return ht.recount()
}

// recount recounts the FIFO from the file, keeping the parked area's
// counts, which only its own writes change.
func (ht *headTx) recount() error {
	p := ht.counts.parked
	var err error
	ht.counts, err = scanCounts(ht.tx, ht.smallBelow)
	ht.counts.parked = p
	return err
}

// end brings the head fields up to date before the transaction commits.
func (ht *headTx) end() error {
	c := &ht.counts
	cur := ht.tx.Bucket(bucketRecords).Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		h, err := codec.ParseHeader(v)
		if err != nil {
			continue // counted as nothing; Peek quarantines it
		}
		n, _, first, err := remaining(binary.BigEndian.Uint64(k), v, h, c.consumed)
		if err != nil || n == 0 {
			continue
		}
		c.headSeq, c.headMinT, c.headMaxT = first, h.MinT, h.MaxT
		return nil
	}
	c.headSeq, c.headMinT, c.headMaxT = 0, 0, 0
	return nil
}

// dropIfAny returns the drops that counted something.
func dropIfAny(ds ...Dropped) []Dropped {
	var out []Dropped
	for _, d := range ds {
		if d.Batches == 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Reason == d.Reason && out[n-1].Parked == d.Parked {
			out[n-1].Samples += d.Samples
			out[n-1].Batches += d.Batches
			out[n-1].Spans = append(out[n-1].Spans, d.Spans...) // each its own range
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

// quarantine moves the given records out of the FIFO in one transaction.
// Their headers are not trusted, so the counts are rebuilt by a rescan,
// which is rare enough to afford.
func (s *Store) quarantine(seqs []uint64) error {
	ht := s.headTx()
	err := s.update(func(tx *bolt.Tx) error {
		ht.begin(tx)
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
		return ht.recount()
	})
	if err != nil {
		return err
	}
	s.commit(ht)
	return nil
}

// scanCounts recomputes storeCounts from the records' headers and the
// consumed mark, all but the parked area's (scanParked; headTx.recount
// keeps it). A record whose header or table does not parse counts as
// nothing; Peek quarantines it when it gets there.
func scanCounts(tx *bolt.Tx, smallBelow int64) (storeCounts, error) {
	var c storeCounts
	if v := tx.Bucket(bucketMeta).Get(keyConsumed); len(v) == 8 {
		c.consumed = binary.BigEndian.Uint64(v)
	}
	err := tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
		h, err := codec.ParseHeader(v)
		if err == nil {
			_ = c.add(binary.BigEndian.Uint64(k), v, h, smallBelow)
		}
		return nil
	})
	return c, err
}

// update runs fn in one write transaction, mapping a full disk to
// ErrNoSpace and a bbolt panic to an error; mu must be held.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	err := protect(func() error { return s.db.Update(fn) })
	switch {
	case err == nil:
		s.commits++
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

func (s *Store) errClosed() error { return fmt.Errorf("buffer store %s: closed", s.path) }

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

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
