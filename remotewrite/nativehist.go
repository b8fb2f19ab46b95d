package remotewrite

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/redwire/redwire/sample"
)

// Native histograms (native_histograms on a 2.0 endpoint): the encoder
// sends each command's LATENCY HISTOGRAM as one native histogram series
// instead of its classic set. The buffer keeps classic samples; the
// conversion happens here, at encoding time, from the classic samples of
// one scrape that the batch holds: same family, same labels but le and
// __name__, same timestamp (a "set").
//
// Schema 0 is the fit: native bucket i holds (2^(i-1), 2^i], upper bound
// included as a classic le is, and Redis' buckets double. Not exactly:
// Redis reports hdr_histogram's edges in ns divided by 1000, so its bounds
// read 1, 2, 4, 8, 16, 33, 66, 132, … µs, up to 3.2% above 2^k. A bound is
// taken for the power of two nearest it (maxBoundSkew); the bucket's
// count is kept, so a quantile moves by as much at most. The zero
// threshold is 0: Redis' lowest bucket, le=1, covers every call under a
// microsecond, and becomes bucket 0, (0.5, 1]. Empty buckets (Redis leaves
// them out anyway) are not sent; spans skip them.
//
// A set goes native only if it is whole, and exact:
//
//   - Whole: its samples lie together in the batch, it has its +Inf
//     bucket, _sum and _count, and it does not start the batch. A batch
//     boundary (max_samples_per_send, a 413 half, the rest after a
//     failure) may cut a set anywhere. Sources emit a set's buckets in
//     ascending le, then +Inf, _sum, _count (sources/redis/latency.go), so
//     a set cut at the batch's end lacks one of these; one cut at its
//     start may look whole (Redis omits empty buckets, so a missing low
//     bucket cannot be told), which is why a set that starts the batch is
//     taken as cut. A cut set goes out classic, each part with its batch:
//     nothing is lost, the receiver has that scrape as classic samples.
//     NativeStats.Split counts them.
//   - Exact: integer counts, cumulative, +Inf equal to _count and to the
//     highest finite bucket (schema 0 has no bucket for "above the
//     highest bound"), bounds within maxBoundSkew of distinct powers of
//     two, all stale or none. Otherwise classic, and NativeStats.Inexact.
//
// A set whose samples are all stale markers (the target went away) goes
// as a stale native histogram, as Prometheus writes one: sum StaleNaN,
// count 0.
//
// The native series is the family's name with the set's labels less le;
// its metadata says HISTOGRAM whether or not the batch carries the
// family's.

// nativeFamily is the classic histogram family sent as native histograms.
// Only it: redis_slowlog_duration_seconds' bounds are not powers of two,
// and agent self-metrics go classic as Prometheus' client exposes them.
const nativeFamily = "redis_commands_latencies_usec"

// maxBoundSkew is how far, in log2, a classic bound may be from the power
// of two it is taken for: Redis' lie within 0.045 (33 for 32).
const maxBoundSkew = 0.1

// maxCount is the largest count sent as an integer: float64 holds every
// integer up to it exactly.
const maxCount = 1 << 53

// NativeStats says what the latest Encode did with the classic histogram
// sets of its batch (zero unless it sent native histograms). A retried
// batch is encoded, and counted, again.
type NativeStats struct {
	// Converted sets went as native histograms.
	Converted int
	// Split sets were cut by the batch's boundary and went classic.
	Split int
	// Inexact sets were whole, but schema 0 could not carry them exactly
	// (see nativehist.go), and went classic.
	Inexact int
}

// NativeStats is what the latest Encode did with histogram sets.
func (e *Encoder) NativeStats() NativeStats { return e.nh.stats }

// classicBucket is one _bucket sample: its bound and cumulative count.
type classicBucket struct{ le, n float64 }

// bucketSpan is a BucketSpan: offset from the end of the span before (or
// the first bucket's index), and the buckets it covers.
type bucketSpan struct {
	offset int32
	length uint32
}

// nativeHist is one integer native histogram of schema 0, zero threshold
// 0 and no negative buckets. spans and deltas are slices of the encoder's
// arenas.
type nativeHist struct {
	t      int64
	count  uint64
	sum    float64
	spans  []bucketSpan
	deltas []int64 // each bucket's count less the one before's
}

// toNative converts one whole classic set (its buckets, +Inf included, in
// any order; it sorts them) into a native histogram, appending its spans
// and deltas to those arenas. why is empty if it did; else it says why
// the set must go classic.
func toNative(bs []classicBucket, count, sum float64, spans []bucketSpan, deltas []int64) (h nativeHist, _ []bucketSpan, _ []int64, why string) {
	stale := 0
	for _, b := range bs {
		if value.IsStaleNaN(b.n) {
			stale++
		}
	}
	if value.IsStaleNaN(count) {
		stale++
	}
	if value.IsStaleNaN(sum) {
		stale++
	}
	switch {
	case stale == len(bs)+2:
		return nativeHist{sum: math.Float64frombits(value.StaleNaN)}, spans, deltas, ""
	case stale > 0:
		return h, spans, deltas, "partly stale"
	case !wholeCount(count):
		return h, spans, deltas, "_count not a whole number"
	case math.IsNaN(sum):
		return h, spans, deltas, "_sum NaN"
	}
	slices.SortFunc(bs, func(a, b classicBucket) int { return cmp.Compare(a.le, b.le) })
	s0, d0 := len(spans), len(deltas)
	fail := func(why string) (nativeHist, []bucketSpan, []int64, string) {
		return nativeHist{}, spans[:s0], deltas[:d0], why
	}
	var (
		cum     float64                 // cumulative count so far
		last    int32   = math.MinInt32 // index of the latest bound
		emitted int32   = math.MinInt32 // index of the latest bucket sent
		prevN   int64                   // its count
		inf     = -1.0
	)
	for _, b := range bs {
		switch {
		case inf >= 0:
			return fail("two +Inf buckets")
		case !wholeCount(b.n):
			return fail("bucket count not a whole number")
		case b.n < cum:
			return fail("bucket counts not cumulative")
		case math.IsInf(b.le, 1):
			inf = b.n
			continue
		case !(b.le > 0):
			return fail("bound " + strconv.FormatFloat(b.le, 'g', -1, 64) + " not positive")
		}
		lg := math.Log2(b.le)
		k := math.Round(lg)
		if math.Abs(lg-k) > maxBoundSkew || k < math.MinInt16 || k > math.MaxInt16 {
			return fail("bound " + strconv.FormatFloat(b.le, 'g', -1, 64) + " not a power of two")
		}
		idx := int32(k)
		if idx <= last {
			return fail("two bounds on one power of two")
		}
		last = idx
		n := int64(b.n - cum)
		cum = b.n
		if n == 0 {
			continue
		}
		if emitted != math.MinInt32 && idx == emitted+1 {
			spans[len(spans)-1].length++
		} else {
			off := idx
			if emitted != math.MinInt32 {
				off = idx - emitted - 1
			}
			spans = append(spans, bucketSpan{offset: off, length: 1})
		}
		deltas = append(deltas, n-prevN)
		emitted, prevN = idx, n
	}
	switch {
	case inf < 0:
		return fail("no +Inf bucket")
	case inf != count:
		return fail("+Inf bucket and _count differ")
	case cum != count:
		return fail("observations above the highest bound")
	}
	return nativeHist{
		count:  uint64(count),
		sum:    sum,
		spans:  spans[s0:len(spans):len(spans)],
		deltas: deltas[d0:len(deltas):len(deltas)],
	}, spans, deltas, ""
}

func wholeCount(n float64) bool { return n >= 0 && n <= maxCount && n == math.Trunc(n) }

// nativeState is what the native conversion keeps between requests, for
// reuse.
type nativeState struct {
	stats  NativeStats
	index  map[setKey]int
	sets   []classicSet
	buf    []byte
	rest   []sample.Sample // the batch less the converted sets
	spans  []bucketSpan
	deltas []int64
	series map[uint64][]int // native series' hash -> their index in Encoder.series
	// names keeps the native series' label sets from request to request,
	// by their sets' hash: a scrape repeats them. It is emptied when it
	// holds more than nameCacheFactor times a request's, which bounds it.
	names map[uint64]labels.Labels
	done  []convertedSet
}

// convertedSet is a set of nativeState.sets and its native histogram.
type convertedSet struct {
	set  int
	hist nativeHist
}

const nameCacheFactor = 4

// setKey finds a set: the hash of its labels less __name__ and le, and its
// timestamp.
type setKey struct {
	hash uint64
	t    int64
}

// classicSet is what a batch holds of one set.
type classicSet struct {
	key      setKey
	lo, hi   int // its first and last sample in the batch
	n        int // its samples
	bucketAt int // one of its _bucket samples, -1: none
	buckets  []classicBucket
	sum      float64
	count    float64
	hasSum   bool
	hasCount bool
	bad      bool // a sample twice, an le not a number, a hash collision
}

// setPart is which series of a classic histogram a name is.
type setPart int

const (
	notInSet setPart = iota
	partBucket
	partSum
	partCount
)

func partOf(name string) setPart {
	rest, ok := strings.CutPrefix(name, nativeFamily)
	if !ok {
		return notInSet
	}
	switch rest {
	case "_bucket":
		return partBucket
	case "_sum":
		return partSum
	case "_count":
		return partCount
	}
	return notInSet
}

// buildNative is build for a request with native histograms: the sets of
// b that are whole and exact become native series, after the others.
func (e *Encoder) buildNative(b *sample.Batch) {
	nh := &e.nh
	nh.stats = NativeStats{}
	if nh.index == nil {
		nh.index, nh.series = map[setKey]int{}, map[uint64][]int{}
	}
	clear(nh.index)
	clear(nh.series)
	for i := range nh.sets {
		nh.sets[i].buckets = nh.sets[i].buckets[:0]
	}
	nh.sets = nh.sets[:0]
	for i, s := range b.Samples {
		part := partOf(s.Labels.Get(model.MetricNameLabel))
		if part == notInSet {
			continue
		}
		var h uint64
		h, nh.buf = s.Labels.HashWithoutLabels(nh.buf, model.BucketLabel)
		k := setKey{h, s.T}
		j, ok := nh.index[k]
		if !ok {
			j = len(nh.sets)
			if cap(nh.sets) > j {
				nh.sets = nh.sets[:j+1]
				bs := nh.sets[j].buckets[:0]
				nh.sets[j] = classicSet{buckets: bs}
			} else {
				nh.sets = append(nh.sets, classicSet{})
			}
			st := &nh.sets[j]
			st.key, st.lo, st.bucketAt = k, i, -1
			nh.index[k] = j
		}
		st := &nh.sets[j]
		if ok && !sameSet(b.Samples[st.lo].Labels, s.Labels) {
			st.bad = true // a hash collision: leave both classic
		}
		st.hi, st.n = i, st.n+1
		switch part {
		case partBucket:
			le, err := strconv.ParseFloat(s.Labels.Get(model.BucketLabel), 64)
			if err != nil {
				st.bad = true
			}
			st.buckets = append(st.buckets, classicBucket{le: le, n: s.V})
			if st.bucketAt < 0 {
				st.bucketAt = i
			}
		case partSum:
			st.bad = st.bad || st.hasSum
			st.sum, st.hasSum = s.V, true
		case partCount:
			st.bad = st.bad || st.hasCount
			st.count, st.hasCount = s.V, true
		}
	}
	if len(nh.sets) == 0 {
		e.build(b)
		return
	}

	// Convert; a converted set's samples are left out of what build sees.
	nh.spans, nh.deltas = nh.spans[:0], nh.deltas[:0]
	done := nh.done[:0]
	for j := range nh.sets {
		st := &nh.sets[j]
		if st.bad || st.lo == 0 || st.hi-st.lo+1 != st.n || !st.hasSum || !st.hasCount || !hasInf(st.buckets) {
			nh.stats.Split++
			continue
		}
		var h nativeHist
		var why string
		h, nh.spans, nh.deltas, why = toNative(st.buckets, st.count, st.sum, nh.spans, nh.deltas)
		if why != "" {
			nh.stats.Inexact++
			continue
		}
		h.t = st.key.t
		done = append(done, convertedSet{j, h})
	}
	nh.stats.Converted = len(done)
	nh.done = done
	if len(done) == 0 {
		e.build(b)
		return
	}
	// Sets found in batch order, so their ranges ascend.
	rest := nh.rest[:0]
	next := 0
	for _, c := range done {
		st := &nh.sets[c.set]
		rest = append(rest, b.Samples[next:st.lo]...)
		next = st.hi + 1
	}
	rest = append(rest, b.Samples[next:]...)
	e.build(&sample.Batch{Samples: rest})
	clear(rest) // label sets are not kept alive past the request
	nh.rest = rest[:0]

	for _, c := range done {
		st := &nh.sets[c.set]
		ls := nh.nativeLabels(st.key.hash, b.Samples[st.bucketAt].Labels)
		i := -1
		for _, k := range nh.series[st.key.hash] {
			if labels.Equal(e.series[k].ls, ls) {
				i = k
				break
			}
		}
		if i < 0 {
			i = len(e.series)
			e.series = append(e.series, encSeries{ls: ls})
			nh.series[st.key.hash] = append(nh.series[st.key.hash], i)
		}
		e.series[i].hists = append(e.series[i].hists, c.hist)
	}
	if len(nh.names) > nameCacheFactor*len(done) {
		clear(nh.names)
	}
	for i := range e.series {
		if hs := e.series[i].hists; !slices.IsSortedFunc(hs, cmpHist) {
			slices.SortStableFunc(hs, cmpHist)
		}
	}
}

// nativeLabels is the native series' label set of the set whose hash is
// h and one of whose buckets is labelled bucket: bucket's less le, named
// after the family.
func (nh *nativeState) nativeLabels(h uint64, bucket labels.Labels) labels.Labels {
	if ls, ok := nh.names[h]; ok && sameSet(ls, bucket) {
		return ls
	}
	ls := labels.NewBuilder(bucket).Del(model.BucketLabel).Set(model.MetricNameLabel, nativeFamily).Labels()
	if nh.names == nil {
		nh.names = map[uint64]labels.Labels{}
	}
	nh.names[h] = ls
	return ls
}

func cmpHist(a, b nativeHist) int { return cmp.Compare(a.t, b.t) }

func hasInf(bs []classicBucket) bool {
	return slices.ContainsFunc(bs, func(b classicBucket) bool { return math.IsInf(b.le, 1) })
}

// sameSet reports whether a and b are equal but for __name__ and le.
func sameSet(a, b labels.Labels) bool {
	na, nb := 0, 0
	eq := true
	a.Range(func(l labels.Label) {
		if l.Name == model.MetricNameLabel || l.Name == model.BucketLabel {
			return
		}
		na++
		eq = eq && b.Get(l.Name) == l.Value
	})
	b.Range(func(l labels.Label) {
		if l.Name != model.MetricNameLabel && l.Name != model.BucketLabel {
			nb++
		}
	})
	return eq && na == nb
}

// Protobuf tags of a v2 Histogram's fields that redwire writes, and of
// its BucketSpan's. Both oneofs, count and zero_count, are written as
// their integer field, even 0, as prompb writes a set oneof; the other
// fields are left out when 0 (schema 0 and zero threshold 0 always are).
const (
	tagHistCountInt     = 1 << 3    // count_int, varint
	tagHistSum          = 3<<3 | 1  // sum, fixed64
	tagHistZeroCountInt = 6 << 3    // zero_count_int, varint
	tagHistPosSpans     = 11<<3 | 2 // positive_spans
	tagHistPosDeltas    = 12<<3 | 2 // positive_deltas, packed sint64
	tagHistTimestamp    = 15 << 3   // timestamp, varint
	tagHistST           = 17 << 3   // start_timestamp, varint (a two-byte tag)
	tagSpanOffset       = 1 << 3    // BucketSpan.offset, sint32
	tagSpanLength       = 2 << 3    // BucketSpan.length, varint
)

func zigzag(x int64) uint64 { return uint64(x<<1) ^ uint64(x>>63) }

// histSize is the encoded size of a Histogram's fields, with start
// timestamp st (0: none; starttime.go).
func histSize(h *nativeHist, st int64) int {
	n := 1 + uvarintLen(h.count) + 1 + 1 // count_int, zero_count_int 0
	if h.sum != 0 {
		n += 1 + 8
	}
	for _, s := range h.spans {
		n += lenField(spanSize(s))
	}
	if d := deltasSize(h.deltas); d > 0 {
		n += lenField(d)
	}
	if h.t != 0 {
		n += 1 + uvarintLen(uint64(h.t))
	}
	if st != 0 {
		n += uvarintLen(tagHistST) + uvarintLen(uint64(st))
	}
	return n
}

func spanSize(s bucketSpan) int {
	n := 0
	if s.offset != 0 {
		n += 1 + uvarintLen(zigzag(int64(s.offset)))
	}
	if s.length != 0 {
		n += 1 + uvarintLen(uint64(s.length))
	}
	return n
}

func deltasSize(ds []int64) int {
	n := 0
	for _, d := range ds {
		n += uvarintLen(zigzag(d))
	}
	return n
}

// appendHist appends a Histogram's fields, in field order, with start
// timestamp st (0: none).
func appendHist(dst []byte, h *nativeHist, st int64) []byte {
	dst = binary.AppendUvarint(append(dst, tagHistCountInt), h.count)
	if h.sum != 0 {
		dst = binary.LittleEndian.AppendUint64(append(dst, tagHistSum), math.Float64bits(h.sum))
	}
	dst = append(dst, tagHistZeroCountInt, 0)
	for _, s := range h.spans {
		dst = appendTagLen(dst, tagHistPosSpans, spanSize(s))
		if s.offset != 0 {
			dst = binary.AppendUvarint(append(dst, tagSpanOffset), zigzag(int64(s.offset)))
		}
		if s.length != 0 {
			dst = binary.AppendUvarint(append(dst, tagSpanLength), uint64(s.length))
		}
	}
	if d := deltasSize(h.deltas); d > 0 {
		dst = appendTagLen(dst, tagHistPosDeltas, d)
		for _, d := range h.deltas {
			dst = binary.AppendUvarint(dst, zigzag(d))
		}
	}
	if h.t != 0 {
		dst = binary.AppendUvarint(append(dst, tagHistTimestamp), uint64(h.t))
	}
	if st != 0 {
		dst = binary.AppendUvarint(binary.AppendUvarint(dst, tagHistST), uint64(st))
	}
	return dst
}

// use makes e write msg, with native histograms if native and msg is 2.0.
// It reports whether that changes what e writes: a body e encoded before
// is then in another form, and must be encoded again. It is what
// Policy.send is to call where it now sets enc.msg, with
// p.Protocol.NativeHistograms().
func (e *Encoder) use(msg Message, native bool) bool {
	native = native && msg == MessageV2
	changed := e.message() != msg || e.native != native
	e.msg, e.native = msg, native
	return changed
}
