package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// The batch encoding is what the store keeps on disk for one sample.Batch:
//
//	version byte (codecVersion), then a snappy block (not the framed format)
//	holding:
//	  uvarint nSymbols,  nSymbols × (uvarint len, bytes)      every distinct string
//	  uvarint nSeries,   nSeries × (uvarint nLabels,
//	                         nLabels × (uvarint nameSym, uvarint valueSym))
//	  uvarint nSamples,  nSamples × (uvarint series,
//	                         varint t-delta, 8 bytes little-endian float64 bits)
//	  uvarint nMetadata, nMetadata × (uvarint familySym, varint type, uvarint helpSym)
//
// A label set appears once however many samples it has, and a string once
// however many label sets use it: a Redis INFO scrape repeats instance and
// job in every series, and several scrapes of the same target in one batch
// repeat whole label sets. Timestamps are deltas from the previous sample's
// (the first from 0), zig-zag encoded, so a batch taken at one instant
// spends one byte per timestamp. Values are raw bits, so every NaN payload,
// Prometheus' stale marker included, comes back bit for bit.
//
// The version byte stays outside the compressed block so that a later
// version may change the compression as well as the layout.
const codecVersion = 1

// maxDecodedBatch bounds the decompressed size of one batch. It is far above
// any real batch (a 300-series scrape decodes to about 10 KiB) and keeps a
// corrupt length header from asking for gigabytes.
const maxDecodedBatch = 256 << 20

// snappyMaxRatio bounds how much a snappy block can expand: its densest
// element, a 3-byte copy, yields 64 bytes. A block that claims more than
// this many times its own size is corrupt, and is rejected before the
// output buffer is allocated.
const snappyMaxRatio = 22

// Minimum encoded sizes, used to cap every count by the bytes left so that
// no allocation is sized from an unchecked varint.
const (
	minSymbolBytes = 1 // length 0, no bytes
	minLabelBytes  = 2 // two one-byte refs
	minSeriesBytes = 1 // zero labels
	minSampleBytes = 1 + 1 + 8
	minMetaBytes   = 1 + 1 + 1
)

// encodeBatch appends the encoding of b to dst and returns the result.
func encodeBatch(dst []byte, b *sample.Batch) []byte {
	var e batchEncoder
	return e.encode(dst, b)
}

// decodeBatch decodes one encodeBatch result. Every count and length is
// checked against the input that is left, so corrupt or hostile input
// yields an error, never a panic or an outsized allocation.
func decodeBatch(data []byte) (sample.Batch, error) {
	var d batchDecoder
	return d.decode(data)
}

// batchEncoder keeps scratch space between encodings; the zero value is
// ready. It retains no reference to an encoded batch once encode returns.
type batchEncoder struct {
	syms   map[string]uint64 // string -> symbol index
	series map[uint64]uint64 // labels hash -> series index
	// seriesLabels[i] is series i, to tell a hash collision from a repeat.
	seriesLabels []labels.Labels
	refs         []uint64
	symBuf       []byte
	seriesBuf    []byte
	sampleBuf    []byte
	metaBuf      []byte
	raw          []byte
}

func (e *batchEncoder) encode(dst []byte, b *sample.Batch) []byte {
	if e.syms == nil {
		e.syms = make(map[string]uint64)
		e.series = make(map[uint64]uint64)
	}
	// Drop references to the batch's strings so the encoder does not keep
	// a batch alive after it has been stored.
	defer func() {
		clear(e.syms)
		clear(e.series)
		clear(e.seriesLabels)
		e.seriesLabels = e.seriesLabels[:0]
	}()
	e.symBuf, e.seriesBuf, e.sampleBuf, e.metaBuf = e.symBuf[:0], e.seriesBuf[:0], e.sampleBuf[:0], e.metaBuf[:0]

	var prevT int64
	for i := range b.Samples {
		s := &b.Samples[i]
		idx := e.seriesIndex(s.Labels)
		e.sampleBuf = binary.AppendUvarint(e.sampleBuf, idx)
		// Subtraction wraps like the decoder's addition, so any pair of
		// int64 timestamps round-trips.
		e.sampleBuf = binary.AppendVarint(e.sampleBuf, s.T-prevT)
		e.sampleBuf = binary.LittleEndian.AppendUint64(e.sampleBuf, math.Float64bits(s.V))
		prevT = s.T
	}
	for _, m := range b.Metadata {
		e.metaBuf = binary.AppendUvarint(e.metaBuf, e.symbol(m.Family))
		e.metaBuf = binary.AppendVarint(e.metaBuf, int64(m.Type))
		e.metaBuf = binary.AppendUvarint(e.metaBuf, e.symbol(m.Help))
	}

	raw := e.raw[:0]
	raw = binary.AppendUvarint(raw, uint64(len(e.syms)))
	raw = append(raw, e.symBuf...)
	raw = binary.AppendUvarint(raw, uint64(len(e.seriesLabels)))
	raw = append(raw, e.seriesBuf...)
	raw = binary.AppendUvarint(raw, uint64(len(b.Samples)))
	raw = append(raw, e.sampleBuf...)
	raw = binary.AppendUvarint(raw, uint64(len(b.Metadata)))
	raw = append(raw, e.metaBuf...)
	e.raw = raw

	dst = append(dst, codecVersion)
	start := len(dst)
	need := snappy.MaxEncodedLen(len(raw))
	dst = growLen(dst, need)
	// snappy writes into dst[start:] because it is long enough; the result
	// is a prefix of it.
	n := len(snappy.Encode(dst[start:], raw))
	return dst[:start+n]
}

// seriesIndex returns the dictionary index of ls, adding it if new.
func (e *batchEncoder) seriesIndex(ls labels.Labels) uint64 {
	h := ls.Hash()
	if idx, ok := e.series[h]; ok && labels.Equal(e.seriesLabels[idx], ls) {
		return idx
	}
	// New, or a hash collision: a collision only costs a duplicate
	// dictionary entry, never a wrong label set.
	idx := uint64(len(e.seriesLabels))
	e.series[h] = idx
	e.seriesLabels = append(e.seriesLabels, ls)
	e.refs = e.refs[:0]
	ls.Range(func(l labels.Label) {
		e.refs = append(e.refs, e.symbol(l.Name), e.symbol(l.Value))
	})
	e.seriesBuf = binary.AppendUvarint(e.seriesBuf, uint64(len(e.refs)/2))
	for _, r := range e.refs {
		e.seriesBuf = binary.AppendUvarint(e.seriesBuf, r)
	}
	return idx
}

// symbol returns the symbol index of s, adding it if new.
func (e *batchEncoder) symbol(s string) uint64 {
	if idx, ok := e.syms[s]; ok {
		return idx
	}
	idx := uint64(len(e.syms))
	e.syms[s] = idx
	e.symBuf = binary.AppendUvarint(e.symBuf, uint64(len(s)))
	e.symBuf = append(e.symBuf, s...)
	return idx
}

// growLen extends b by n bytes, reallocating only if capacity is short.
func growLen(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// batchDecoder keeps scratch space between decodings; the zero value is
// ready. Decoded batches share nothing with it.
type batchDecoder struct {
	raw    []byte
	syms   []string
	series []labels.Labels
	sb     labels.ScratchBuilder
}

func (d *batchDecoder) decode(data []byte) (sample.Batch, error) {
	if len(data) == 0 {
		return sample.Batch{}, errors.New("batch encoding: empty input")
	}
	if data[0] != codecVersion {
		return sample.Batch{}, fmt.Errorf("batch encoding: unknown version %d, this build reads %d", data[0], codecVersion)
	}
	block := data[1:]
	n, err := snappy.DecodedLen(block)
	if err != nil {
		return sample.Batch{}, fmt.Errorf("batch encoding: %w", err)
	}
	if int64(n) > snappyMaxRatio*int64(len(block)) || n > maxDecodedBatch {
		return sample.Batch{}, fmt.Errorf("batch encoding: block of %d bytes claims %d decoded bytes", len(block), n)
	}
	if cap(d.raw) < n {
		d.raw = make([]byte, n)
	}
	raw, err := snappy.Decode(d.raw[:cap(d.raw)], block)
	if err != nil {
		return sample.Batch{}, fmt.Errorf("batch encoding: %w", err)
	}
	b, err := d.parse(raw)
	if err != nil {
		return sample.Batch{}, fmt.Errorf("batch encoding: %w", err)
	}
	return b, nil
}

// parse reads the decompressed block.
func (d *batchDecoder) parse(raw []byte) (sample.Batch, error) {
	r := decodeReader{buf: raw}

	// Symbols: one string allocation for all of them, sliced.
	nSyms := r.count("symbol count", minSymbolBytes)
	symStart := r.off
	d.syms = d.syms[:0]
	type span struct{ from, to int }
	spans := make([]span, 0, nSyms)
	for range nSyms {
		l := r.length("symbol length")
		spans = append(spans, span{r.off, r.off + l})
		r.off += l
	}
	if r.err != nil {
		return sample.Batch{}, r.err
	}
	all := string(raw[symStart:r.off])
	for _, sp := range spans {
		d.syms = append(d.syms, all[sp.from-symStart:sp.to-symStart])
	}

	nSeries := r.count("series count", minSeriesBytes)
	clear(d.series)
	d.series = d.series[:0]
	for range nSeries {
		nl := r.count("label count", minLabelBytes)
		d.sb.Reset()
		// Labels come back in the order they were written, unsorted and
		// duplicate names included: the store returns what it was given.
		for range nl {
			d.sb.Add(r.symbol(d.syms), r.symbol(d.syms))
		}
		if r.err != nil {
			return sample.Batch{}, r.err
		}
		d.series = append(d.series, d.sb.Labels())
	}

	var b sample.Batch
	nSamples := r.count("sample count", minSampleBytes)
	if nSamples > 0 {
		b.Samples = make([]sample.Sample, nSamples)
	}
	var t int64
	for i := range b.Samples {
		idx := r.uvarint("series index")
		dt := r.varint("timestamp delta")
		v := r.fixed64("value")
		if r.err != nil {
			return sample.Batch{}, r.err
		}
		if idx >= uint64(len(d.series)) {
			return sample.Batch{}, fmt.Errorf("sample %d: series %d out of range (%d series)", i, idx, len(d.series))
		}
		t += dt
		b.Samples[i] = sample.Sample{Labels: d.series[idx], T: t, V: math.Float64frombits(v)}
	}

	nMeta := r.count("metadata count", minMetaBytes)
	if nMeta > 0 {
		b.Metadata = make([]sample.Metadata, nMeta)
	}
	for i := range b.Metadata {
		family := r.symbol(d.syms)
		typ := r.varint("metadata type")
		help := r.symbol(d.syms)
		if r.err != nil {
			return sample.Batch{}, r.err
		}
		if typ < math.MinInt32 || typ > math.MaxInt32 {
			return sample.Batch{}, fmt.Errorf("metadata %d: type %d out of range", i, typ)
		}
		b.Metadata[i] = sample.Metadata{Family: family, Type: sample.Type(typ), Help: help}
	}
	if r.err != nil {
		return sample.Batch{}, r.err
	}
	if r.off != len(raw) {
		return sample.Batch{}, fmt.Errorf("%d trailing bytes after metadata", len(raw)-r.off)
	}
	// The decoder's scratch must not keep the batch's label sets alive.
	clear(d.series)
	return b, nil
}

// decodeReader reads varints and fixed fields with a sticky error: after
// the first failure every read returns zero, so callers check once per
// record instead of after every field.
type decodeReader struct {
	buf []byte
	off int
	err error
}

func (r *decodeReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: %s", r.off, fmt.Sprintf(format, args...))
	}
}

func (r *decodeReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 {
		r.fail("%s: truncated or overlong uvarint", what)
		return 0
	}
	r.off += n
	return v
}

func (r *decodeReader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.buf[r.off:])
	if n <= 0 {
		r.fail("%s: truncated or overlong varint", what)
		return 0
	}
	r.off += n
	return v
}

func (r *decodeReader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.buf) {
		r.fail("%s: truncated", what)
		return 0
	}
	r.off++
	return r.buf[r.off-1]
}

func (r *decodeReader) fixed64(what string) uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.buf)-r.off < 8 {
		r.fail("%s: need 8 bytes, %d left", what, len(r.buf)-r.off)
		return 0
	}
	v := binary.LittleEndian.Uint64(r.buf[r.off:])
	r.off += 8
	return v
}

// count reads the number of items that follow, each at least minBytes
// long, and rejects a count the remaining input cannot hold. The result is
// therefore safe to size an allocation with.
func (r *decodeReader) count(what string, minBytes int) int {
	v := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if left := len(r.buf) - r.off; v > uint64(left/minBytes) {
		r.fail("%s %d does not fit in the %d bytes left", what, v, left)
		return 0
	}
	return int(v)
}

// length reads a byte length and checks that many bytes are left.
func (r *decodeReader) length(what string) int {
	v := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if left := len(r.buf) - r.off; v > uint64(left) {
		r.fail("%s %d exceeds the %d bytes left", what, v, left)
		return 0
	}
	return int(v)
}

// symbol reads a symbol reference and resolves it.
func (r *decodeReader) symbol(syms []string) string {
	v := r.uvarint("symbol ref")
	if r.err != nil {
		return ""
	}
	if v >= uint64(len(syms)) {
		r.fail("symbol ref %d out of range (%d symbols)", v, len(syms))
		return ""
	}
	return syms[v]
}

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
// the payload; the checksum covers header and payload alike.
const recordHeaderSize = 24

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordHeader is the decoded fixed header of a stored record.
type recordHeader struct {
	samples    int64
	minT, maxT int64
	segment    bool // a segment record (segrecord.go), not a batch record
}

// appendRecord appends the record for b, whose header is h, to dst.
func appendRecord(dst []byte, enc *batchEncoder, b *sample.Batch, h recordHeader) []byte {
	start := len(dst)
	dst = growLen(dst, recordHeaderSize)
	dst = enc.encode(dst, b)
	rec := dst[start:]
	binary.LittleEndian.PutUint32(rec[4:], uint32(h.samples))
	binary.LittleEndian.PutUint64(rec[8:], uint64(h.minT))
	binary.LittleEndian.PutUint64(rec[16:], uint64(h.maxT))
	binary.LittleEndian.PutUint32(rec[0:], crc32.Checksum(rec[4:], castagnoli))
	return dst
}

// headerOf summarises b for its record header.
func headerOf(b *sample.Batch) recordHeader {
	h := recordHeader{samples: int64(len(b.Samples))}
	for i, s := range b.Samples {
		if i == 0 || s.T < h.minT {
			h.minT = s.T
		}
		if i == 0 || s.T > h.maxT {
			h.maxT = s.T
		}
	}
	return h
}

// parseHeader reads a record's header without touching its payload. It
// checks only what the header alone can tell: a record the store wrote
// holds at least one sample and minT <= maxT.
func parseHeader(rec []byte) (recordHeader, error) {
	if len(rec) < recordHeaderSize {
		return recordHeader{}, fmt.Errorf("record of %d bytes is shorter than its %d-byte header", len(rec), recordHeaderSize)
	}
	n := binary.LittleEndian.Uint32(rec[4:])
	h := recordHeader{
		samples: int64(n &^ segmentFlag),
		minT:    int64(binary.LittleEndian.Uint64(rec[8:])),
		maxT:    int64(binary.LittleEndian.Uint64(rec[16:])),
		segment: n&segmentFlag != 0,
	}
	if h.samples == 0 {
		return h, errors.New("record header claims 0 samples")
	}
	if h.minT > h.maxT {
		return h, fmt.Errorf("record header has min time %d after max time %d", h.minT, h.maxT)
	}
	return h, nil
}

// decodeRecord verifies a record's checksum and decodes its batch,
// checking that the batch matches its header.
func decodeRecord(dec *batchDecoder, rec []byte) (sample.Batch, error) {
	h, err := parseHeader(rec)
	if err != nil {
		return sample.Batch{}, err
	}
	if h.segment {
		return sample.Batch{}, errSegmentRecord
	}
	if want, got := binary.LittleEndian.Uint32(rec), crc32.Checksum(rec[4:], castagnoli); want != got {
		return sample.Batch{}, fmt.Errorf("record checksum %08x, want %08x", got, want)
	}
	b, err := dec.decode(rec[recordHeaderSize:])
	if err != nil {
		return sample.Batch{}, err
	}
	if got := headerOf(&b); got != h {
		return sample.Batch{}, fmt.Errorf("record header says %+v, batch has %+v", h, got)
	}
	return b, nil
}
