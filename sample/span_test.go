package sample

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

func TestAddSpansOneSpanPerTarget(t *testing.T) {
	at := func(target string, ts int64) Sample {
		return Sample{Labels: labels.FromStrings("__name__", "redis_up", TargetLabel, target), T: ts}
	}
	spans := AddSpans(nil, []Sample{at("a", 20), at("a", 10), at("b", 15)})
	spans = AddSpans(spans, []Sample{at("b", 30), at("a", 5)})
	want := []Span{{Target: "a", From: 5, To: 20, Samples: 3}, {Target: "b", From: 15, To: 30, Samples: 2}}
	if fmt.Sprint(spans) != fmt.Sprint(want) {
		t.Fatalf("spans = %v, want %v", spans, want)
	}
}

func TestAddSpansManyTargets(t *testing.T) {
	var samples []Sample
	for round := range 3 {
		for i := range 50 {
			samples = append(samples, Sample{Labels: labels.FromStrings(TargetLabel, fmt.Sprint("t", i)), T: int64(round*100 + i)})
		}
	}
	spans := AddSpans(nil, samples[:20])
	spans = AddSpans(spans, samples[20:])
	if len(spans) != 50 {
		t.Fatalf("%d spans, want 50", len(spans))
	}
	for i, sp := range spans {
		if sp.Target != fmt.Sprint("t", i) || sp.From != int64(i) || sp.To != int64(200+i) || sp.Samples != 3 {
			t.Fatalf("span %d = %+v", i, sp)
		}
	}
}
