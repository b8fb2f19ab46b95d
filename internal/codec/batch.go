package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// The batch encoding is what the store keeps on disk for one sample.Batch:
//
//	version byte (BatchVersion), then a snappy block (not the framed format)
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
const BatchVersion = 1

// MaxDecodedBatch bounds the decompressed size of one batch. It is far above
// any real batch (a 300-series scrape decodes to about 10 KiB) and keeps a
// corrupt length header from asking for gigabytes.
const MaxDecodedBatch = 256 << 20

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
	var e BatchEncoder
	return e.encode(dst, b)
}

// decodeBatch decodes one encodeBatch result. Every count and length is
// checked against the input that is left, so corrupt or hostile input
// yields an error, never a panic or an outsized allocation.
func decodeBatch(data []byte) (sample.Batch, error) {
	var d BatchDecoder
	return d.decode(data)
}

// BatchEncoder keeps scratch space between encodings; the zero value is
// ready. It retains no reference to an encoded batch once encode returns.
type BatchEncoder struct {
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

func (e *BatchEncoder) encode(dst []byte, b *sample.Batch) []byte {
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

	dst = append(dst, BatchVersion)
	start := len(dst)
	need := snappy.MaxEncodedLen(len(raw))
	dst = growLen(dst, need)
	// snappy writes into dst[start:] because it is long enough; the result
	// is a prefix of it.
	n := len(snappy.Encode(dst[start:], raw))
	return dst[:start+n]
}

// seriesIndex returns the dictionary index of ls, adding it if new.
func (e *BatchEncoder) seriesIndex(ls labels.Labels) uint64 {
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
func (e *BatchEncoder) symbol(s string) uint64 {
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

// BatchDecoder keeps scratch space between decodings; the zero value is
// ready. Decoded batches share nothing with it.
type BatchDecoder struct {
	raw    []byte
	syms   []string
	series []labels.Labels
	sb     labels.ScratchBuilder
}

func (d *BatchDecoder) decode(data []byte) (sample.Batch, error) {
	if len(data) == 0 {
		return sample.Batch{}, errors.New("batch encoding: empty input")
	}
	if data[0] != BatchVersion {
		return sample.Batch{}, fmt.Errorf("batch encoding: unknown version %d, this build reads %d", data[0], BatchVersion)
	}
	block := data[1:]
	n, err := snappy.DecodedLen(block)
	if err != nil {
		return sample.Batch{}, fmt.Errorf("batch encoding: %w", err)
	}
	if int64(n) > snappyMaxRatio*int64(len(block)) || n > MaxDecodedBatch {
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
func (d *BatchDecoder) parse(raw []byte) (sample.Batch, error) {
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
