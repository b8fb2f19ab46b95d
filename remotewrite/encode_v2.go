package remotewrite

import (
	"encoding/binary"
	"math"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// Remote write 2.0: an io.prometheus.write.v2.Request, written straight
// from the series Encoder.build grouped, as the 1.0 encoder writes its
// WriteRequest. The fields written, by number:
//
//	Request     symbols = 4 (repeated string, symbols[0] == ""),
//	            timeseries = 5
//	TimeSeries  labels_refs = 1 (packed uint32: name, value, name, ...),
//	            samples = 2, histograms = 3 (nativehist.go), metadata = 5
//	Sample      value = 1 (fixed64), timestamp = 2 (varint),
//	            start_timestamp = 3 (varint; starttime.go)
//	Metadata    type = 1, help_ref = 3 (varints); no unit_ref, as
//	            sample.Metadata has no unit
//
// Each string travels once, in symbols; series and metadata name it by
// its index. A family's type and help go with each of its series whose
// batch carries the family's metadata. proto3 defaults are left out, as
// in 1.0; so is an empty metadata, which prompb's generated code writes
// as two bytes that a receiver reads as the same nothing. The tests
// decode the body with prompb's writev2 types and compare.

// Protobuf tags of the 2.0 messages. Sample's are tagSampleV and
// tagSampleT, as in 1.0.
const (
	tagSymbol      = 4<<3 | 2 // Request.symbols
	tagSeriesV2    = 5<<3 | 2 // Request.timeseries
	tagLabelsRefs  = 1<<3 | 2 // TimeSeries.labels_refs, packed
	tagSampleV2    = 2<<3 | 2 // TimeSeries.samples
	tagHistogramV2 = 3<<3 | 2 // TimeSeries.histograms
	tagMetadataV2  = 5<<3 | 2 // TimeSeries.metadata
	tagMetaTypeV2  = 1 << 3   // Metadata.type, varint
	tagMetaHelpRef = 3 << 3   // Metadata.help_ref, varint
	tagSampleST    = 3 << 3   // Sample.start_timestamp, varint
	symbolEmptyRef = 0        // symbols[0] is "" by the spec
)

// encoderV2 is what the 2.0 encoding keeps between requests, for reuse.
type encoderV2 struct {
	index  map[string]uint32 // symbol -> its ref
	syms   []string
	refs   []uint32       // every series' labels refs, one after another
	meta   []seriesMeta   // by series
	family map[string]int // family -> its index in the batch's metadata
	prev   []prevLabel    // by place, the labels of the series before
}

// seriesMeta is where a series' labels refs end in encoderV2.refs, and its
// metadata.
type seriesMeta struct {
	refsEnd int
	typ     sample.Type
	help    uint32 // ref; 0: none
}

func (v *encoderV2) symbol(s string) uint32 {
	if ref, ok := v.index[s]; ok {
		return ref
	}
	ref := uint32(len(v.syms))
	v.syms = append(v.syms, s)
	v.index[s] = ref
	return ref
}

// symbolize fills the symbols table, the series' labels refs and their
// metadata from the built series and md.
func (e *Encoder) symbolize(md []sample.Metadata) {
	v := &e.v2
	if v.index == nil {
		v.index, v.family = map[string]uint32{}, map[string]int{}
	}
	clear(v.index)
	clear(v.family)
	clear(v.syms) // strings of past requests are not kept alive
	v.syms = append(v.syms[:0], "")
	v.index[""] = symbolEmptyRef
	v.refs, v.meta = v.refs[:0], v.meta[:0]
	for i, m := range md {
		if _, dup := v.family[m.Family]; !dup {
			v.family[m.Family] = i
		}
	}
	// Series that follow each other mostly share label names and many
	// values (the family's name, instance, job): a label equal to the one
	// at its place in the series before reuses its ref, which spares the
	// map most lookups. (Strings from one label cache compare by pointer.)
	v.prev = v.prev[:0]
	var prevName string
	var prevMeta seriesMeta
	for i := range e.series {
		var name string
		j := 0
		e.series[i].ls.Range(func(l labels.Label) {
			if l.Name == model.MetricNameLabel {
				name = l.Value
			}
			if j == len(v.prev) {
				v.prev = append(v.prev, prevLabel{})
			}
			p := &v.prev[j]
			if p.ref == 0 || p.name != l.Name {
				p.name, p.nameRef = l.Name, v.symbol(l.Name)
				p.value, p.ref = l.Value, v.symbol(l.Value)
			} else if p.value != l.Value {
				p.value, p.ref = l.Value, v.symbol(l.Value)
			}
			v.refs = append(v.refs, p.nameRef, p.ref)
			j++
		})
		sm := seriesMeta{refsEnd: len(v.refs)}
		native := len(e.series[i].hists) > 0
		family := name
		if native {
			// A native histogram's family is in md by its classic
			// names: look it up by one.
			family += "_bucket"
		}
		if i > 0 && name == prevName {
			sm.typ, sm.help = prevMeta.typ, prevMeta.help
		} else if k, ok := v.familyOf(family); ok {
			m := md[k]
			sm.typ = m.Type
			if m.Help != "" {
				sm.help = v.symbol(m.Help)
			}
		}
		if native {
			sm.typ = sample.Histogram // with or without the batch's metadata
		}
		prevName, prevMeta = name, sm
		v.meta = append(v.meta, sm)
	}
	clear(v.prev) // nor of their label sets
}

// prevLabel is a label of the series before, with its refs; ref 0: none.
type prevLabel struct {
	name, value  string
	nameRef, ref uint32
}

// familySuffixes are what a series' name may add to its family's: the
// parts of a histogram or summary, a counter's _total.
var familySuffixes = []string{"_bucket", "_count", "_sum", "_total"}

// familyOf finds the metadata of the family that series name belongs to.
func (v *encoderV2) familyOf(name string) (int, bool) {
	if i, ok := v.family[name]; ok {
		return i, true
	}
	for _, suf := range familySuffixes {
		if f, ok := strings.CutSuffix(name, suf); ok {
			if i, ok := v.family[f]; ok {
				return i, true
			}
		}
	}
	return 0, false
}

// marshalV2 appends the Request of the built series and md to dst,
// compressing whole blocks as they fill.
func (e *Encoder) marshalV2(dst []byte, md []sample.Metadata) []byte {
	e.symbolize(md)
	e.findStarts()
	v := &e.v2
	for _, s := range v.syms {
		dst = e.flush(dst, false)
		// Every symbol is written, "" too: its place is the index.
		dst = append(appendTagLen(dst, tagSymbol, len(s)), s...)
	}
	start := 0
	for i := range e.series {
		dst = e.flush(dst, false)
		refs, m := v.refs[start:v.meta[i].refsEnd], v.meta[i]
		start = m.refsEnd
		refsLen := 0
		for _, r := range refs {
			refsLen += uvarintLen(uint64(r))
		}
		size, metaLen := 0, metaV2Size(m)
		if refsLen > 0 {
			size += lenField(refsLen)
		}
		for _, p := range e.series[i].points {
			size += lenField(pointSizeV2(p, e.start(i, p.t, p.v)))
		}
		for j := range e.series[i].hists {
			h := &e.series[i].hists[j]
			size += lenField(histSize(h, e.start(i, h.t, h.sum)))
		}
		if metaLen > 0 {
			size += lenField(metaLen)
		}
		dst = appendTagLen(dst, tagSeriesV2, size)
		if refsLen > 0 {
			dst = appendTagLen(dst, tagLabelsRefs, refsLen)
			for _, r := range refs {
				dst = binary.AppendUvarint(dst, uint64(r))
			}
		}
		for _, p := range e.series[i].points {
			st := e.start(i, p.t, p.v)
			dst = appendSampleV2(appendTagLen(dst, tagSampleV2, pointSizeV2(p, st)), p, st)
		}
		for j := range e.series[i].hists {
			h := &e.series[i].hists[j]
			st := e.start(i, h.t, h.sum)
			dst = appendHist(appendTagLen(dst, tagHistogramV2, histSize(h, st)), h, st)
		}
		if metaLen > 0 {
			dst = appendTagLen(dst, tagMetadataV2, metaLen)
			if m.typ != 0 {
				dst = append(dst, tagMetaTypeV2)
				dst = binary.AppendUvarint(dst, uint64(m.typ))
			}
			if m.help != 0 {
				dst = append(dst, tagMetaHelpRef)
				dst = binary.AppendUvarint(dst, uint64(m.help))
			}
		}
	}
	return dst
}

// pointSizeV2 is the encoded size of a 2.0 Sample's fields, with start
// timestamp st (0: none).
func pointSizeV2(p point, st int64) int {
	n := pointSize(p)
	if st != 0 {
		n += 1 + uvarintLen(uint64(st))
	}
	return n
}

// appendSampleV2 appends a 2.0 Sample's fields, in field order, with
// start timestamp st (0: none).
func appendSampleV2(dst []byte, p point, st int64) []byte {
	if p.v != 0 {
		dst = append(dst, tagSampleV)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p.v))
	}
	if p.t != 0 {
		dst = append(dst, tagSampleT)
		dst = binary.AppendUvarint(dst, uint64(p.t))
	}
	if st != 0 {
		dst = append(dst, tagSampleST)
		dst = binary.AppendUvarint(dst, uint64(st))
	}
	return dst
}

// metaV2Size is the encoded size of a series' Metadata fields; 0 if it
// has none.
func metaV2Size(m seriesMeta) int {
	n := 0
	if m.typ != 0 {
		// An enum is a varint of the int32: a negative type takes ten bytes.
		n += 1 + uvarintLen(uint64(m.typ))
	}
	if m.help != 0 {
		n += 1 + uvarintLen(uint64(m.help))
	}
	return n
}

// message is what Encode writes now.
func (e *Encoder) message() Message {
	if e.msg == "" {
		return MessageV1
	}
	return e.msg
}
