package buffer

import (
	"encoding/binary"
	"errors"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/internal/codec"
)

// errNothingToSeal ends a seal or merge transaction that found too little
// to do; nothing was written.
var errNothingToSeal = errors.New("nothing to seal")

// smallBelow is the sample count under which a segment record is small:
// sealed from the tail, not yet merged.
func (s *Store) smallBelow() int64 { return 2 * s.sealAt }

// compress seals the tail and merges small segments when they have grown
// enough; Append calls it with mu held, after its own commit. A failure
// (a full disk, a record that does not decode) leaves the file as it was,
// and a later Append tries again: the data is safe either way, only
// larger.
func (s *Store) compress() {
	if s.counts.tailSamples >= s.sealAt && s.counts.tailBatches >= 2 {
		_ = s.seal()
	}
	if s.counts.smallSegs >= s.mergeAt {
		if s.merge() == nil {
			_ = s.defragment()
		}
	}
}

// segmentBuilder gathers batches for one segment record.
type segmentBuilder struct {
	seg        codec.Segment
	seqs       []uint64
	samples    []int64
	minT, maxT int64
	keys       []uint64 // the records it replaces
}

func (b *segmentBuilder) add(r Record) error {
	if err := b.seg.Append(&r.Batch); err != nil {
		return err
	}
	h := codec.HeaderOf(&r.Batch)
	if len(b.seqs) == 0 || h.MinT < b.minT {
		b.minT = h.MinT
	}
	if len(b.seqs) == 0 || h.MaxT > b.maxT {
		b.maxT = h.MaxT
	}
	b.seqs = append(b.seqs, r.Seq)
	b.samples = append(b.samples, h.Samples)
	return nil
}

// replace writes the segment record in place of the records it was built
// from, under its first batch's seq, and recounts.
func (s *Store) replace(ht *headTx, b *segmentBuilder) error {
	records := ht.tx.Bucket(bucketRecords)
	records.FillPercent = 1
	rec := codec.AppendSegmentRecord(nil, &b.seg, b.seqs, b.samples, b.minT, b.maxT)
	for _, k := range b.keys {
		if err := records.Delete(seqKey(k)); err != nil {
			return err
		}
		if err := forgetLevel(ht.tx, k); err != nil {
			return err
		}
	}
	// Under its first batch's seq: the first of the records replaced,
	// unless thinning emptied that batch.
	if err := records.Put(seqKey(b.seqs[0]), rec); err != nil {
		return err
	}
	if err := ht.recount(); err != nil {
		return err
	}
	return ht.end()
}

// seal replaces the batch records of the tail by one segment record, in
// one transaction. It stops at a record that does not decode (Peek
// quarantines it later) and at sealMaxSamples.
func (s *Store) seal() error {
	return s.rewrite(func(tx *bolt.Tx, b *segmentBuilder) error {
		cur := tx.Bucket(bucketRecords).Cursor()
		for k, v := cur.Seek(seqKey(s.counts.tailSeq)); k != nil; k, v = cur.Next() {
			seq := binary.BigEndian.Uint64(k)
			h, err := codec.ParseHeader(v)
			if err != nil || h.Segment || int64(b.seg.Samples())+h.Samples > sealMaxSamples {
				break
			}
			batch, err := codec.DecodeRecord(&s.dec, v)
			if err != nil || seq <= s.counts.consumed {
				break
			}
			if err := b.add(Record{Seq: seq, Batch: batch}); err != nil {
				break
			}
			b.keys = append(b.keys, seq)
		}
		return nil
	})
}

// merge replaces the small segment records that end the segments by one,
// in one transaction. The head record is left alone: it may be partly
// acknowledged, and it is about to go anyway.
func (s *Store) merge() error {
	return s.rewrite(func(tx *bolt.Tx, b *segmentBuilder) error {
		cur := tx.Bucket(bucketRecords).Cursor()
		head, _ := cur.First()
		for k, v := cur.Seek(seqKey(s.counts.smallSeq)); k != nil; k, v = cur.Next() {
			seq := binary.BigEndian.Uint64(k)
			if head != nil && seq == binary.BigEndian.Uint64(head) {
				continue
			}
			if levelOf(tx, seq).Floor != 0 {
				// Thinned: its resolution is its own. The small
				// segments after it merge without it.
				if len(b.keys) == 0 {
					continue
				}
				break
			}
			h, err := codec.ParseHeader(v)
			if err != nil || !h.Segment || h.Samples >= s.smallBelow() || int64(b.seg.Samples())+h.Samples > sealMaxSamples {
				break
			}
			recs, err := decodeSegmentRecord(seq, v)
			if err != nil {
				break
			}
			for _, r := range recs {
				if err := b.add(r); err != nil {
					return err
				}
			}
			b.keys = append(b.keys, seq)
		}
		return nil
	})
}

// rewrite runs gather in one write transaction and, if it gathered two
// records or more, replaces them by the segment it built; mu is held.
func (s *Store) rewrite(gather func(tx *bolt.Tx, b *segmentBuilder) error) error {
	ht := s.headTx()
	err := s.update(func(tx *bolt.Tx) error {
		ht.begin(tx)
		var b segmentBuilder
		if err := gather(tx, &b); err != nil {
			return err
		}
		if len(b.keys) < 2 {
			return errNothingToSeal
		}
		return s.replace(ht, &b)
	})
	if err != nil {
		return err
	}
	s.commit(ht)
	return nil
}

// segmentCache keeps the last segment records Peek decoded: the agent
// peeks a segment a request at a time, and decoding it whole each time
// would cost its size squared.
type segmentCache struct {
	entries [2]cachedSegment
	next    int
}

type cachedSegment struct {
	key  uint64
	crc  uint32
	size int
	recs []Record
}

// castagnoli is the CRC table of the records' checksums, which get
// folds into its key.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// get returns the decoded batches of the segment record rec under key.
func (c *segmentCache) get(key uint64, rec []byte) ([]Record, error) {
	crc := crc32.Checksum(rec[4:min(len(rec), 64)], castagnoli) ^ binary.LittleEndian.Uint32(rec)
	for _, e := range c.entries {
		if e.recs != nil && e.key == key && e.crc == crc && e.size == len(rec) {
			return e.recs, nil
		}
	}
	recs, err := decodeSegmentRecord(key, rec)
	if err != nil {
		return nil, err
	}
	c.entries[c.next] = cachedSegment{key: key, crc: crc, size: len(rec), recs: recs}
	c.next = (c.next + 1) % len(c.entries)
	return recs, nil
}
