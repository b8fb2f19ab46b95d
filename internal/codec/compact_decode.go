package codec

// Decoding compact segments (the format is in compact.go and
// compact_decimal.go).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/redwire/redwire/sample"
)

// DecodeSegment decodes an EncodeSegment or Segment.Encode result. Corrupt
// input yields an error, never a panic, an outsized allocation or wrong
// samples that pass: the checksum covers everything, and every count,
// reference and chunk is checked besides.
//
// Batches that had equal metadata lists share one Metadata slice, and all
// share label sets: treat them as read-only. They share nothing with data.
func DecodeSegment(data []byte) ([]sample.Batch, error) {
	if len(data) < compactHeaderSize {
		return nil, fmt.Errorf("compact segment: %d bytes, shorter than its %d-byte header", len(data), compactHeaderSize)
	}
	if want, got := binary.LittleEndian.Uint32(data), crc32.Checksum(data[4:], castagnoli); want != got {
		return nil, fmt.Errorf("compact segment: checksum %08x, want %08x", got, want)
	}
	return decodeSegmentBody(data)
}

// decodeSegmentBody decodes a segment whose checksum is not checked, so
// that the fuzz test reaches the parser.
func decodeSegmentBody(data []byte) ([]sample.Batch, error) {
	if len(data) < compactHeaderSize {
		return nil, fmt.Errorf("compact segment: %d bytes, shorter than its %d-byte header", len(data), compactHeaderSize)
	}
	if data[4] != compactVersion && data[4] != compactVersionXOR {
		return nil, fmt.Errorf("compact segment: unknown version %d, this build reads %d and %d", data[4], compactVersionXOR, compactVersion)
	}
	d := segmentDecoder{version: data[4]}
	bs, err := d.decode(data)
	if err != nil {
		return nil, fmt.Errorf("compact segment: %w", err)
	}
	return bs, nil
}

// compactVersionXOR is the version of segments whose chunks are all XOR
// chunks, without a kind byte.
const compactVersionXOR = 1

// segmentDecoder holds the tables of one decoding.
type segmentDecoder struct {
	version byte
	r       decodeReader
	syms    []string
	series  []labels.Labels
	meta    []sample.Metadata
	// Lists as spans of ids; metaLists hold the decoded slices.
	seriesLists []span
	metaLists   [][]sample.Metadata
	ids         []uint32
	runs        []segRun
	batches     []segBatch
}

type span struct{ from, to int }

type segRun struct {
	t    int64
	list int
}

type segBatch struct {
	meta     int
	runs     span
	nSamples int
}

func (d *segmentDecoder) decode(data []byte) ([]sample.Batch, error) {
	d.r = decodeReader{buf: data, off: compactHeaderSize}
	r := &d.r
	if err := d.readTables(); err != nil {
		return nil, err
	}

	// Batches and runs, counting each series' samples. Each sample takes
	// at least a bit of its series' chunk (see readChunks), which bounds
	// the total by the input before anything is sized by it.
	maxSamples := min(8*len(data), MaxSegmentSamples)
	nBatches := r.count("batch count", minSegBatchBytes)
	d.batches = make([]segBatch, 0, nBatches)
	total := 0
	var t int64
	for bi := range nBatches {
		meta := d.listRef(len(d.metaLists), "metadata list", func() {
			n := r.count("metadata list length", minSegIDBytes)
			l := make([]sample.Metadata, 0, n)
			for range n {
				id := r.uvarint("metadata id")
				if r.err == nil && id >= uint64(len(d.meta)) {
					r.fail("metadata id %d out of range (%d metadata)", id, len(d.meta))
				}
				if r.err != nil {
					return
				}
				l = append(l, d.meta[id])
			}
			d.metaLists = append(d.metaLists, l[:n:n])
		})
		nRuns := r.count("run count", minSegRunBytes)
		b := segBatch{meta: meta, runs: span{len(d.runs), len(d.runs) + nRuns}}
		for range nRuns {
			t += r.varint("run timestamp delta")
			list := d.listRef(len(d.seriesLists), "series list", d.readSeriesList)
			if r.err != nil {
				break
			}
			d.runs = append(d.runs, segRun{t: t, list: list})
			n := d.seriesLists[list].to - d.seriesLists[list].from
			if n > maxSamples-total {
				r.fail("batch %d: more samples than the %d the input can hold", bi, maxSamples)
				break
			}
			total += n
			b.nSamples += n
		}
		if r.err != nil {
			return nil, r.err
		}
		d.batches = append(d.batches, b)
	}

	its, err := d.readChunks()
	if err != nil {
		return nil, err
	}
	return d.assemble(its, total)
}

// readTables reads the symbols, series and metadata.
func (d *segmentDecoder) readTables() error {
	r := &d.r
	nSyms := r.count("symbol count", minSymbolBytes)
	spans := make([]span, 0, nSyms)
	symStart := r.off
	for range nSyms {
		l := r.length("symbol length")
		spans = append(spans, span{r.off, r.off + l})
		r.off += l
	}
	if r.err != nil {
		return r.err
	}
	all := string(r.buf[symStart:r.off]) // one allocation for every string
	d.syms = make([]string, len(spans))
	for i, sp := range spans {
		d.syms[i] = all[sp.from-symStart : sp.to-symStart]
	}

	nSeries := r.count("series count", minSeriesBytes)
	d.series = make([]labels.Labels, 0, nSeries)
	var sb labels.ScratchBuilder
	for range nSeries {
		nl := r.count("label count", minLabelBytes)
		sb.Reset()
		for range nl {
			sb.Add(r.symbol(d.syms), r.symbol(d.syms))
		}
		if r.err != nil {
			return r.err
		}
		d.series = append(d.series, sb.Labels())
	}

	nMeta := r.count("metadata count", minMetaBytes)
	d.meta = make([]sample.Metadata, 0, nMeta)
	for i := range nMeta {
		family := r.symbol(d.syms)
		typ := r.varint("metadata type")
		help := r.symbol(d.syms)
		if r.err != nil {
			return r.err
		}
		if typ < math.MinInt32 || typ > math.MaxInt32 {
			return fmt.Errorf("metadata %d: type %d out of range", i, typ)
		}
		d.meta = append(d.meta, sample.Metadata{Family: family, Type: sample.Type(typ), Help: help})
	}
	return nil
}

// listRef reads a list reference among defined lists, calling define to
// read a new one inline. It returns the list's index.
func (d *segmentDecoder) listRef(defined int, what string, define func()) int {
	r := &d.r
	ref := r.uvarint(what + " ref")
	switch {
	case r.err != nil:
		return 0
	case ref < uint64(defined):
		return int(ref)
	case ref == uint64(defined):
		define()
		return defined
	default:
		r.fail("%s ref %d beyond the %d defined", what, ref, defined)
		return 0
	}
}

func (d *segmentDecoder) readSeriesList() {
	r := &d.r
	n := r.count("series list length", minSegIDBytes)
	from := len(d.ids)
	id := int64(-1)
	for range n {
		id += r.varint("series id delta")
		if r.err == nil && (id < 0 || id >= int64(len(d.series))) {
			r.fail("series id %d out of range (%d series)", id, len(d.series))
		}
		if r.err != nil {
			return
		}
		d.ids = append(d.ids, uint32(id))
	}
	d.seriesLists = append(d.seriesLists, span{from, len(d.ids)})
}

// segIter reads one series' values across its chunks.
type segIter struct {
	version byte
	chunks  [][]byte
	xor     chunkenc.Iterator // of the current chunk, if an XOR chunk
	dec     decimalIter       // of the current chunk, if a decimal chunk
	n, max  int64             // values read from the current chunk, and its count
}

// readChunks reads every series' chunks, checking that their sample counts
// match the runs'.
func (d *segmentDecoder) readChunks() ([]segIter, error) {
	r := &d.r
	counts := make([]int, len(d.series))
	for _, run := range d.runs {
		for _, id := range d.ids[d.seriesLists[run.list].from:d.seriesLists[run.list].to] {
			counts[id]++
		}
	}
	its := make([]segIter, len(d.series))
	for id, n := range counts {
		its[id].version = d.version
		nChunks := r.count("chunk count", minSegChunkBytes)
		for range nChunks {
			l := r.length("chunk length")
			if r.err != nil {
				return nil, fmt.Errorf("series %d: %w", id, r.err)
			}
			c := r.buf[r.off : r.off+l]
			r.off += l
			k, err := d.chunkSamples(c, n)
			if err != nil {
				return nil, fmt.Errorf("series %d: %w", id, err)
			}
			its[id].chunks = append(its[id].chunks, c)
			n -= k
		}
		if r.err != nil {
			return nil, fmt.Errorf("series %d: %w", id, r.err)
		}
		if n != 0 {
			return nil, fmt.Errorf("series %d: chunks hold %d samples fewer than its runs", id, n)
		}
	}
	if r.off != len(r.buf) {
		return nil, fmt.Errorf("%d trailing bytes after the chunks", len(r.buf)-r.off)
	}
	return its, nil
}

// chunkSamples returns the sample count of chunk c, checking it against
// limit, what is left to its series, and against the chunk's size: a
// valid XOR chunk of k samples takes at least 88 bits for the first, 9
// for the second and 2 for each further, a decimal chunk a bit for each
// but the first. That keeps the total, which sizes the decoder's
// allocations, tied to the input size.
func (d *segmentDecoder) chunkSamples(c []byte, limit int) (int, error) {
	kind, whole := chunkXOR, c
	if d.version != compactVersionXOR {
		if len(c) == 0 {
			return 0, errors.New("empty chunk")
		}
		kind, c = c[0], c[1:]
	}
	switch kind {
	case chunkXOR:
		if len(c) < 2 {
			return 0, fmt.Errorf("XOR chunk of %d bytes", len(c))
		}
		k := int(binary.BigEndian.Uint16(c))
		if k == 0 || k > limit || k > 4*len(c) {
			return 0, fmt.Errorf("XOR chunk of %d bytes claims %d samples, %d left to the series", len(c), k, limit)
		}
		return k, nil
	case chunkDecimal:
		it, err := openDecimal(whole, limit)
		if err != nil {
			return 0, err
		}
		return it.k, nil
	default:
		return 0, fmt.Errorf("unknown chunk kind %d", kind)
	}
}

// next returns the series' next value.
func (si *segIter) next() (float64, error) {
	if si.n == si.max {
		if err := si.open(); err != nil {
			return 0, err
		}
	}
	si.n++
	if si.xor == nil {
		return si.dec.next()
	}
	if si.xor.Next() != chunkenc.ValFloat {
		if err := si.xor.Err(); err != nil {
			return 0, fmt.Errorf("chunk sample %d: %w", si.n-1, err)
		}
		return 0, fmt.Errorf("chunk ends at sample %d", si.n-1)
	}
	t, v := si.xor.At()
	if t != si.n-1 {
		return 0, fmt.Errorf("chunk sample %d has index %d: corrupt", si.n-1, t)
	}
	return v, nil
}

// open starts reading the next chunk; readChunks has checked its kind
// and count.
func (si *segIter) open() error {
	if len(si.chunks) == 0 {
		return errors.New("more samples than its chunks hold")
	}
	c := si.chunks[0]
	si.chunks = si.chunks[1:]
	si.n = 0
	if si.version != compactVersionXOR {
		if c[0] == chunkDecimal {
			dec, err := openDecimal(c, math.MaxInt)
			si.dec, si.max, si.xor = dec, int64(dec.k), nil
			return err
		}
		c = c[1:]
	}
	x, err := chunkenc.FromData(chunkenc.EncXOR, c)
	if err != nil {
		return err
	}
	si.xor, si.max = x.Iterator(si.xor), int64(binary.BigEndian.Uint16(c))
	return nil
}

// assemble builds the batches from the runs and the series' values.
func (d *segmentDecoder) assemble(its []segIter, total int) ([]sample.Batch, error) {
	all := make([]sample.Sample, total)
	out := make([]sample.Batch, len(d.batches))
	off := 0
	for bi, b := range d.batches {
		if l := d.metaLists[b.meta]; len(l) > 0 {
			out[bi].Metadata = l
		}
		if b.nSamples == 0 {
			continue
		}
		samples := all[off : off+b.nSamples : off+b.nSamples]
		off += b.nSamples
		k := 0
		for _, run := range d.runs[b.runs.from:b.runs.to] {
			for _, id := range d.ids[d.seriesLists[run.list].from:d.seriesLists[run.list].to] {
				v, err := its[id].next()
				if err != nil {
					return nil, fmt.Errorf("series %d: %w", id, err)
				}
				samples[k] = sample.Sample{Labels: d.series[id], T: run.t, V: v}
				k++
			}
		}
		out[bi].Samples = samples
	}
	return out, nil
}
