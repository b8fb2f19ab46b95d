package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/redwire/redwire/sample"
)

// A segment record holds many batches that were stored one record each
// and later sealed together (the buffer's Store.seal) in the compact
// encoding, an eighth to a tenth of the size. It has the record header of
// a batch record, with SegmentFlag set in the sample count, and keeps
// each batch's sequence number so that the store's Peek and Delete see
// the same batches, in the same order, under the same numbers as before
// the seal:
//
//	[0:24]  record header: crc32c of [4:], samples | SegmentFlag, min and max time
//	uvarint n, then n × (uvarint seq delta, uvarint samples): the batches,
//	        the first delta from the record's key (0: the key is its seq)
//	[...]   compact segment of the n batches (compact.go)
//
// The batches of a partly acknowledged segment (Delete inside it) stay in
// the record; the store's meta key "consumed" says which are gone.
const SegmentFlag = 1 << 31

// ErrSegmentRecord is what DecodeRecord says of a segment record: the
// callers that meet one must decode it with DecodeSegmentRecord.
var ErrSegmentRecord = errors.New("a segment record, not a batch record")

// SegmentEntry is one batch of a segment record.
type SegmentEntry struct {
	Seq     uint64
	Samples int64
}

// AppendSegmentRecord appends the segment record of batches, whose
// sequence numbers are seqs (increasing, seqs[0] the record's key), to
// dst; seg holds the batches already appended.
func AppendSegmentRecord(dst []byte, seg *Segment, seqs []uint64, samples []int64, minT, maxT int64) []byte {
	start := len(dst)
	dst = growLen(dst, HeaderSize)
	dst = binary.AppendUvarint(dst, uint64(len(seqs)))
	var total int64
	for i, seq := range seqs {
		prev := seqs[0]
		if i > 0 {
			prev = seqs[i-1]
		}
		dst = binary.AppendUvarint(dst, seq-prev)
		dst = binary.AppendUvarint(dst, uint64(samples[i]))
		total += samples[i]
	}
	dst = seg.Encode(dst)
	rec := dst[start:]
	binary.LittleEndian.PutUint32(rec[4:], uint32(total)|SegmentFlag)
	binary.LittleEndian.PutUint64(rec[8:], uint64(minT))
	binary.LittleEndian.PutUint64(rec[16:], uint64(maxT))
	binary.LittleEndian.PutUint32(rec[0:], crc32.Checksum(rec[4:], castagnoli))
	return dst
}

// SegmentIndex reads the batch table of the segment record rec stored
// under key, without verifying the checksum or touching the segment:
// what counting needs. It returns the table and where the segment starts.
func SegmentIndex(key uint64, rec []byte, h Header) ([]SegmentEntry, int, error) {
	pos := HeaderSize
	next := func(what string) (uint64, error) {
		v, n := binary.Uvarint(rec[pos:])
		if n <= 0 {
			return 0, fmt.Errorf("segment record %d: bad %s at byte %d", key, what, pos)
		}
		pos += n
		return v, nil
	}
	n, err := next("batch count")
	if err != nil {
		return nil, 0, err
	}
	// Each entry takes at least 2 bytes: a count beyond that is a lie.
	if n == 0 || n > uint64(len(rec)-pos)/2 {
		return nil, 0, fmt.Errorf("segment record %d: %d batches in %d bytes", key, n, len(rec))
	}
	entries := make([]SegmentEntry, n)
	seq, total := key, int64(0)
	for i := range entries {
		d, err := next("sequence delta")
		if err != nil {
			return nil, 0, err
		}
		if (i == 0) != (d == 0) || seq+d < seq {
			return nil, 0, fmt.Errorf("segment record %d: batch %d has sequence delta %d", key, i, d)
		}
		seq += d
		ns, err := next("sample count")
		if err != nil {
			return nil, 0, err
		}
		if ns == 0 || ns > uint64(h.Samples) {
			return nil, 0, fmt.Errorf("segment record %d: batch %d claims %d samples", key, i, ns)
		}
		entries[i] = SegmentEntry{Seq: seq, Samples: int64(ns)}
		total += int64(ns)
	}
	if total != h.Samples {
		return nil, 0, fmt.Errorf("segment record %d: batches hold %d samples, header says %d", key, total, h.Samples)
	}
	return entries, pos, nil
}

// DecodeSegmentRecord verifies a segment record's checksum and decodes
// its batches, checking them against the table and header. It returns
// the table and the batches, one for each entry.
func DecodeSegmentRecord(key uint64, rec []byte) ([]SegmentEntry, []sample.Batch, error) {
	h, err := ParseHeader(rec)
	if err != nil {
		return nil, nil, err
	}
	if !h.Segment {
		return nil, nil, fmt.Errorf("record %d is not a segment", key)
	}
	if want, got := binary.LittleEndian.Uint32(rec), crc32.Checksum(rec[4:], castagnoli); want != got {
		return nil, nil, fmt.Errorf("segment record %d: checksum %08x, want %08x", key, got, want)
	}
	entries, pos, err := SegmentIndex(key, rec, h)
	if err != nil {
		return nil, nil, err
	}
	batches, err := DecodeSegment(rec[pos:])
	if err != nil {
		return nil, nil, fmt.Errorf("segment record %d: %w", key, err)
	}
	if len(batches) != len(entries) {
		return nil, nil, fmt.Errorf("segment record %d: %d batches, table says %d", key, len(batches), len(entries))
	}
	var minT, maxT int64
	for i, b := range batches {
		bh := HeaderOf(&b)
		if bh.Samples != entries[i].Samples {
			return nil, nil, fmt.Errorf("segment record %d: batch %d has %d samples, table says %d", key, i, bh.Samples, entries[i].Samples)
		}
		if i == 0 || bh.MinT < minT {
			minT = bh.MinT
		}
		if i == 0 || bh.MaxT > maxT {
			maxT = bh.MaxT
		}
	}
	if minT != h.MinT || maxT != h.MaxT {
		return nil, nil, fmt.Errorf("segment record %d: batches span %d..%d, header says %d..%d", key, minT, maxT, h.MinT, h.MaxT)
	}
	return entries, batches, nil
}
