package remotewrite

import (
	"encoding/binary"
	"math"
	"math/bits"
	"slices"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// Encoder turns a batch into a remote-write 1.0 request body: a
// prompb.WriteRequest with one TimeSeries per label set (labels sorted,
// __name__ included, samples in time order) plus the families' metadata,
// protobuf-marshalled and snappy block-encoded.
//
// It writes the protobuf itself, straight from the label sets, byte for
// byte what prompb's generated code writes for the same request (the
// tests compare the two): building prompb structs first kept a []Label
// per series alive between requests, most of the agent's live heap, and
// marshalling them took two passes over copies.
//
// An Encoder writes remote write 2.0 instead once the policy has told it
// to (Policy.Deliver, for an endpoint that speaks 2.0): see encode_v2.go.
//
// An Encoder reuses its buffers between calls, so the body it returns is
// valid only until the next Encode. It is not safe for concurrent use.
type Encoder struct {
	// msg is the message Encode writes; "" is MessageV1. Only
	// Policy.Deliver sets it, so a body prepared ahead with Encode is in
	// the message msg still names when Deliver gets it.
	msg Message
	// native: send the latency histograms as native histograms, in 2.0
	// requests (nativehist.go). Only Policy.Deliver sets it, with msg.
	native bool
	v2     encoderV2
	nh     nativeState
	st     startState // start timestamps, 2.0 only (starttime.go)
	series []encSeries
	// By index into series: the next series with the same label hash (-1:
	// none), and the series that followed it in the batch. Scrapes repeat
	// their series in the same order and share their label sets, so the
	// successor guess plus a label comparison that stops at equal
	// pointers finds most samples' series without hashing their labels.
	same   []int32
	succ   []int32
	byHash map[uint64]int32 // label hash -> first index with it
	// The protobuf is snappy-compressed a block at a time as it is
	// written: pb holds less than a block plus one series, not the
	// whole request (a 10,000-sample replay batch is ~1.5 MB of it).
	pb      []byte
	block   []byte // snappy.Encode of one block
	out     []byte // room for the length header, then the compressed blocks
	written int    // protobuf bytes compressed so far
}

// encSeries is one series of the request being built.
type encSeries struct {
	ls     labels.Labels
	points []point
	hists  []nativeHist // a native histogram series has these, no points
}

type point struct {
	v float64
	t int64
}

// Encode returns the snappy-compressed body for b, a 1.0 WriteRequest
// unless the policy asked the encoder for 2.0.
func (e *Encoder) Encode(b *sample.Batch) ([]byte, error) {
	if e.msg == MessageV2 && e.native {
		e.buildNative(b)
	} else {
		e.nh.stats = NativeStats{}
		e.build(b)
	}
	e.out = append(e.out[:0], make([]byte, binary.MaxVarintLen32)...)
	e.written = 0
	if e.msg == MessageV2 {
		e.pb = e.flush(e.marshalV2(e.pb[:0], b.Metadata), true)
	} else {
		e.pb = e.flush(e.marshal(e.pb[:0], b.Metadata), true)
	}
	// The body starts with the length of the whole protobuf, as
	// snappy.Encode of it would; the blocks are what it would write next.
	var hdr [binary.MaxVarintLen32]byte // snappy bodies are under 4 GiB
	n := binary.PutUvarint(hdr[:], uint64(e.written))
	start := len(hdr) - n
	copy(e.out[start:], hdr[:n])
	return e.out[start:], nil
}

// snappyBlock is the block size of snappy's block format: Encode
// compresses its input in independent blocks of this size, so compressing
// the protobuf block by block gives the bytes Encode gives for all of it.
const snappyBlock = 65536

// flush compresses the whole blocks at the head of pb onto e.out, and
// with last the rest too; it returns what is left of pb.
func (e *Encoder) flush(pb []byte, last bool) []byte {
	for len(pb) >= snappyBlock || (last && len(pb) > 0) {
		n := min(len(pb), snappyBlock)
		e.block = snappy.Encode(e.block[:cap(e.block)], pb[:n])
		_, hdr := binary.Uvarint(e.block) // this block's own length
		e.out = append(e.out, e.block[hdr:]...)
		e.written += n
		pb = pb[:copy(pb, pb[n:])]
	}
	return pb
}

func (e *Encoder) build(b *sample.Batch) {
	if e.byHash == nil {
		e.byHash = make(map[uint64]int32)
	}
	clear(e.byHash)
	ss := e.series[:0]
	e.same, e.succ = e.same[:0], e.succ[:0]
	prev := int32(-1)
	for _, s := range b.Samples {
		i := int32(-1)
		if prev >= 0 {
			if g := e.succ[prev]; g >= 0 && labels.Equal(ss[g].ls, s.Labels) {
				i = g
			}
		}
		if i < 0 {
			h := s.Labels.Hash()
			first, ok := e.byHash[h]
			if !ok {
				first = -1
			}
			for j := first; j >= 0; j = e.same[j] {
				if labels.Equal(ss[j].ls, s.Labels) {
					i = j
					break
				}
			}
			if i < 0 {
				i = int32(len(ss))
				if cap(ss) > len(ss) {
					ss = ss[:i+1]
					ss[i].ls, ss[i].points, ss[i].hists = s.Labels, ss[i].points[:0], ss[i].hists[:0]
				} else {
					ss = append(ss, encSeries{ls: s.Labels})
				}
				e.same = append(e.same, first)
				e.succ = append(e.succ, -1)
				e.byHash[h] = i
			}
			if prev >= 0 {
				e.succ[prev] = i
			}
		}
		prev = i
		ss[i].points = append(ss[i].points, point{v: s.V, t: s.T})
	}
	for i := range ss {
		// Samples arrive in scrape order, so this is almost always a no-op
		// check; receivers reject out-of-order samples within a series.
		if p := ss[i].points; !slices.IsSortedFunc(p, cmpPoint) {
			slices.SortStableFunc(p, cmpPoint)
		}
	}
	// Label sets beyond this request are not kept alive.
	clear(ss[len(ss):cap(ss)])
	e.series = ss
}

func cmpPoint(a, b point) int {
	switch {
	case a.t < b.t:
		return -1
	case a.t > b.t:
		return 1
	}
	return 0
}

// Protobuf tags (field number << 3 | wire type) of the remote-write 1.0
// messages, and what prompb.WriteRequest's generated code leaves out: zero
// numbers and empty strings (proto3 defaults).
const (
	tagTimeseries = 1<<3 | 2 // WriteRequest.timeseries
	tagMetadata   = 3<<3 | 2 // WriteRequest.metadata
	tagLabel      = 1<<3 | 2 // TimeSeries.labels
	tagSample     = 2<<3 | 2 // TimeSeries.samples
	tagName       = 1<<3 | 2 // Label.name
	tagValue      = 2<<3 | 2 // Label.value
	tagSampleV    = 1<<3 | 1 // Sample.value, fixed64
	tagSampleT    = 2 << 3   // Sample.timestamp, varint (wire type 0)
	tagMetaType   = 1 << 3   // MetricMetadata.type, varint (wire type 0)
	tagMetaFamily = 2<<3 | 2 // MetricMetadata.metric_family_name
	tagMetaHelp   = 4<<3 | 2 // MetricMetadata.help
)

// marshal appends the WriteRequest of the built series and md to dst,
// compressing whole blocks as they fill.
func (e *Encoder) marshal(dst []byte, md []sample.Metadata) []byte {
	for i := range e.series {
		dst = e.flush(dst, false)
		s := &e.series[i]
		dst = appendTagLen(dst, tagTimeseries, seriesSize(s))
		s.ls.Range(func(l labels.Label) {
			dst = appendTagLen(dst, tagLabel, stringField(l.Name)+stringField(l.Value))
			dst = appendString(dst, tagName, l.Name)
			dst = appendString(dst, tagValue, l.Value)
		})
		for _, p := range s.points {
			dst = appendTagLen(dst, tagSample, pointSize(p))
			if p.v != 0 {
				dst = append(dst, tagSampleV)
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p.v))
			}
			if p.t != 0 {
				dst = append(dst, tagSampleT)
				dst = binary.AppendUvarint(dst, uint64(p.t))
			}
		}
	}
	for _, m := range md {
		dst = e.flush(dst, false)
		size := stringField(m.Family) + stringField(m.Help)
		if m.Type != 0 {
			size += 1 + uvarintLen(uint64(m.Type))
		}
		dst = appendTagLen(dst, tagMetadata, size)
		if m.Type != 0 {
			dst = append(dst, tagMetaType)
			dst = binary.AppendUvarint(dst, uint64(m.Type))
		}
		dst = appendString(dst, tagMetaFamily, m.Family)
		dst = appendString(dst, tagMetaHelp, m.Help)
	}
	return dst
}

// seriesSize is the encoded size of a TimeSeries' fields.
func seriesSize(s *encSeries) int {
	n := 0
	s.ls.Range(func(l labels.Label) {
		n += lenField(stringField(l.Name) + stringField(l.Value))
	})
	for _, p := range s.points {
		n += lenField(pointSize(p))
	}
	return n
}

func pointSize(p point) int {
	n := 0
	if p.v != 0 {
		n += 1 + 8
	}
	if p.t != 0 {
		n += 1 + uvarintLen(uint64(p.t))
	}
	return n
}

// stringField is the size of a string field, 0 if empty (left out).
func stringField(s string) int {
	if s == "" {
		return 0
	}
	return lenField(len(s))
}

// lenField is the size of a length-delimited field with a one-byte tag.
func lenField(n int) int { return 1 + uvarintLen(uint64(n)) + n }

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

func appendTagLen(dst []byte, tag byte, n int) []byte {
	return binary.AppendUvarint(append(dst, tag), uint64(n))
}

func appendString(dst []byte, tag byte, s string) []byte {
	if s == "" {
		return dst
	}
	return append(appendTagLen(dst, tag, len(s)), s...)
}
