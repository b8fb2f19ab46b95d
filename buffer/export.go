package buffer

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/redwire/redwire/sample"
)

// The export file format; docs/buffer-export-format.md is its
// specification, and a change here needs a new ExportVersion there.
//
//	header:  magic "RWEXPORT", u16 version, u16 reserved (0), u32 n,
//	         n bytes of JSON (ExportHeader), u32 crc32c of all of the above
//	frames:  u8 type, u32 body length, body, u32 crc32c(type, length, body)
//	  'R' record:  u32 endpoint index, u64 sequence number, stored record
//	  'T' trailer: u64 records, u64 samples, i64 minT, i64 maxT,
//	               u64 trailer offset, u32 crc32c of bytes [0, offset), u32 0
//
// All integers are little-endian. The trailer is the last frame.
const (
	ExportMagic   = "RWEXPORT"
	ExportVersion = 1

	frameRecord  = 'R'
	frameTrailer = 'T'

	exportFixedHeader = 16
	maxExportMeta     = 1 << 20
	frameHead         = 5
	frameOverhead     = frameHead + 4
	recordPrefix      = 4 + 8
	trailerBody       = 48
	// TrailerFrameSize is the size of the trailer frame, the file's end.
	TrailerFrameSize = frameOverhead + trailerBody
	// maxFrameBody bounds a frame so a corrupt length cannot ask for more;
	// a stored record's payload is bounded by maxDecodedBatch.
	maxFrameBody = recordPrefix + recordHeaderSize + maxDecodedBatch
)

// ExportHeader is the self-description at the start of an export file.
type ExportHeader struct {
	Version        int       `json:"-"`
	Created        time.Time `json:"created"`
	RedwireVersion string    `json:"redwire_version,omitempty"`
	Host           string    `json:"host,omitempty"`
	Source         string    `json:"source,omitempty"` // the buffer directory
	// Endpoints are the buffer files exported, indexed by each record.
	Endpoints []string `json:"endpoints"`
	// FromMs and ToMs are the time filter (0: unbounded).
	FromMs int64 `json:"from_ms,omitempty"`
	ToMs   int64 `json:"to_ms,omitempty"`
	Codec  int   `json:"codec"` // the stored record encoding, codecVersion
}

// ExportTrailer closes an export file.
type ExportTrailer struct {
	Records, Samples int64
	MinT, MaxT       int64
	Offset           int64  // where the trailer frame starts
	CRC              uint32 // crc32c of every byte before Offset
}

// exportWriter writes an export file's frames, keeping the whole-file
// checksum and the trailer's counts as it goes.
type exportWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	off int64
	t   ExportTrailer
	buf []byte
}

func newExportWriter(w io.Writer, h ExportHeader) (*exportWriter, error) {
	meta, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	ew := &exportWriter{w: bufio.NewWriterSize(w, 1<<20), crc: crc32.New(castagnoli)}
	b := append([]byte(ExportMagic), 0, 0, 0, 0)
	binary.LittleEndian.PutUint16(b[8:], ExportVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(meta)))
	b = append(b, meta...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return ew, ew.write(b)
}

func (ew *exportWriter) write(b []byte) error {
	ew.crc.Write(b)
	ew.off += int64(len(b))
	_, err := ew.w.Write(b)
	return err
}

func (ew *exportWriter) frame(typ byte, body []byte) error {
	f := append(ew.buf[:0], typ, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(f[1:], uint32(len(body)))
	f = append(f, body...)
	f = binary.LittleEndian.AppendUint32(f, crc32.Checksum(f, castagnoli))
	ew.buf = f
	return ew.write(f)
}

// record writes one stored record as it is in the store; h is its parsed
// header.
func (ew *exportWriter) record(endpoint uint32, seq uint64, rec []byte, h recordHeader) error {
	body := binary.LittleEndian.AppendUint32(make([]byte, 0, recordPrefix+len(rec)), endpoint)
	body = binary.LittleEndian.AppendUint64(body, seq)
	body = append(body, rec...)
	t := &ew.t
	if t.Records == 0 || h.minT < t.MinT {
		t.MinT = h.minT
	}
	if t.Records == 0 || h.maxT > t.MaxT {
		t.MaxT = h.maxT
	}
	t.Records++
	t.Samples += h.samples
	return ew.frame(frameRecord, body)
}

// finish writes the trailer and flushes.
func (ew *exportWriter) finish() (ExportTrailer, error) {
	t := ew.t
	t.Offset, t.CRC = ew.off, ew.crc.Sum32()
	le := binary.LittleEndian
	b := le.AppendUint64(nil, uint64(t.Records))
	b = le.AppendUint64(b, uint64(t.Samples))
	b = le.AppendUint64(b, uint64(t.MinT))
	b = le.AppendUint64(b, uint64(t.MaxT))
	b = le.AppendUint64(b, uint64(t.Offset))
	b = le.AppendUint32(b, t.CRC)
	b = le.AppendUint32(b, 0)
	if err := ew.frame(frameTrailer, b); err != nil {
		return t, err
	}
	return t, ew.w.Flush()
}

// ExportOptions shape Export.
type ExportOptions struct {
	// FromMs and ToMs select the batches holding at least one sample in
	// [FromMs, ToMs); 0 leaves that side unbounded. A selected batch is
	// exported (and deleted) whole: a batch is never split.
	FromMs, ToMs int64
	// Delete removes the exported batches from their stores once the
	// export file and its directory are fsynced. It needs the stores'
	// exclusive lock, so it fails with ErrLocked while an agent runs.
	Delete bool
	// Source and RedwireVersion go into the header.
	Source, RedwireVersion string
	Read                   ReadOptions
	Now                    func() time.Time // default time.Now
}

// EndpointExport is what Export took from one buffer file.
type EndpointExport struct {
	Name, Path string
	Mode       string // ReadLocked, ReadSnapshot; "exclusive" with Delete
	Records    int64
	Samples    int64
	Corrupt    int64 // records left in the store: bad checksum or undecodable
	Deleted    int64 // records removed from the store
}

// ExportResult describes a written export file.
type ExportResult struct {
	Path      string
	Endpoints []EndpointExport
	Trailer   ExportTrailer
}

// Export writes the batches of the given buffer files to a new export
// file at out (mode 0600; an existing file is never overwritten). The
// file appears under its name only once complete and fsynced. Stores are
// read in read transactions; with opts.Delete, each is held open with
// its exclusive lock from the read to the deletion, so nothing exported
// can change in between.
func Export(ctx context.Context, out string, files []StoreFile, opts ExportOptions) (res ExportResult, err error) {
	res.Path = out
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if _, err := os.Lstat(out); err == nil {
		return res, fmt.Errorf("export file %s already exists; not overwriting it", out)
	}
	host, _ := os.Hostname()
	h := ExportHeader{Created: opts.Now().UTC(), RedwireVersion: opts.RedwireVersion, Host: host,
		Source: opts.Source, FromMs: opts.FromMs, ToMs: opts.ToMs, Codec: codecVersion}
	for _, f := range files {
		h.Endpoints = append(h.Endpoints, f.Name)
	}
	dir := filepath.Dir(out)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return res, fmt.Errorf("export file: %w", err)
	}
	var stores []*Store
	defer func() {
		for _, s := range stores {
			_ = s.Close()
		}
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return res, fmt.Errorf("export file: %w", err)
	}
	ew, err := newExportWriter(tmp, h)
	if err != nil {
		return res, fmt.Errorf("export file: %w", err)
	}
	seqs := make([][]uint64, len(files))
	for i, f := range files {
		ex := EndpointExport{Name: f.Name, Path: f.Path}
		each := func(tx *bolt.Tx) error {
			var err error
			seqs[i], err = exportRecords(ctx, tx, ew, uint32(i), opts, &ex)
			return err
		}
		if opts.Delete {
			var s *Store
			s, err = openForDelete(f.Path, opts.Read)
			if err == nil {
				stores = append(stores, s)
				ex.Mode = "exclusive"
				err = protect(func() error { return s.db.View(each) })
			}
		} else {
			ex.Mode, err = viewStore(f.Path, opts.Read, each)
		}
		if err != nil {
			return res, fmt.Errorf("exporting %s: %w", f.Path, err)
		}
		res.Endpoints = append(res.Endpoints, ex)
	}
	if res.Trailer, err = ew.finish(); err != nil {
		return res, fmt.Errorf("export file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return res, fmt.Errorf("export file: fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return res, fmt.Errorf("export file: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return res, fmt.Errorf("export file: %w", err)
	}
	if err := syncDirStrict(dir); err != nil {
		// The file exists but may not survive a crash: keep the batches.
		return res, fmt.Errorf("export file %s written, but fsync of %s failed, so nothing was deleted: %w", out, dir, err)
	}
	for i, s := range stores {
		if err := s.deleteSeqs(seqs[i]); err != nil {
			return res, fmt.Errorf("export file %s is complete, but deleting the exported batches from %s failed (they are still there): %w",
				out, files[i].Path, err)
		}
		res.Endpoints[i].Deleted = int64(len(seqs[i]))
	}
	return res, nil
}

// exportRecords writes the selected, readable records of one store.
func exportRecords(ctx context.Context, tx *bolt.Tx, ew *exportWriter, idx uint32, opts ExportOptions, ex *EndpointExport) ([]uint64, error) {
	records := tx.Bucket(bucketRecords)
	if records == nil {
		return nil, nil
	}
	var (
		dec  batchDecoder
		seqs []uint64
	)
	c := records.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := parseHeader(v)
		if err == nil {
			// Decoded only to prove the record whole: a record that
			// would not replay is left for the agent to quarantine.
			_, err = decodeRecord(&dec, v)
		}
		if err != nil || len(k) != 8 {
			ex.Corrupt++
			continue
		}
		if (opts.FromMs != 0 && h.maxT < opts.FromMs) || (opts.ToMs != 0 && h.minT >= opts.ToMs) {
			continue
		}
		seq := binary.BigEndian.Uint64(k)
		if err := ew.record(idx, seq, v, h); err != nil {
			return nil, fmt.Errorf("export file: %w", err)
		}
		seqs = append(seqs, seq)
		ex.Records++
		ex.Samples += h.samples
	}
	return seqs, nil
}

// openForDelete opens a store for writing without the side effects of
// OpenStore on a file it cannot read: a corrupt file is reported, never
// moved aside, and a missing one is not created.
func openForDelete(path string, ro ReadOptions) (*Store, error) {
	mode, err := viewStore(path, ro, func(*bolt.Tx) error { return nil })
	if err == nil && mode != ReadLocked {
		err = fmt.Errorf("%w: an agent runs on %s; stop it before exporting with delete", ErrLocked, path)
	}
	if err != nil {
		return nil, err
	}
	s, info, err := OpenStore(path, StoreOptions{LockTimeout: ro.LockTimeout, MinFreeBytes: -1})
	if err != nil {
		return nil, err
	}
	if info.MovedAside != "" {
		_ = s.Close()
		return nil, fmt.Errorf("%s turned corrupt while opening; moved aside to %s: %v", path, info.MovedAside, info.Err)
	}
	return s, nil
}

// deleteSeqs removes the given records in one write transaction.
func (s *Store) deleteSeqs(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return s.errClosed()
	}
	ht := s.headTx()
	err := s.update(func(tx *bolt.Tx) error {
		records := tx.Bucket(bucketRecords)
		for _, seq := range seqs {
			if err := records.Delete(seqKey(seq)); err != nil {
				return err
			}
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

// syncDirStrict is syncDir reporting failure, for when deleting data
// depends on it.
func syncDirStrict(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ExportFile reads an export file. Every read checks a checksum; nothing
// is trusted before it has been checked.
type ExportFile struct {
	Header    ExportHeader
	r         io.ReaderAt
	size      int64
	dataStart int64
	dec       batchDecoder
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
	if len(body) < recordPrefix+recordHeaderSize {
		return ExportRecord{}, fmt.Errorf("record frame of %d bytes", len(body))
	}
	idx := binary.LittleEndian.Uint32(body)
	if uint64(idx) >= uint64(len(f.Header.Endpoints)) {
		return ExportRecord{}, fmt.Errorf("record of endpoint %d; the header names %d", idx, len(f.Header.Endpoints))
	}
	b, err := decodeRecord(&f.dec, body[recordPrefix:])
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
		h := headerOf(&r.Batch)
		if c.Records == 0 || h.minT < c.MinT {
			c.MinT = h.minT
		}
		if c.Records == 0 || h.maxT > c.MaxT {
			c.MaxT = h.maxT
		}
		c.Records++
		c.Samples += h.samples
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
