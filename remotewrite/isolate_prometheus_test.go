package remotewrite

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

func TestIsolationPrometheus(t *testing.T) {
	t.Parallel()
	checkIsolationWith(t, harness.StartPrometheus(t))
}

func TestIsolationPrometheus3(t *testing.T) {
	t.Parallel()
	checkIsolationWith(t, harness.StartPrometheus3(t))
}

// checkIsolationWith proves against a real Prometheus that it rolls a
// refused request back, and that Deliver isolates the refusal: the fresh
// samples of a batch are stored, the old ones answered refused with
// CauseAge. The head's newest sample is set 5 min ahead (another series;
// remote write takes up to 10 min ahead), so its lowest valid time is
// that less half its 2 h block: now-55min. The batch holds scrapes at
// now-2h and now-90min (out of bounds), and now-20min, now-10min, now-1min.
func checkIsolationWith(t *testing.T, p *harness.Prometheus) {
	now := time.Now()
	if err := sendSample(t, p.WriteURL(), []prompb.Label{{Name: "__name__", Value: "redwire_head"}}, now.Add(5*time.Minute), 1); err != nil {
		t.Fatalf("move the head ahead: %v", err)
	}
	const series = 12
	var b sample.Batch
	for _, age := range []time.Duration{2 * time.Hour, 90 * time.Minute, 20 * time.Minute, 10 * time.Minute, time.Minute} {
		for i := range series {
			b.Samples = append(b.Samples, sample.Sample{
				Labels: labels.FromStrings("__name__", "redwire_isolated", "i", fmt.Sprint(i)),
				T:      now.Add(-age).UnixMilli(), V: float64(i),
			})
		}
	}
	b.Metadata = []sample.Metadata{{Family: "redwire_isolated", Type: sample.Gauge, Help: "isolated"}}

	// A request of old and fresh together: refused whole, nothing stored.
	u, err := url.Parse(p.WriteURL())
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(NewEndpointConfig(u), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var enc Encoder
	body, err := enc.Encode(&sample.Batch{Samples: b.Samples[series:]})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, body); !RolledBack(err) || CauseOf(err) != CauseAge {
		t.Fatalf("a request of old and fresh samples: %v, want an age refusal of a rolled-back request", err)
	}
	if got, err := p.Samples(ctx, "redwire_isolated", 3*time.Hour); err != nil || len(got) != 0 {
		t.Fatalf("after the refusal the receiver holds %v (%v), want nothing: it rolled back", got, err)
	}

	o := &orderRecorder{t: t, b: b}
	if err := testPolicy.Deliver(ctx, c, &enc, b, nil, o); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if o.next != b.Len() {
		t.Fatalf("answered %d of %d samples", o.next, b.Len())
	}
	checkVerdicts(t, b, o.verdicts, 1, func(s sample.Sample) Cause { return causeIf(now.UnixMilli()-s.T > time.Hour.Milliseconds(), CauseAge) })
	got, err := p.Samples(ctx, "redwire_isolated", 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]map[int64]bool{}
	for _, rs := range got {
		stored[rs.Labels["i"]] = map[int64]bool{}
		for _, pt := range rs.Points {
			stored[rs.Labels["i"]][pt.T.UnixMilli()] = true
		}
	}
	taken := 0
	for i, s := range b.Samples {
		if stored[s.Labels.Get("i")][s.T] != (o.verdicts[i] == nil) {
			t.Errorf("sample %d (%s at %s): stored %v, answered %v", i, s.Labels, time.UnixMilli(s.T).Format(time.TimeOnly), stored[s.Labels.Get("i")][s.T], o.verdicts[i])
		}
		if o.verdicts[i] == nil {
			taken++
		}
	}
	t.Logf("%d samples: %d taken and stored, %d refused", b.Len(), taken, b.Len()-taken)
}
