package offline

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/codec"
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
	// a stored record's payload is bounded by codec.MaxDecodedBatch.
	maxFrameBody = recordPrefix + codec.HeaderSize + codec.MaxDecodedBatch
)

// castagnoli is the CRC-32C table of every checksum in the format.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
	Codec  int   `json:"codec"` // the stored record encoding, codec.BatchVersion
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
func (ew *exportWriter) record(endpoint uint32, seq uint64, rec []byte, h codec.Header) error {
	body := binary.LittleEndian.AppendUint32(make([]byte, 0, recordPrefix+len(rec)), endpoint)
	body = binary.LittleEndian.AppendUint64(body, seq)
	body = append(body, rec...)
	t := &ew.t
	if t.Records == 0 || h.MinT < t.MinT {
		t.MinT = h.MinT
	}
	if t.Records == 0 || h.MaxT > t.MaxT {
		t.MaxT = h.MaxT
	}
	t.Records++
	t.Samples += h.Samples
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
	// exclusive lock, so it fails with buffer.ErrLocked while an agent
	// runs.
	Delete bool
	// Parked exports the parked area (samples the receiver refused for
	// their age) instead of the backlog: to backfill them elsewhere, or
	// to replay them into a receiver that takes them.
	Parked bool
	// Source and RedwireVersion go into the header.
	Source, RedwireVersion string
	Read                   buffer.ReadOptions
	Now                    func() time.Time // default time.Now
}

// EndpointExport is what Export took from one buffer file.
type EndpointExport struct {
	Name, Path string
	Mode       string // ReadLocked, ReadSnapshot; ReadExclusive with Delete
	Records    int64
	Samples    int64
	Corrupt    int64 // records left in the store: bad checksum or undecodable
	Deleted    int64 // batches removed from the store
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
func Export(ctx context.Context, out string, files []buffer.StoreFile, opts ExportOptions) (res ExportResult, err error) {
	res.Path = out
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if _, err := os.Lstat(out); err == nil {
		return res, fmt.Errorf("export file %s already exists; not overwriting it", out)
	}
	host, _ := os.Hostname()
	h := ExportHeader{Created: opts.Now().UTC(), RedwireVersion: opts.RedwireVersion, Host: host,
		Source: opts.Source, FromMs: opts.FromMs, ToMs: opts.ToMs, Codec: codec.BatchVersion}
	for _, f := range files {
		h.Endpoints = append(h.Endpoints, f.Name)
	}
	dir := filepath.Dir(out)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return res, fmt.Errorf("export file: %w", err)
	}
	var stores []*buffer.Store
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
	keys := make([][]uint64, len(files))
	for i, f := range files {
		ex := EndpointExport{Name: f.Name, Path: f.Path}
		sel := exportSelection{ctx: ctx, ew: ew, idx: uint32(i), opts: opts, ex: &ex}
		if opts.Delete {
			var s *buffer.Store
			s, err = openForDelete(f.Path, opts.Read)
			if err == nil {
				stores = append(stores, s)
				ex.Mode = ReadExclusive
				if opts.Parked {
					err = s.ReadParked(sel.record)
				} else {
					err = s.Read(sel.record)
				}
			}
		} else {
			var snapshot bool
			ro := opts.Read
			ro.Parked = opts.Parked
			snapshot, _, err = buffer.ReadStore(f.Path, ro, sel.record)
			ex.Mode = readMode(snapshot)
		}
		if err != nil {
			return res, fmt.Errorf("exporting %s: %w", f.Path, err)
		}
		keys[i] = sel.keys
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
		del := s.DeleteRecords
		if opts.Parked {
			del = s.DeleteParked
		}
		if err := del(keys[i]); err != nil {
			return res, fmt.Errorf("export file %s is complete, but deleting the exported batches from %s failed (they are still there): %w",
				out, files[i].Path, err)
		}
		res.Endpoints[i].Deleted = res.Endpoints[i].Records
	}
	return res, nil
}

// exportSelection writes the selected, readable records of one store
// and keeps the keys of the records it took.
type exportSelection struct {
	ctx  context.Context
	ew   *exportWriter
	idx  uint32
	opts ExportOptions
	ex   *EndpointExport
	enc  codec.BatchEncoder
	rec  []byte
	keys []uint64
}

// record is the buffer.ReadStore callback: a record that does not read
// is left for the agent to quarantine, and a segment's batches are
// written as the batch records the format holds.
func (sel *exportSelection) record(r buffer.FileRecord) error {
	if err := sel.ctx.Err(); err != nil {
		return err
	}
	if r.Err != nil {
		sel.ex.Corrupt++
		return nil
	}
	// The time filter selects whole records: a sealed segment spans
	// minutes of scrapes and goes, or stays, as one.
	if (sel.opts.FromMs != 0 && r.MaxT < sel.opts.FromMs) || (sel.opts.ToMs != 0 && r.MinT >= sel.opts.ToMs) {
		return nil
	}
	for _, b := range r.Batches {
		bh := codec.HeaderOf(&b.Batch)
		sel.rec = codec.AppendRecord(sel.rec[:0], &sel.enc, &b.Batch, bh)
		if err := sel.ew.record(sel.idx, b.Seq, sel.rec, bh); err != nil {
			return fmt.Errorf("export file: %w", err)
		}
		sel.ex.Records++
		sel.ex.Samples += bh.Samples
	}
	sel.keys = append(sel.keys, r.Key)
	return nil
}

// openForDelete opens a store for writing without the side effects of
// OpenStore on a file it cannot read: a corrupt file is reported, never
// moved aside, and a missing one is not created.
func openForDelete(path string, ro buffer.ReadOptions) (*buffer.Store, error) {
	snapshot, _, err := buffer.ReadStore(path, ro, nil)
	if err == nil && snapshot {
		err = fmt.Errorf("%w: an agent runs on %s; stop it before exporting with delete", buffer.ErrLocked, path)
	}
	if err != nil {
		return nil, err
	}
	s, info, err := buffer.OpenStore(path, buffer.StoreOptions{LockTimeout: ro.LockTimeout, MinFreeBytes: -1})
	if err != nil {
		return nil, err
	}
	if info.MovedAside != "" {
		_ = s.Close()
		return nil, fmt.Errorf("%s turned corrupt while opening; moved aside to %s: %v", path, info.MovedAside, info.Err)
	}
	return s, nil
}

// syncDirStrict fsyncs dir, reporting failure: deleting data depends on
// the export file's directory entry being durable.
func syncDirStrict(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
