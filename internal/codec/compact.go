package codec

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/redwire/redwire/sample"
)

// A compact segment holds many batches (say an hour of scrapes of a few
// targets) in about a tenth of the space their batch records take, because
// it stores what repeats from scrape to scrape once and what changes as
// Gorilla deltas:
//
//	[0:4]  crc32c (Castagnoli) of bytes [4:]
//	[4]    compactVersion
//	uvarint nSymbols,  nSymbols × (uvarint len, bytes)      every distinct string
//	uvarint nSeries,   nSeries × (uvarint nLabels,
//	                       nLabels × (uvarint nameSym, uvarint valueSym))
//	uvarint nMetadata, nMetadata × (uvarint familySym, varint type, uvarint helpSym)
//	uvarint nBatches,  nBatches × batch
//	for each series in order: uvarint nChunks, nChunks × (uvarint len, chunk)
//
//	batch = metadata list ref, uvarint nRuns, nRuns × (varint t-delta, series list ref)
//	list ref = uvarint i: the i-th list of its kind defined so far, or, if i is
//	    the number defined so far, a new one that follows inline:
//	    uvarint n, n × varint id-delta (series lists: from the previous id,
//	    the first from -1) or n × uvarint metadata id (metadata lists)
//
// A run is a maximal stretch of a batch's samples that share a timestamp:
// a scrape is one run. Its timestamp is a zig-zag delta from the previous
// run's (the first from 0) and its series list names the series of its
// samples in order. A target exports the same series every scrape, so a
// run costs a few bytes: a timestamp delta and a one-byte reference to a
// list defined once. Timestamps live in the runs rather than in each
// series' chunk because scrape jitter makes the delta-of-delta nonzero,
// which costs an XOR chunk 16 bits per sample, while a run pays it once
// for all ~300 samples of a scrape.
//
// Each series' values, in the order its samples occur, are chunks whose
// sample counts must add up to the series' count in the runs. A chunk's
// first byte is its kind: a decimal chunk (compact_decimal.go) if every
// value in it is a decimal of at most 15 places, which Redis' numbers
// nearly always are, and otherwise a Prometheus XOR (Gorilla) chunk whose
// timestamps are just 0, 1, 2, ...: one bit a sample, and the decoder
// checks them. Both keep the raw bits of every value, so NaN payloads,
// stale markers and -0 come back bit for bit.
//
// Version 1 segments, written before decimal chunks, have XOR chunks only
// and no kind byte; the decoder still reads them, so a buffer written by
// an older redwire replays after an upgrade.
//
// Label sets, metadata, batch boundaries and the order of samples and of
// metadata within a batch come back exactly; labels unsorted if they were
// given so.
const compactVersion = 2

// compactHeaderSize is the checksum and version byte.
const compactHeaderSize = 5

// The encoder ends a chunk once it holds compactChunkCut samples, 120 as
// in Prometheus' TSDB, unless every value in it is the same. XOR encoding
// keeps the widest leading/trailing-zero window a chunk has needed, and a
// decimal chunk one bit width, so values that once changed a lot cost
// more until the chunk ends, while a new chunk costs about 12 bytes. On
// the benchmark's backlog one XOR chunk per series and hour takes 3.5
// bytes a sample, chunks of 120 take 2.0. A series that does not change
// keeps one chunk, at a bit a sample, up to compactChunkMax, the most an
// XOR chunk's uint16 count allows; a value that differs from a constant
// chunk of compactChunkCut or more starts a new one.
const (
	compactChunkCut = 120
	compactChunkMax = math.MaxUint16
)

// MaxSegmentSamples bounds the samples of one segment, and with it the
// memory DecodeSegment needs: about 32 bytes a sample.
const MaxSegmentSamples = 1 << 26

// Minimum encoded sizes, to cap counts by the bytes left (see decodeReader.count).
const (
	minSegBatchBytes = 2 // metadata list ref, run count
	minSegRunBytes   = 2 // t-delta, list ref
	minSegIDBytes    = 1
	minSegChunkBytes = 1 + 6 // length, kind and a decimal chunk's header of one sample
)

// EncodeSegment encodes batches as one compact segment.
func EncodeSegment(batches []sample.Batch) ([]byte, error) {
	var s Segment
	for i := range batches {
		if err := s.Append(&batches[i]); err != nil {
			return nil, fmt.Errorf("batch %d: %w", i, err)
		}
	}
	return s.Encode(nil), nil
}

// Segment accumulates batches for a compact segment; the zero value is an
// empty segment. Append does most of the encoding work as batches arrive,
// so Encode costs a copy and the encoding of each series' open chunk. A Segment keeps references to the label sets of the
// batches it holds, and nothing else of them.
type Segment struct {
	batches, samples int

	syms   map[string]uint64
	symBuf []byte
	nSyms  int

	seriesIdx    map[uint64]uint32 // labels hash -> series id
	seriesLabels []labels.Labels   // by id, to tell a collision from a repeat
	seriesBuf    []byte
	series       []segSeries // by id

	metaIdx map[sample.Metadata]uint32
	metaBuf []byte
	nMeta   int

	// Lists defined so far, keyed by their inline encoding.
	seriesLists, metaLists map[string]uint64

	order []byte // the batches, as encoded
	prevT int64  // timestamp of the last run

	ids     []uint32 // scratch: a run's series ids
	listBuf []byte   // scratch: a list's inline encoding
	scratch chunkScratch
}

// segSeries is one series' values: the chunks cut so far, encoded, and
// the open chunk. While the open chunk's values are all equal it keeps
// only the first and the count, so a constant costs nothing until Encode.
type segSeries struct {
	enc     []byte    // cut chunks, each as uvarint length and chunk
	nChunks int       // in enc
	n       int       // samples in the open chunk
	first   float64   // its first value
	changed bool      // whether a later value differs from first
	vals    []float64 // all the open chunk's values, once changed
}

// Batches is the number of batches appended.
func (s *Segment) Batches() int { return s.batches }

// Samples is the number of samples appended.
func (s *Segment) Samples() int { return s.samples }

// Reset empties the segment, keeping its scratch space.
func (s *Segment) Reset() {
	*s = Segment{symBuf: s.symBuf[:0], seriesBuf: s.seriesBuf[:0], metaBuf: s.metaBuf[:0],
		order: s.order[:0], ids: s.ids[:0], listBuf: s.listBuf[:0], scratch: s.scratch}
}

// Append adds b after the batches already in the segment. It fails, and
// changes nothing, only if the segment would exceed MaxSegmentSamples.
func (s *Segment) Append(b *sample.Batch) error {
	if n := len(b.Samples); n > MaxSegmentSamples-s.samples {
		return fmt.Errorf("segment of %d samples cannot take a batch of %d: the limit is %d", s.samples, n, MaxSegmentSamples)
	}
	if s.syms == nil {
		s.syms = make(map[string]uint64)
		s.seriesIdx = make(map[uint64]uint32)
		s.metaIdx = make(map[sample.Metadata]uint32)
		s.seriesLists = make(map[string]uint64)
		s.metaLists = make(map[string]uint64)
	}

	s.listBuf = s.listBuf[:0]
	for _, m := range b.Metadata {
		s.listBuf = binary.AppendUvarint(s.listBuf, uint64(s.metadataID(m)))
	}
	s.order = appendListRef(s.order, s.metaLists, s.listBuf, len(b.Metadata))

	nRuns := 0
	for i := 0; i < len(b.Samples); {
		j := i + 1
		for j < len(b.Samples) && b.Samples[j].T == b.Samples[i].T {
			j++
		}
		i, nRuns = j, nRuns+1
	}
	s.order = binary.AppendUvarint(s.order, uint64(nRuns))
	for i := 0; i < len(b.Samples); {
		t := b.Samples[i].T
		s.ids = s.ids[:0]
		for ; i < len(b.Samples) && b.Samples[i].T == t; i++ {
			smp := &b.Samples[i]
			id := s.seriesID(smp.Labels)
			s.series[id].append(smp.V, &s.scratch)
			s.ids = append(s.ids, id)
		}
		// Wrapping subtraction, undone by the decoder's wrapping addition.
		s.order = binary.AppendVarint(s.order, t-s.prevT)
		s.prevT = t
		s.listBuf = s.listBuf[:0]
		prev := int64(-1)
		for _, id := range s.ids {
			s.listBuf = binary.AppendVarint(s.listBuf, int64(id)-prev)
			prev = int64(id)
		}
		s.order = appendListRef(s.order, s.seriesLists, s.listBuf, len(s.ids))
	}
	s.batches++
	s.samples += len(b.Samples)
	return nil
}

// appendListRef appends the reference to the list whose inline encoding is
// enc (n items), defining it first if it is new.
func appendListRef(dst []byte, lists map[string]uint64, enc []byte, n int) []byte {
	if ref, ok := lists[string(enc)]; ok {
		return binary.AppendUvarint(dst, ref)
	}
	ref := uint64(len(lists))
	lists[string(enc)] = ref
	dst = binary.AppendUvarint(dst, ref)
	dst = binary.AppendUvarint(dst, uint64(n))
	return append(dst, enc...)
}

// append adds v to the series' values, cutting the open chunk first
// when it is full.
func (ss *segSeries) append(v float64, sc *chunkScratch) {
	b := math.Float64bits(v)
	if ss.n > 0 {
		same := b == math.Float64bits(ss.first)
		if ss.n == compactChunkMax || (ss.n >= compactChunkCut && (ss.changed || !same)) {
			c := ss.appendOpen(sc.chunk[:0], sc)
			sc.chunk = c
			ss.enc = binary.AppendUvarint(ss.enc, uint64(len(c)))
			ss.enc = append(ss.enc, c...)
			ss.nChunks++
			ss.n, ss.changed, ss.vals = 0, false, ss.vals[:0]
		} else if !ss.changed && !same {
			ss.changed = true
			for range ss.n {
				ss.vals = append(ss.vals, ss.first)
			}
		}
	}
	if ss.n == 0 {
		ss.first = v
	}
	if ss.changed {
		ss.vals = append(ss.vals, v)
	}
	ss.n++
}

// chunkScratch is scratch space for encoding chunks.
type chunkScratch struct {
	ints  []int64
	chunk []byte
}

// appendOpen appends the encoding of the open chunk: a decimal chunk if
// its values allow, else an XOR chunk.
func (ss *segSeries) appendOpen(dst []byte, sc *chunkScratch) []byte {
	vals := ss.vals
	if !ss.changed {
		vals = []float64{ss.first}
	}
	ints, scale, ok := decimals(sc.ints, vals)
	sc.ints = ints
	switch {
	case ok && !ss.changed:
		return appendConstantDecimalChunk(dst, ints[0], ss.n, scale)
	case ok:
		return appendDecimalChunk(dst, ints, scale)
	}
	c := chunkenc.NewXORChunk()
	app, err := c.Appender()
	if err != nil {
		// An empty chunk's appender cannot fail.
		panic(fmt.Sprintf("buffer: XOR appender of an empty chunk: %v", err))
	}
	// The timestamp is the sample's index in the chunk: constant deltas
	// cost one bit, and the decoder checks them.
	for i := range ss.n {
		v := ss.first
		if ss.changed {
			v = ss.vals[i]
		}
		app.Append(0, int64(i), v)
	}
	dst = append(dst, chunkXOR)
	return append(dst, c.Bytes()...)
}

// seriesID returns the id of ls, adding it to the dictionary if new. A
// hash collision costs a second entry, never a wrong label set.
func (s *Segment) seriesID(ls labels.Labels) uint32 {
	h := ls.Hash()
	if id, ok := s.seriesIdx[h]; ok && labels.Equal(s.seriesLabels[id], ls) {
		return id
	}
	id := uint32(len(s.seriesLabels))
	s.seriesIdx[h] = id
	s.seriesLabels = append(s.seriesLabels, ls)
	s.series = append(s.series, segSeries{})
	s.seriesBuf = binary.AppendUvarint(s.seriesBuf, uint64(ls.Len()))
	ls.Range(func(l labels.Label) {
		s.seriesBuf = binary.AppendUvarint(s.seriesBuf, s.symbol(l.Name))
		s.seriesBuf = binary.AppendUvarint(s.seriesBuf, s.symbol(l.Value))
	})
	return id
}

func (s *Segment) metadataID(m sample.Metadata) uint32 {
	if id, ok := s.metaIdx[m]; ok {
		return id
	}
	id := uint32(s.nMeta)
	s.metaIdx[m] = id
	s.nMeta++
	s.metaBuf = binary.AppendUvarint(s.metaBuf, s.symbol(m.Family))
	s.metaBuf = binary.AppendVarint(s.metaBuf, int64(m.Type))
	s.metaBuf = binary.AppendUvarint(s.metaBuf, s.symbol(m.Help))
	return id
}

func (s *Segment) symbol(str string) uint64 {
	if id, ok := s.syms[str]; ok {
		return id
	}
	id := uint64(s.nSyms)
	s.syms[str] = id
	s.nSyms++
	s.symBuf = binary.AppendUvarint(s.symBuf, uint64(len(str)))
	s.symBuf = append(s.symBuf, str...)
	return id
}

// Encode appends the segment's encoding to dst and returns the result.
// The segment is unchanged and may take more batches.
func (s *Segment) Encode(dst []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, compactVersion)
	dst = binary.AppendUvarint(dst, uint64(s.nSyms))
	dst = append(dst, s.symBuf...)
	dst = binary.AppendUvarint(dst, uint64(len(s.series)))
	dst = append(dst, s.seriesBuf...)
	dst = binary.AppendUvarint(dst, uint64(s.nMeta))
	dst = append(dst, s.metaBuf...)
	dst = binary.AppendUvarint(dst, uint64(s.batches))
	dst = append(dst, s.order...)
	for i := range s.series {
		ss := &s.series[i]
		dst = binary.AppendUvarint(dst, uint64(ss.nChunks+1))
		dst = append(dst, ss.enc...)
		c := ss.appendOpen(s.scratch.chunk[:0], &s.scratch)
		s.scratch.chunk = c
		dst = binary.AppendUvarint(dst, uint64(len(c)))
		dst = append(dst, c...)
	}
	putChecksum(dst[start:])
	return dst
}

// putChecksum sets the checksum of an encoded segment.
func putChecksum(seg []byte) {
	binary.LittleEndian.PutUint32(seg, crc32.Checksum(seg[4:], castagnoli))
}
