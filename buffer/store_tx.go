package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

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
