package buffer

import (
	"github.com/redwire/redwire/internal/codec"
)

// What is left of a record: a batch record holds one batch, a segment
// record many (internal/codec, segrecord.go). The batches of a partly
// acknowledged segment stay in its record; the meta key "consumed" says
// which are gone, and these functions leave them out.

// remaining is what is left of the record under key once the batches
// with seq <= consumed are gone: its batches, samples, and first
// sequence number (0 if nothing is left).
func remaining(key uint64, rec []byte, h codec.Header, consumed uint64) (batches, samples int64, first uint64, err error) {
	if !h.Segment {
		if key <= consumed {
			return 0, 0, 0, nil
		}
		return 1, h.Samples, key, nil
	}
	entries, _, err := codec.SegmentIndex(key, rec, h)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, e := range entries {
		if e.Seq <= consumed {
			continue
		}
		if first == 0 {
			first = e.Seq
		}
		batches++
		samples += e.Samples
	}
	return batches, samples, first, nil
}

// decodeSegmentRecord verifies a segment record's checksum and decodes
// its batches as Records, checking them against the table and header.
func decodeSegmentRecord(key uint64, rec []byte) ([]Record, error) {
	entries, batches, err := codec.DecodeSegmentRecord(key, rec)
	if err != nil {
		return nil, err
	}
	recs := make([]Record, len(batches))
	for i, b := range batches {
		recs[i] = Record{Seq: entries[i].Seq, Batch: b}
	}
	return recs, nil
}

// decodeRecords decodes the record under key, a batch or a segment
// record, as the Records still in it once those with seq <= consumed are
// gone.
func decodeRecords(dec *codec.BatchDecoder, key uint64, rec []byte, consumed uint64) ([]Record, error) {
	h, err := codec.ParseHeader(rec)
	if err != nil {
		return nil, err
	}
	if !h.Segment {
		if key <= consumed {
			return nil, nil
		}
		b, err := codec.DecodeRecord(dec, rec)
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
