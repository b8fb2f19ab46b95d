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
	req prompb.WriteRequest
	// By index into req.Timeseries: each series' label set, the next
	// series with the same label hash (-1: none), and the series that
	// followed it in the batch. Scrapes repeat their series in the same
	// order and share their label sets, so the successor guess plus a
	// label comparison that stops at equal pointers finds most samples'
	// series without hashing their labels.
	keys   []labels.Labels
	same   []int32
	succ   []int32
	byHash map[uint64]int32 // label hash -> first index with it
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
	if e.byHash == nil {
		e.byHash = make(map[uint64]int32)
	}
	clear(e.byHash)
	e.keys, e.same, e.succ = e.keys[:0], e.same[:0], e.succ[:0]
	ts := e.req.Timeseries[:0]
	prev := int32(-1)
	for _, s := range b.Samples {
		i := int32(-1)
		if prev >= 0 {
			if g := e.succ[prev]; g >= 0 && labels.Equal(e.keys[g], s.Labels) {
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
				if labels.Equal(e.keys[j], s.Labels) {
					i = j
					break
				}
			}
			if i < 0 {
				i = int32(len(ts))
				if cap(ts) > len(ts) {
					ts = ts[:i+1]
					ts[i].Labels = prompb.FromLabels(s.Labels, ts[i].Labels[:0])
					ts[i].Samples = ts[i].Samples[:0]
				} else {
					ts = append(ts, prompb.TimeSeries{Labels: prompb.FromLabels(s.Labels, nil)})
				}
				e.keys = append(e.keys, s.Labels)
				e.same = append(e.same, first)
				e.succ = append(e.succ, -1)
				e.byHash[h] = i
			}
			if prev >= 0 {
				e.succ[prev] = i
			}
		}
		prev = i
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

func cmpSample(a, b prompb.Sample) int {
	switch {
	case a.Timestamp < b.Timestamp:
		return -1
	case a.Timestamp > b.Timestamp:
		return 1
	}
	return 0
}
