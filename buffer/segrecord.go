package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A segment record holds many batches that were stored one record each
// and later sealed together (Store.seal) in the compact encoding, an
// eighth to a tenth of the size. It has the record header of a batch
// record, with segmentFlag set in the sample count, and keeps each
// batch's sequence number so that Peek and Delete see the same batches,
// in the same order, under the same numbers as before the seal:
//
//	[0:24]  record header: crc32c of [4:], samples | segmentFlag, min and max time
//	uvarint n, then n × (uvarint seq delta, uvarint samples): the batches,
//	        the first delta from the record's key (0: the key is its seq)
//	[...]   compact segment of the n batches (compact.go)
//
// The batches of a partly acknowledged segment (Delete inside it) stay in
// the record; the meta key "consumed" says which are gone.
const segmentFlag = 1 << 31

// segEntry is one batch of a segment record.
type segEntry struct {
	seq     uint64
	samples int64
}

// appendSegmentRecord appends the segment record of batches, whose
// sequence numbers are seqs (increasing, seqs[0] the record's key), to
// dst; seg holds the batches already appended.
func appendSegmentRecord(dst []byte, seg *Segment, seqs []uint64, samples []int64, minT, maxT int64) []byte {
	start := len(dst)
	dst = growLen(dst, recordHeaderSize)
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
	binary.LittleEndian.PutUint32(rec[4:], uint32(total)|segmentFlag)
	binary.LittleEndian.PutUint64(rec[8:], uint64(minT))
	binary.LittleEndian.PutUint64(rec[16:], uint64(maxT))
	binary.LittleEndian.PutUint32(rec[0:], crc32.Checksum(rec[4:], castagnoli))
	return dst
}

// segmentIndex reads the batch table of the segment record rec stored
// under key, without verifying the checksum or touching the segment:
// what counting needs. It returns the table and where the segment starts.
func segmentIndex(key uint64, rec []byte, h recordHeader) ([]segEntry, int, error) {
	pos := recordHeaderSize
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
	entries := make([]segEntry, n)
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
		if ns == 0 || ns > uint64(h.samples) {
			return nil, 0, fmt.Errorf("segment record %d: batch %d claims %d samples", key, i, ns)
		}
		entries[i] = segEntry{seq: seq, samples: int64(ns)}
		total += int64(ns)
	}
	if total != h.samples {
		return nil, 0, fmt.Errorf("segment record %d: batches hold %d samples, header says %d", key, total, h.samples)
	}
	return entries, pos, nil
}

// decodeSegmentRecord verifies a segment record's checksum and decodes
// its batches as Records, checking them against the table and header.
func decodeSegmentRecord(key uint64, rec []byte) ([]Record, error) {
	h, err := parseHeader(rec)
	if err != nil {
		return nil, err
	}
	if !h.segment {
		return nil, fmt.Errorf("record %d is not a segment", key)
	}
	if want, got := binary.LittleEndian.Uint32(rec), crc32.Checksum(rec[4:], castagnoli); want != got {
		return nil, fmt.Errorf("segment record %d: checksum %08x, want %08x", key, got, want)
	}
	entries, pos, err := segmentIndex(key, rec, h)
	if err != nil {
		return nil, err
	}
	batches, err := DecodeSegment(rec[pos:])
	if err != nil {
		return nil, fmt.Errorf("segment record %d: %w", key, err)
	}
	if len(batches) != len(entries) {
		return nil, fmt.Errorf("segment record %d: %d batches, table says %d", key, len(batches), len(entries))
	}
	recs := make([]Record, len(batches))
	var minT, maxT int64
	for i, b := range batches {
		bh := headerOf(&b)
		if bh.samples != entries[i].samples {
			return nil, fmt.Errorf("segment record %d: batch %d has %d samples, table says %d", key, i, bh.samples, entries[i].samples)
		}
		if i == 0 || bh.minT < minT {
			minT = bh.minT
		}
		if i == 0 || bh.maxT > maxT {
			maxT = bh.maxT
		}
		recs[i] = Record{Seq: entries[i].seq, Batch: b}
	}
	if minT != h.minT || maxT != h.maxT {
		return nil, fmt.Errorf("segment record %d: batches span %d..%d, header says %d..%d", key, minT, maxT, h.minT, h.maxT)
	}
	return recs, nil
}

// remaining is what is left of the record under key once the batches
// with seq <= consumed are gone: its batches, samples, and first
// sequence number (0 if nothing is left).
func remaining(key uint64, rec []byte, h recordHeader, consumed uint64) (batches, samples int64, first uint64, err error) {
	if !h.segment {
		if key <= consumed {
			return 0, 0, 0, nil
		}
		return 1, h.samples, key, nil
	}
	entries, _, err := segmentIndex(key, rec, h)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, e := range entries {
		if e.seq <= consumed {
			continue
		}
		if first == 0 {
			first = e.seq
		}
		batches++
		samples += e.samples
	}
	return batches, samples, first, nil
}

// errSegmentRecord is what decodeRecord says of a segment record: the
// callers that meet one must decode it with decodeSegmentRecord.
var errSegmentRecord = errors.New("a segment record, not a batch record")

// decodeRecords decodes the record under key, a batch or a segment
// record, as the Records still in it once those with seq <= consumed are
// gone.
func decodeRecords(dec *batchDecoder, key uint64, rec []byte, consumed uint64) ([]Record, error) {
	h, err := parseHeader(rec)
	if err != nil {
		return nil, err
	}
	if !h.segment {
		if key <= consumed {
			return nil, nil
		}
		b, err := decodeRecord(dec, rec)
		if err != nil {
			return nil, err
		}
		return []Record{{Seq: key, Batch: b}}, nil
	}
	recs, err := decodeSegmentRecord(key, rec)
	if err != nil {
		return nil, err
	}
	i := 0
	for i < len(recs) && recs[i].Seq <= consumed {
		i++
	}
	return recs[i:], nil
}
