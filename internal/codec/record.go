package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/redwire/redwire/sample"
)

// A stored record is a fixed header followed by the batch encoding:
//
//	[0:4]   crc32c (Castagnoli) of bytes [4:]
//	[4:8]   number of samples, uint32
//	[8:16]  smallest sample timestamp (ms), int64
//	[16:24] largest sample timestamp (ms), int64
//	[24:]   encodeBatch output
//
// all little-endian. The header lets the store count samples and apply
// max_age from the first bytes of a record, without reading or decoding
// the payload; the checksum covers header and payload alike. Export files
// carry batch records exactly so (docs/buffer-export-format.md).
const HeaderSize = 24

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the decoded fixed header of a stored record.
type Header struct {
	Samples    int64
	MinT, MaxT int64
	Segment    bool // a segment record (segrecord.go), not a batch record
}

// AppendRecord appends the record for b, whose header is h, to dst.
func AppendRecord(dst []byte, enc *BatchEncoder, b *sample.Batch, h Header) []byte {
	start := len(dst)
	dst = growLen(dst, HeaderSize)
	dst = enc.encode(dst, b)
	rec := dst[start:]
	binary.LittleEndian.PutUint32(rec[4:], uint32(h.Samples))
	binary.LittleEndian.PutUint64(rec[8:], uint64(h.MinT))
	binary.LittleEndian.PutUint64(rec[16:], uint64(h.MaxT))
	binary.LittleEndian.PutUint32(rec[0:], crc32.Checksum(rec[4:], castagnoli))
	return dst
}

// HeaderOf summarises b for its record header.
func HeaderOf(b *sample.Batch) Header {
	h := Header{Samples: int64(len(b.Samples))}
	for i, s := range b.Samples {
		if i == 0 || s.T < h.MinT {
			h.MinT = s.T
		}
		if i == 0 || s.T > h.MaxT {
			h.MaxT = s.T
		}
	}
	return h
}

// ParseHeader reads a record's header without touching its payload. It
// checks only what the header alone can tell: a record the store wrote
// holds at least one sample and minT <= maxT.
func ParseHeader(rec []byte) (Header, error) {
	if len(rec) < HeaderSize {
		return Header{}, fmt.Errorf("record of %d bytes is shorter than its %d-byte header", len(rec), HeaderSize)
	}
	n := binary.LittleEndian.Uint32(rec[4:])
	h := Header{
		Samples: int64(n &^ SegmentFlag),
		MinT:    int64(binary.LittleEndian.Uint64(rec[8:])),
		MaxT:    int64(binary.LittleEndian.Uint64(rec[16:])),
		Segment: n&SegmentFlag != 0,
	}
	if h.Samples == 0 {
		return h, errors.New("record header claims 0 samples")
	}
	if h.MinT > h.MaxT {
		return h, fmt.Errorf("record header has min time %d after max time %d", h.MinT, h.MaxT)
	}
	return h, nil
}

// DecodeRecord verifies a batch record's checksum and decodes its batch,
// checking that the batch matches its header. A segment record yields
// ErrSegmentRecord.
func DecodeRecord(dec *BatchDecoder, rec []byte) (sample.Batch, error) {
	h, err := ParseHeader(rec)
	if err != nil {
		return sample.Batch{}, err
	}
	if h.Segment {
		return sample.Batch{}, ErrSegmentRecord
	}
	if want, got := binary.LittleEndian.Uint32(rec), crc32.Checksum(rec[4:], castagnoli); want != got {
		return sample.Batch{}, fmt.Errorf("record checksum %08x, want %08x", got, want)
	}
	b, err := dec.decode(rec[HeaderSize:])
	if err != nil {
		return sample.Batch{}, err
	}
	if got := HeaderOf(&b); got != h {
		return sample.Batch{}, fmt.Errorf("record header says %+v, batch has %+v", h, got)
	}
	return b, nil
}
