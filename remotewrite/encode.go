package remotewrite

import (
	"fmt"
	"slices"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/redwire/redwire/sample"
)

// Encoder turns a batch into a remote-write 1.0 request body: a
// prompb.WriteRequest with one TimeSeries per label set (labels sorted,
// __name__ included, samples in time order) plus the families' metadata,
// protobuf-marshalled and snappy block-encoded.
//
// An Encoder reuses its buffers between calls, so the body it returns is
// valid only until the next Encode. It is not safe for concurrent use.
type Encoder struct {
	req    prompb.WriteRequest
	series map[uint64][]int // label hash -> indexes into req.Timeseries
	pb     []byte
	out    []byte
}

// Encode returns the snappy-compressed body for b.
func (e *Encoder) Encode(b *sample.Batch) ([]byte, error) {
	e.build(b)
	size := e.req.Size()
	if cap(e.pb) < size {
		e.pb = make([]byte, size)
	}
	e.pb = e.pb[:size]
	n, err := e.req.MarshalToSizedBuffer(e.pb)
	if err != nil {
		return nil, fmt.Errorf("marshal write request: %w", err)
	}
	e.pb = e.pb[:n]
	e.out = snappy.Encode(e.out[:cap(e.out)], e.pb)
	return e.out, nil
}

// WriteRequest returns the request Encode would marshal for b. It shares
// the encoder's buffers; meant for tests and tools.
func (e *Encoder) WriteRequest(b *sample.Batch) *prompb.WriteRequest {
	e.build(b)
	return &e.req
}

func (e *Encoder) build(b *sample.Batch) {
	if e.series == nil {
		e.series = make(map[uint64][]int)
	}
	clear(e.series)
	ts := e.req.Timeseries[:0]
	for _, s := range b.Samples {
		h := s.Labels.Hash()
		i := e.find(ts, h, s.Labels)
		if i < 0 {
			i = len(ts)
			if cap(ts) > i {
				ts = ts[:i+1]
				ts[i].Labels = prompb.FromLabels(s.Labels, ts[i].Labels[:0])
				ts[i].Samples = ts[i].Samples[:0]
			} else {
				ts = append(ts, prompb.TimeSeries{Labels: prompb.FromLabels(s.Labels, nil)})
			}
			e.series[h] = append(e.series[h], i)
		}
		ts[i].Samples = append(ts[i].Samples, prompb.Sample{Value: s.V, Timestamp: s.T})
	}
	for i := range ts {
		// Samples arrive in scrape order, so this is almost always a no-op
		// check; receivers reject out-of-order samples within a series.
		smp := ts[i].Samples
		if !slices.IsSortedFunc(smp, cmpSample) {
			slices.SortStableFunc(smp, cmpSample)
		}
	}
	e.req.Timeseries = ts

	md := e.req.Metadata[:0]
	for _, m := range b.Metadata {
		md = append(md, prompb.MetricMetadata{Type: m.Type, MetricFamilyName: m.Family, Help: m.Help})
	}
	e.req.Metadata = md
}

func (e *Encoder) find(ts []prompb.TimeSeries, h uint64, ls labels.Labels) int {
	for _, i := range e.series[h] {
		if labelsEqual(ts[i].Labels, ls) {
			return i
		}
	}
	return -1
}

func labelsEqual(pl []prompb.Label, ls labels.Labels) bool {
	if len(pl) != ls.Len() {
		return false
	}
	i, eq := 0, true
	ls.Range(func(l labels.Label) {
		if eq && (pl[i].Name != l.Name || pl[i].Value != l.Value) {
			eq = false
		}
		i++
	})
	return eq
}

func cmpSample(a, b prompb.Sample) int {
	switch {
	case a.Timestamp < b.Timestamp:
		return -1
	case a.Timestamp > b.Timestamp:
		return 1
	}
	return 0
}
