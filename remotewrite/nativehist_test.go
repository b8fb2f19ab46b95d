package remotewrite

import (
	"bytes"
	"math"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/redwire/redwire/sample"
)

// latencySet is one command's classic latency histogram as
// sources/redis/latency.go emits it: buckets (le, cumulative count) in
// ascending le, +Inf, _sum, _count.
func latencySet(cmd string, t int64, buckets [][2]float64, sum, count float64) []sample.Sample {
	var out []sample.Sample
	ls := func(name string, kv ...string) labels.Labels {
		return labels.FromStrings(append([]string{"__name__", name, "instance", "redis:6379", "cmd", cmd}, kv...)...)
	}
	for _, b := range buckets {
		out = append(out, sample.Sample{Labels: ls(nativeFamily+"_bucket", "le", labels.FormatOpenMetricsFloat(b[0])), T: t, V: b[1]})
	}
	out = append(out,
		sample.Sample{Labels: ls(nativeFamily+"_bucket", "le", "+Inf"), T: t, V: count},
		sample.Sample{Labels: ls(nativeFamily + "_sum"), T: t, V: sum},
		sample.Sample{Labels: ls(nativeFamily + "_count"), T: t, V: count})
	return out
}

// filler is a sample that is no histogram's, to stand before and after
// the sets as the rest of a scrape does.
func filler(name string, t int64) sample.Sample {
	return sample.Sample{Labels: labels.FromStrings("__name__", name, "instance", "redis:6379"), T: t, V: 1}
}

// decodedV2 is a 2.0 request as the oracle reads it: every series by its
// labels, with its float samples, its histograms and its metadata type.
type decodedV2 struct {
	floats map[string][]writev2.Sample
	hists  map[string][]writev2.Histogram
	types  map[string]writev2.Metadata_MetricType
}

func decodeNative(t testing.TB, body []byte) decodedV2 {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		t.Fatalf("writev2.Request: %v", err)
	}
	d := decodedV2{map[string][]writev2.Sample{}, map[string][]writev2.Histogram{}, map[string]writev2.Metadata_MetricType{}}
	var sb labels.ScratchBuilder
	for _, ts := range req.Timeseries {
		ls, err := ts.ToLabels(&sb, req.Symbols)
		if err != nil {
			t.Fatal(err)
		}
		k := ls.String()
		if len(ts.Samples) > 0 && len(ts.Histograms) > 0 {
			t.Fatalf("%s has both samples and histograms", k)
		}
		if len(ts.Samples) > 0 {
			d.floats[k] = append(d.floats[k], ts.Samples...)
		}
		if len(ts.Histograms) > 0 {
			d.hists[k] = append(d.hists[k], ts.Histograms...)
		}
		d.types[k] = ts.Metadata.Type
	}
	return d
}

func (d decodedV2) nFloats() int {
	n := 0
	for _, s := range d.floats {
		n += len(s)
	}
	return n
}

func (d decodedV2) nHists() int {
	n := 0
	for _, s := range d.hists {
		n += len(s)
	}
	return n
}

// nativeEncoder is an Encoder as the policy sets it for a 2.0 endpoint
// with native_histograms.
func nativeEncoder() *Encoder { return &Encoder{msg: MessageV2, native: true} }

const nativeSeries = `{__name__="redis_commands_latencies_usec", cmd="get", instance="redis:6379"}`

// TestNativeHistogramConversion: one whole set becomes one native
// histogram, as the oracle (prompb's writev2, model/histogram) reads it,
// or stays classic when schema 0 cannot carry it exactly.
func TestNativeHistogramConversion(t *testing.T) {
	h := func(count uint64, sum float64, spans []histogram.Span, deltas ...int64) *histogram.Histogram {
		return &histogram.Histogram{Count: count, Sum: sum, PositiveSpans: spans, PositiveBuckets: deltas}
	}
	for _, tc := range []struct {
		name         string
		buckets      [][2]float64
		sum, count   float64
		want         *histogram.Histogram // nil: classic
		wantStats    NativeStats
		countAsFloat bool
	}{
		{name: "empty histogram", count: 0, sum: 0,
			want: h(0, 0, nil), wantStats: NativeStats{Converted: 1}},
		{name: "one bucket", buckets: [][2]float64{{4, 7}}, count: 7, sum: 20,
			want: h(7, 20, []histogram.Span{{Offset: 2, Length: 1}}, 7), wantStats: NativeStats{Converted: 1}},
		{name: "le=1 is bucket 0, (0.5, 1]", buckets: [][2]float64{{1, 3}}, count: 3, sum: 2,
			want: h(3, 2, []histogram.Span{{Offset: 0, Length: 1}}, 3), wantStats: NativeStats{Converted: 1}},
		{name: "counts cumulative to per bucket", buckets: [][2]float64{{1, 10}, {2, 15}, {4, 16}, {8, 20}}, count: 20, sum: 33,
			want: h(20, 33, []histogram.Span{{Offset: 0, Length: 4}}, 10, -5, -4, 3), wantStats: NativeStats{Converted: 1}},
		{name: "gaps between buckets", buckets: [][2]float64{{1, 2}, {16, 5}, {128, 6}}, count: 6, sum: 150,
			want: h(6, 150, []histogram.Span{{Offset: 0, Length: 1}, {Offset: 3, Length: 1}, {Offset: 2, Length: 1}}, 2, 1, -2), wantStats: NativeStats{Converted: 1}},
		{name: "empty buckets left out", buckets: [][2]float64{{1, 2}, {2, 2}, {4, 3}}, count: 3, sum: 5,
			want: h(3, 5, []histogram.Span{{Offset: 0, Length: 1}, {Offset: 1, Length: 1}}, 2, -1), wantStats: NativeStats{Converted: 1}},
		{name: "Redis' bounds 33, 66, 132 are 32, 64, 128", buckets: [][2]float64{{16, 1}, {33, 3}, {66, 4}, {132, 5}}, count: 5, sum: 200,
			want: h(5, 200, []histogram.Span{{Offset: 4, Length: 4}}, 1, 1, -1, 0), wantStats: NativeStats{Converted: 1}},
		{name: "+Inf only, observations somewhere: classic", count: 5, sum: 9,
			wantStats: NativeStats{Inexact: 1}},
		{name: "observations above the highest bound: classic", buckets: [][2]float64{{2, 3}}, count: 5, sum: 9,
			wantStats: NativeStats{Inexact: 1}},
		{name: "bound not a power of two: classic", buckets: [][2]float64{{3, 3}}, count: 3, sum: 9,
			wantStats: NativeStats{Inexact: 1}},
		{name: "two bounds on one power of two: classic", buckets: [][2]float64{{32, 3}, {33, 3}}, count: 3, sum: 9,
			wantStats: NativeStats{Inexact: 1}},
		{name: "counts not cumulative: classic", buckets: [][2]float64{{1, 3}, {2, 2}}, count: 3, sum: 9,
			wantStats: NativeStats{Inexact: 1}},
		{name: "fractional count: classic", buckets: [][2]float64{{1, 1.5}}, count: 1.5, sum: 9,
			wantStats: NativeStats{Inexact: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := latencySet("get", 1000, tc.buckets, tc.sum, tc.count)
			b := sample.Batch{Samples: append(append([]sample.Sample{filler("redis_up", 1000)}, set...), filler("redis_uptime_in_seconds", 1000))}
			enc := nativeEncoder()
			body, err := enc.Encode(&b)
			if err != nil {
				t.Fatal(err)
			}
			if st := enc.NativeStats(); st != tc.wantStats {
				t.Errorf("stats %+v, want %+v", st, tc.wantStats)
			}
			d := decodeNative(t, body)
			if tc.want == nil {
				if d.nHists() != 0 || d.nFloats() != b.Len() {
					t.Fatalf("%d histograms, %d of %d samples; want all classic", d.nHists(), d.nFloats(), b.Len())
				}
				return
			}
			if d.nFloats() != 2 || len(d.hists[nativeSeries]) != 1 {
				t.Fatalf("floats %v, histograms %v; want the 2 fillers and one histogram of %s", d.floats, d.hists, nativeSeries)
			}
			wh := d.hists[nativeSeries][0]
			if wh.IsFloatHistogram() {
				t.Fatal("a float histogram; want integer counts")
			}
			if d.types[nativeSeries] != writev2.Metadata_METRIC_TYPE_HISTOGRAM {
				t.Errorf("metadata type %v, want HISTOGRAM", d.types[nativeSeries])
			}
			got := wh.ToIntHistogram()
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if wh.Timestamp != 1000 || !got.Equals(tc.want) {
				t.Errorf("got %s at %d, want %s at 1000", got, wh.Timestamp, tc.want)
			}
			// Byte for byte what prompb writes for the same histogram,
			// without a start timestamp and with one.
			nh := &enc.series[len(enc.series)-1].hists[0]
			for _, st := range []int64{0, 1_700_000_000_000} {
				buf := appendHist(nil, nh, st)
				oracle := writev2.FromIntHistogram(0, 1000, tc.want)
				oracle.StartTimestamp = st
				want, err := oracle.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf, want) || len(buf) != histSize(nh, st) {
					t.Errorf("start %d: histogram bytes\n%x (size %d)\nwant prompb's\n%x", st, buf, histSize(nh, st), want)
				}
			}
		})
	}
}

// TestNativeHistogramsEverySetOfEveryCut: a batch boundary may cut two
// scrapes' sets anywhere. Whatever the cut, every sample of both parts
// arrives, as classic samples or folded into a native histogram; only the
// sets wholly inside a part, not at its start, go native; the others are
// counted as split.
func TestNativeHistogramsEverySetOfEveryCut(t *testing.T) {
	var all []sample.Sample
	for _, ts := range []int64{1000, 2000} {
		all = append(all, filler("redis_up", ts))
		all = append(all, latencySet("get", ts, [][2]float64{{1, 5}, {2, 8}, {8, 9}}, 30, 9)...)
		all = append(all, latencySet("set", ts, [][2]float64{{4, 2}}, 7, 2)...)
	}
	setLen := []int{6, 4} // get's and set's samples
	enc := nativeEncoder()
	for cut := 0; cut <= len(all); cut++ {
		totalSamples, native := 0, 0
		for _, part := range [][]sample.Sample{all[:cut], all[cut:]} {
			if len(part) == 0 {
				continue
			}
			b := sample.Batch{Samples: part}
			body, err := enc.Encode(&b)
			if err != nil {
				t.Fatal(err)
			}
			d := decodeNative(t, body)
			st := enc.NativeStats()
			folded := 0
			for k, hs := range d.hists {
				for _, h := range hs {
					if err := h.ToIntHistogram().Validate(); err != nil {
						t.Errorf("cut %d: %s: %v", cut, k, err)
					}
					switch h.GetCountInt() {
					case 9:
						folded += setLen[0]
					case 2:
						folded += setLen[1]
					default:
						t.Errorf("cut %d: %s count %d, neither set's", cut, k, h.GetCountInt())
					}
				}
			}
			if d.nFloats()+folded != len(part) {
				t.Errorf("cut %d: %d classic + %d folded of %d samples", cut, d.nFloats(), folded, len(part))
			}
			if st.Converted != d.nHists() {
				t.Errorf("cut %d: stats %+v, %d histograms sent", cut, st, d.nHists())
			}
			totalSamples += len(part)
			native += st.Converted
		}
		if totalSamples != len(all) {
			t.Fatalf("cut %d: %d of %d samples encoded", cut, totalSamples, len(all))
		}
		// Each scrape is a filler, get's set, set's set; a cut inside a
		// set or just before one leaves it classic.
		want := 4
		for _, start := range []int{1, 7, 12, 18} {
			n := setLen[0]
			if start == 7 || start == 18 {
				n = setLen[1]
			}
			if cut >= start && cut < start+n {
				want-- // cut inside, or at its start: its part starts with it
			}
		}
		if native != want {
			t.Errorf("cut %d: %d sets native, want %d", cut, native, want)
		}
	}
}

// TestNativeHistogramsScrapesInOneBatch: a batch of several scrapes sends
// each command's histograms as one series, in time order.
func TestNativeHistogramsScrapesInOneBatch(t *testing.T) {
	var b sample.Batch
	for _, ts := range []int64{3000, 1000, 2000} {
		b.Samples = append(b.Samples, filler("redis_up", ts))
		b.Samples = append(b.Samples, latencySet("get", ts, [][2]float64{{1, float64(ts / 1000)}}, 1, float64(ts/1000))...)
	}
	b.Metadata = []sample.Metadata{{Family: nativeFamily + "_bucket", Type: sample.Histogram, Help: "latency"}}
	enc := nativeEncoder()
	body, err := enc.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	d := decodeNative(t, body)
	hs := d.hists[nativeSeries]
	if len(d.hists) != 1 || len(hs) != 3 {
		t.Fatalf("histograms %v; want 3 of one series", d.hists)
	}
	for i, h := range hs {
		if h.Timestamp != int64(i+1)*1000 || h.GetCountInt() != uint64(i+1) {
			t.Errorf("histogram %d: count %d at %d, want %d at %d", i, h.GetCountInt(), h.Timestamp, i+1, (i+1)*1000)
		}
	}
}

// TestNativeHistogramsStale: a set of stale markers (the target went
// away) goes as a stale native histogram, sum StaleNaN, as Prometheus
// writes one; a set partly stale stays classic.
func TestNativeHistogramsStale(t *testing.T) {
	stale := math.Float64frombits(value.StaleNaN)
	set := latencySet("get", 1000, [][2]float64{{1, stale}, {2, stale}}, stale, stale)
	b := sample.Batch{Samples: append([]sample.Sample{filler("redis_up", 1000)}, set...)}
	enc := nativeEncoder()
	body, err := enc.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	d := decodeNative(t, body)
	hs := d.hists[nativeSeries]
	if len(hs) != 1 || !value.IsStaleNaN(hs[0].Sum) || hs[0].ToIntHistogram().Count != 0 {
		t.Fatalf("histograms %v; want one stale marker", d.hists)
	}

	set[len(set)-1].V = 3 // _count not stale
	b = sample.Batch{Samples: append([]sample.Sample{filler("redis_up", 1000)}, set...)}
	body, err = enc.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if d := decodeNative(t, body); d.nHists() != 0 || d.nFloats() != b.Len() || enc.NativeStats().Inexact != 1 {
		t.Fatalf("partly stale: %d histograms, %d of %d samples, stats %+v; want classic", d.nHists(), d.nFloats(), b.Len(), enc.NativeStats())
	}
}

// TestNativeHistogramsClassicUnlessAsked: classic sets go out as they
// are with native_histograms off, and in 1.0 with it on (after a fall
// back: 1.0 carries no native histograms here).
func TestNativeHistogramsClassicUnlessAsked(t *testing.T) {
	b := sample.Batch{Samples: append([]sample.Sample{filler("redis_up", 1000)}, latencySet("get", 1000, [][2]float64{{1, 2}}, 1, 2)...)}
	off := &Encoder{msg: MessageV2}
	body, err := off.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if d := decodeNative(t, body); d.nHists() != 0 || d.nFloats() != b.Len() {
		t.Errorf("2.0 without native_histograms: %d histograms, %d of %d samples", d.nHists(), d.nFloats(), b.Len())
	}
	v1 := &Encoder{msg: MessageV1, native: true}
	body, err = v1.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ts := range req.Timeseries {
		n += len(ts.Samples)
		if len(ts.Histograms) > 0 {
			t.Errorf("1.0: histograms in %v", ts.Labels)
		}
	}
	if n != b.Len() {
		t.Errorf("1.0: %d of %d samples", n, b.Len())
	}
}

// TestProtocolNativeHistograms: the protocol asks for native histograms
// only while it speaks 2.0.
func TestProtocolNativeHistograms(t *testing.T) {
	p := NewProtocol(MessageV2).WithNativeHistograms(true)
	if !p.NativeHistograms() {
		t.Fatal("2.0 with native_histograms: off")
	}
	p.fallBack()
	if p.NativeHistograms() {
		t.Error("after the fall back to 1.0: still on")
	}
	if NewProtocol(MessageV1).WithNativeHistograms(true).NativeHistograms() || NewProtocol(MessageV2).NativeHistograms() {
		t.Error("on with 1.0, or without native_histograms")
	}
}

// TestEncoderUse: an encoder told to write another message, or to turn
// native histograms on or off, says a body it encoded before is stale;
// native histograms never go with 1.0.
func TestEncoderUse(t *testing.T) {
	var e Encoder
	if e.use(MessageV1, false) {
		t.Error("zero Encoder to 1.0: changed")
	}
	if !e.use(MessageV2, true) || !e.native {
		t.Error("to 2.0 with native histograms: unchanged")
	}
	if e.use(MessageV2, true) {
		t.Error("again: changed")
	}
	if !e.use(MessageV1, true) || e.native {
		t.Errorf("fall back to 1.0: native %v", e.native)
	}
}
