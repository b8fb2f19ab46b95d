package remotewrite

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// TestRW2PartialWriteWithPrometheus3: a real Prometheus 3.x refuses the
// out-of-order samples of a 2.0 request and says how many of the others
// it wrote; the policy refuses the part, and Refused counts only the
// out-of-order ones.
func TestRW2PartialWriteWithPrometheus3(t *testing.T) {
	prom := harness.StartPrometheus3(t)
	u, err := url.Parse(prom.WriteURL())
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(NewEndpointConfig(u), "test")
	if err != nil {
		t.Fatal(err)
	}
	p := testPolicy
	p.Protocol = NewProtocol(MessageV2)
	now := time.Now().UnixMilli()
	ls := func(i int) labels.Labels {
		return labels.FromStrings("__name__", "rw2_partial", "i", string(rune('a'+i)))
	}
	var first, second sample.Batch
	for i := range 4 {
		first.Samples = append(first.Samples, sample.Sample{Labels: ls(i), T: now, V: 1})
	}
	for i := range 10 {
		// Series a to d go back in time: out of order. e to j are new.
		second.Samples = append(second.Samples, sample.Sample{Labels: ls(i), T: now - 60_000, V: 2})
	}
	var r fallbackRecorder
	var enc Encoder
	ctx := context.Background()
	if err := p.Deliver(ctx, c, &enc, first, nil, &r); err != nil {
		t.Fatal(err)
	}
	if err := p.Deliver(ctx, c, &enc, second, nil, &r); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.taken, []int{4}) || !slices.Equal(r.refused, []int{10}) || len(r.fellBack) != 0 {
		t.Fatalf("taken %v refused %v fall backs %v; want 4 taken, then the 10 refused, no fall back", r.taken, r.refused, r.fellBack)
	}
	if n := Refused(10, r.refusedErrs[0]); n != 4 {
		t.Errorf("Refused = %d of 10 (%v), want the 4 out of order", n, r.refusedErrs[0])
	}
	harness.WaitFor(t, 30*time.Second, "the 6 new series in Prometheus", func() (bool, error) {
		vec, err := prom.Query(ctx, `count(rw2_partial == 2)`)
		if err != nil || len(vec) != 1 {
			return false, err
		}
		return vec[0].Value == 6, nil
	})
}
