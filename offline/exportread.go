package offline

// Reading export files: every frame is checked against its checksum, and
// a bad one is reported with its offset rather than returned as data.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"

	"github.com/redwire/redwire/internal/codec"
	"github.com/redwire/redwire/sample"
)

// ExportFile reads an export file. Every read checks a checksum; nothing
// is trusted before it has been checked.
type ExportFile struct {
	Header    ExportHeader
	r         io.ReaderAt
	size      int64
	dataStart int64
	dec       codec.BatchDecoder
	buf       []byte
}

// ErrNotExport is returned by OpenExport for a file that is not an export
// file or whose header is damaged.
var ErrNotExport = errors.New("not a redwire export file")

// OpenExport reads and checks the header of the export file r of size
// bytes.
func OpenExport(r io.ReaderAt, size int64) (*ExportFile, error) {
	var fixed [exportFixedHeader]byte
	if _, err := r.ReadAt(fixed[:], 0); err != nil {
		return nil, fmt.Errorf("%w: %d bytes", ErrNotExport, size)
	}
	le := binary.LittleEndian
	if string(fixed[:8]) != ExportMagic {
		return nil, fmt.Errorf("%w: magic %q", ErrNotExport, fixed[:8])
	}
	if v := le.Uint16(fixed[8:]); v != ExportVersion {
		return nil, fmt.Errorf("export file version %d; this build reads %d", v, ExportVersion)
	}
	n := int64(le.Uint32(fixed[12:]))
	if n > maxExportMeta || exportFixedHeader+n+4 > size {
		return nil, fmt.Errorf("%w: header of %d bytes in a file of %d", ErrNotExport, n, size)
	}
	b := make([]byte, exportFixedHeader+n+4)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, err
	}
	if crc32.Checksum(b[:len(b)-4], castagnoli) != le.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("%w: header checksum mismatch", ErrNotExport)
	}
	f := &ExportFile{r: r, size: size, dataStart: int64(len(b))}
	if err := json.Unmarshal(b[exportFixedHeader:len(b)-4], &f.Header); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrNotExport, err)
	}
	f.Header.Version = ExportVersion
	return f, nil
}

// Start is the offset of the first frame.
func (f *ExportFile) Start() int64 { return f.dataStart }

// Size is the file's size.
func (f *ExportFile) Size() int64 { return f.size }

// ExportRecord is one batch read from an export file.
type ExportRecord struct {
	Offset, End int64 // the frame's bytes; End is the next frame's offset
	Endpoint    string
	Seq         uint64
	Batch       sample.Batch
}

// CorruptFrame is a damaged part of an export file.
type CorruptFrame struct {
	Offset int64 // where the damage was found
	Skip   int64 // bytes skipped to the next good frame
	Err    error
}

func (c CorruptFrame) Error() string { return fmt.Sprintf("offset %d: %v", c.Offset, c.Err) }

// Records calls fn for each record from offset start (Start() or a
// record's End) in file order, and onCorrupt for each damaged stretch,
// after which it resumes at the next frame whose checksum holds. With a
// nil onCorrupt the first damage ends it with a *CorruptFrame error. It
// returns the trailer, nil if the file ended without one (truncated).
func (f *ExportFile) Records(start int64, fn func(ExportRecord) error, onCorrupt func(CorruptFrame) error) (*ExportTrailer, error) {
	if start < f.dataStart || start > f.size {
		return nil, fmt.Errorf("offset %d outside the frames [%d, %d]", start, f.dataStart, f.size)
	}
	var recs, samples int64
	for off := start; off < f.size; {
		typ, body, end, err := f.frameAt(off)
		if err == nil {
			switch typ {
			case frameRecord:
				var rec ExportRecord
				if rec, err = f.record(off, end, body); err == nil {
					if err := fn(rec); err != nil {
						return nil, err
					}
					recs++
					samples += int64(len(rec.Batch.Samples))
					off = end
					continue
				}
			case frameTrailer:
				var t ExportTrailer
				if t, err = f.trailer(off, end, body); err == nil {
					if start == f.dataStart && (t.Records != recs || t.Samples != samples) {
						err = fmt.Errorf("trailer counts %d records / %d samples, file has %d / %d", t.Records, t.Samples, recs, samples)
					} else {
						return &t, nil
					}
				}
			default:
				err = fmt.Errorf("unknown frame type %#x", typ)
			}
		}
		cf := CorruptFrame{Offset: off, Err: err}
		next := f.resync(off + 1)
		cf.Skip = next - off
		if onCorrupt == nil {
			return nil, &cf
		}
		if err := onCorrupt(cf); err != nil {
			return nil, err
		}
		off = next
	}
	return nil, nil
}

// frameAt reads and checks the frame at off.
func (f *ExportFile) frameAt(off int64) (typ byte, body []byte, end int64, err error) {
	var h [frameHead]byte
	if off+frameOverhead > f.size {
		return 0, nil, 0, fmt.Errorf("%d bytes left, too few for a frame: truncated", f.size-off)
	}
	if _, err := f.r.ReadAt(h[:], off); err != nil {
		return 0, nil, 0, err
	}
	n := int64(binary.LittleEndian.Uint32(h[1:]))
	if n > maxFrameBody || off+frameOverhead+n > f.size {
		return 0, nil, 0, fmt.Errorf("frame length %d runs past the end of the file (%d bytes)", n, f.size)
	}
	if int64(cap(f.buf)) < frameOverhead+n {
		f.buf = make([]byte, frameOverhead+n)
	}
	b := f.buf[:frameOverhead+n]
	if _, err := f.r.ReadAt(b, off); err != nil {
		return 0, nil, 0, err
	}
	if got, want := crc32.Checksum(b[:frameHead+n], castagnoli), binary.LittleEndian.Uint32(b[frameHead+n:]); got != want {
		return 0, nil, 0, fmt.Errorf("frame checksum %08x, want %08x", got, want)
	}
	return h[0], b[frameHead : frameHead+n], off + frameOverhead + n, nil
}

// record decodes a record frame's body.
func (f *ExportFile) record(off, end int64, body []byte) (ExportRecord, error) {
	if len(body) < recordPrefix+codec.HeaderSize {
		return ExportRecord{}, fmt.Errorf("record frame of %d bytes", len(body))
	}
	idx := binary.LittleEndian.Uint32(body)
	if uint64(idx) >= uint64(len(f.Header.Endpoints)) {
		return ExportRecord{}, fmt.Errorf("record of endpoint %d; the header names %d", idx, len(f.Header.Endpoints))
	}
	b, err := codec.DecodeRecord(&f.dec, body[recordPrefix:])
	if err != nil {
		return ExportRecord{}, err
	}
	return ExportRecord{Offset: off, End: end, Endpoint: f.Header.Endpoints[idx],
		Seq: binary.LittleEndian.Uint64(body[4:]), Batch: b}, nil
}

// trailer decodes the trailer frame and checks the whole-file checksum.
func (f *ExportFile) trailer(off, end int64, body []byte) (ExportTrailer, error) {
	le := binary.LittleEndian
	if len(body) != trailerBody {
		return ExportTrailer{}, fmt.Errorf("trailer of %d bytes, want %d", len(body), trailerBody)
	}
	t := ExportTrailer{Records: int64(le.Uint64(body)), Samples: int64(le.Uint64(body[8:])),
		MinT: int64(le.Uint64(body[16:])), MaxT: int64(le.Uint64(body[24:])),
		Offset: int64(le.Uint64(body[32:])), CRC: le.Uint32(body[40:])}
	switch {
	case t.Offset != off:
		return t, fmt.Errorf("trailer says it starts at %d", t.Offset)
	case end != f.size:
		return t, fmt.Errorf("%d bytes after the trailer", f.size-end)
	}
	h := crc32.New(castagnoli)
	if _, err := io.Copy(h, io.NewSectionReader(f.r, 0, off)); err != nil {
		return t, err
	}
	if h.Sum32() != t.CRC {
		return t, fmt.Errorf("whole-file checksum %08x, trailer says %08x", h.Sum32(), t.CRC)
	}
	return t, nil
}

// resync finds the next offset at or after from where a frame's checksum
// holds, or the end of the file.
func (f *ExportFile) resync(from int64) int64 {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for base := from; base < f.size; base += chunk {
		n, _ := f.r.ReadAt(buf[:min(chunk, f.size-base)], base)
		for i := 0; i < n; i++ {
			if c := buf[i]; c != frameRecord && c != frameTrailer {
				continue
			}
			if _, _, _, err := f.frameAt(base + int64(i)); err == nil {
				return base + int64(i)
			}
		}
	}
	return f.size
}

// ExportCheck is the result of Verify.
type ExportCheck struct {
	Records, Samples int64
	MinT, MaxT       int64          // of the readable records; 0 if none
	Trailer          *ExportTrailer // nil: the file has no good trailer
	Corrupt          []CorruptFrame
}

// OK reports a file whose every byte checked out.
func (c ExportCheck) OK() bool { return len(c.Corrupt) == 0 && c.Trailer != nil }

// Verify reads the whole file, checking every checksum, and lists the
// damage it finds with its offsets.
func (f *ExportFile) Verify() (ExportCheck, error) {
	var c ExportCheck
	t, err := f.Records(f.dataStart, func(r ExportRecord) error {
		h := codec.HeaderOf(&r.Batch)
		if c.Records == 0 || h.MinT < c.MinT {
			c.MinT = h.MinT
		}
		if c.Records == 0 || h.MaxT > c.MaxT {
			c.MaxT = h.MaxT
		}
		c.Records++
		c.Samples += h.Samples
		return nil
	}, func(cf CorruptFrame) error { c.Corrupt = append(c.Corrupt, cf); return nil })
	c.Trailer = t
	if err == nil && t == nil && len(c.Corrupt) == 0 {
		c.Corrupt = append(c.Corrupt, CorruptFrame{Offset: f.size, Err: errors.New("no trailer: truncated")})
	}
	return c, err
}

// ReadExportFile opens path and checks its header. Close the returned
// file when done.
func ReadExportFile(path string) (*ExportFile, *os.File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := fh.Stat()
	if err == nil && fi.Size() > math.MaxInt64/2 {
		err = errors.New("too large")
	}
	if err != nil {
		fh.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	f, err := OpenExport(fh, fi.Size())
	if err != nil {
		fh.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, fh, nil
}
