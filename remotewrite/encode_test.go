package remotewrite

import (
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/redwire/redwire/sample"
)

func TestEncodeGroupsSeriesInTimeOrder(t *testing.T) {
	a := labels.FromStrings("__name__", "redis_up", "instance", "a")
	b := labels.FromStrings("__name__", "redis_up", "instance", "b")
	batch := sample.Batch{
		Samples: []sample.Sample{
			{Labels: a, T: 2000, V: 1}, {Labels: b, T: 2000, V: 0},
			{Labels: a, T: 1000, V: 1}, {Labels: b, T: 3000, V: 1},
		},
		Metadata: []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "up"}},
	}
	var e Encoder
	body, err := e.Encode(&batch)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatalf("body is not snappy block encoded: %v", err)
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	if len(req.Timeseries) != 2 {
		t.Fatalf("%d series, want 2", len(req.Timeseries))
	}
	for _, ts := range req.Timeseries {
		if ts.Labels[0].Name != "__name__" || ts.Labels[1].Name != "instance" {
			t.Errorf("labels not sorted / __name__ missing: %v", ts.Labels)
		}
		if len(ts.Samples) != 2 || ts.Samples[0].Timestamp >= ts.Samples[1].Timestamp {
			t.Errorf("samples not in time order: %v", ts.Samples)
		}
	}
	if len(req.Metadata) != 1 || req.Metadata[0].Type != prompb.MetricMetadata_GAUGE || req.Metadata[0].MetricFamilyName != "redis_up" {
		t.Errorf("metadata = %+v", req.Metadata)
	}

	// Buffers are reused: a second, smaller batch must not carry leftovers.
	small := sample.Batch{Samples: batch.Samples[:1]}
	body, _ = e.Encode(&small)
	raw, _ = snappy.Decode(nil, body)
	req = prompb.WriteRequest{}
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	if len(req.Timeseries) != 1 || len(req.Timeseries[0].Samples) != 1 || len(req.Metadata) != 0 {
		t.Fatalf("reused encoder leaked state: %+v", req)
	}
}
