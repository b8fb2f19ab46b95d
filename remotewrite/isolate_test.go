package remotewrite

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// tsdbReceiver is a fake receiver that appends as a Prometheus TSDB head
// does: a sample below minValid is out of bounds, one older than its
// series' newest is out of order, a series named in bad has invalid
// labels. Like Prometheus answering remote write 1.0 it rolls the whole
// request back at the first refusal; with keep it stores the rest and
// answers as Thanos does (409). failAt makes those requests (1-based)
// fail with a 503, storing nothing.
type tsdbReceiver struct {
	t        testing.TB
	minValid int64
	newest   map[string]int64
	bad      map[string]bool
	keep     bool
	failAt   map[int]bool
	requests int
	stored   map[string][]int64
}

func newTSDB(t testing.TB, minValid int64) *tsdbReceiver {
	return &tsdbReceiver{t: t, minValid: minValid, newest: map[string]int64{}, bad: map[string]bool{}, stored: map[string][]int64{}}
}

func (r *tsdbReceiver) Send(_ context.Context, body []byte) error {
	r.requests++
	if r.failAt[r.requests] {
		return &Error{StatusCode: 503, Class: Retry}
	}
	wr, err := harness.DecodeWrite(body)
	if err != nil {
		r.t.Fatalf("not a write request: %v", err)
	}
	newest := maps(r.newest)
	var refusal string
	add := map[string][]int64{}
	for _, ts := range wr.Timeseries {
		var id string
		for _, l := range ts.Labels {
			if l.Name == "i" {
				id = l.Value
			}
		}
		for _, s := range ts.Samples {
			var why string
			switch last, ok := newest[id]; {
			case r.bad[id]:
				why = "invalid metric name or labels"
			case s.Timestamp < r.minValid:
				why = "out of bounds"
			case ok && s.Timestamp < last:
				why = "out of order sample"
			case ok && s.Timestamp == last:
				continue // the same sample again: taken, as Prometheus does
			}
			if why != "" {
				if refusal == "" {
					refusal = why
				}
				continue
			}
			newest[id] = s.Timestamp
			add[id] = append(add[id], s.Timestamp)
		}
	}
	if refusal != "" && !r.keep {
		return &Error{StatusCode: 400, Class: Reject, Body: refusal}
	}
	r.newest = newest
	for id, ts := range add {
		r.stored[id] = append(r.stored[id], ts...)
	}
	if refusal != "" {
		return &Error{StatusCode: 409, Class: Reject, Body: "forwarding request to endpoint addr: , capnp_addr: , az: : writing locally: add 1 samples: " + refusal}
	}
	return nil
}

func maps(m map[string]int64) map[string]int64 {
	c := make(map[string]int64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// scrapes is a batch of the scrapes at times ts of series 0..n-1, in
// scrape order.
func scrapes(n int, ts ...int64) sample.Batch {
	var b sample.Batch
	for _, t := range ts {
		for i := range n {
			b.Samples = append(b.Samples, sample.Sample{Labels: labels.FromStrings("__name__", "redis_up", "i", fmt.Sprint(i)), T: t, V: 1})
		}
	}
	b.Metadata = []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "up"}}
	return b
}

// orderRecorder is a Handler that checks the contract of Answered: the
// parts come in batch order and cover it once; it keeps each sample's
// verdict.
type orderRecorder struct {
	t        testing.TB
	b        sample.Batch
	next     int
	verdicts []error
	meta     int
}

func (o *orderRecorder) Request(int, time.Duration, error) {}

func (o *orderRecorder) Answered(part *sample.Batch, err error) {
	if len(part.Metadata) > 0 {
		o.meta++
	}
	for j, s := range part.Samples {
		if o.next+j >= len(o.b.Samples) || !labels.Equal(s.Labels, o.b.Samples[o.next+j].Labels) || s.T != o.b.Samples[o.next+j].T {
			o.t.Fatalf("answered part of %d at %d is not the batch's next samples", part.Len(), o.next)
		}
		o.verdicts = append(o.verdicts, err)
	}
	o.next += part.Len()
}

func (o *orderRecorder) Failed(error, time.Duration) bool { return true }

// deliverTo delivers b to r and checks that every sample was answered for
// once, in order.
func deliverTo(t *testing.T, r *tsdbReceiver, b sample.Batch) *orderRecorder {
	t.Helper()
	o := &orderRecorder{t: t, b: b}
	var enc Encoder
	if err := testPolicy.Deliver(context.Background(), r, &enc, b, nil, o); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if o.next != b.Len() {
		t.Fatalf("answered %d of %d samples", o.next, b.Len())
	}
	if o.meta != 1 {
		t.Errorf("metadata went with %d parts, want 1", o.meta)
	}
	return o
}

// isolationBound is the most requests Deliver may make for a request of
// n samples in which groups groups are refused.
func isolationBound(n, groups int) int {
	return 1 + min(groups+1, maxIsolationGroups)*isolationBudget(n)
}

func TestIsolation(t *testing.T) {
	const series = 40
	for _, tc := range []struct {
		name     string
		batch    sample.Batch
		setup    func(*tsdbReceiver)
		refused  func(s sample.Sample) Cause // CauseUnknown: taken
		groups   int                         // refused groups, for the bound
		requests int                         // exact, if not 0
	}{
		{
			name:    "a few old samples among many fresh: only the old refused",
			batch:   scrapes(series, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000),
			setup:   func(r *tsdbReceiver) { r.minValid = 1500 },
			refused: func(s sample.Sample) Cause { return causeIf(s.T < 1500, CauseAge) },
			groups:  1,
		},
		{
			name:     "a whole backlog past the cutoff: two requests",
			batch:    scrapes(series, 1000, 2000, 3000, 4000),
			setup:    func(r *tsdbReceiver) { r.minValid = 10_000 },
			refused:  func(sample.Sample) Cause { return CauseAge },
			requests: 2,
		},
		{
			name:  "out of order series among one timestamp: found by series",
			batch: scrapes(series, 5000),
			setup: func(r *tsdbReceiver) { r.newest["7"], r.newest["23"] = 6000, 6000 },
			refused: func(s sample.Sample) Cause {
				return causeIf(s.Labels.Get("i") == "7" || s.Labels.Get("i") == "23", CauseAge)
			},
			groups: 2,
		},
		{
			name:    "one malformed series: only it refused",
			batch:   scrapes(series, 1000, 2000),
			setup:   func(r *tsdbReceiver) { r.bad["13"] = true },
			refused: func(s sample.Sample) Cause { return causeIf(s.Labels.Get("i") == "13", CauseMalformed) },
			groups:  1,
		},
		{
			name:     "a receiver that kept the rest (Thanos 409): no split",
			batch:    scrapes(series, 1000, 2000),
			setup:    func(r *tsdbReceiver) { r.minValid, r.keep = 1500, true },
			refused:  func(sample.Sample) Cause { return CauseAge },
			requests: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTSDB(t, 0)
			tc.setup(r)
			o := deliverTo(t, r, tc.batch)
			checkVerdicts(t, tc.batch, o.verdicts, 1, tc.refused)
			if tc.requests != 0 && r.requests != tc.requests {
				t.Errorf("%d requests, want %d", r.requests, tc.requests)
			}
			if bound := isolationBound(tc.batch.Len(), tc.groups); r.requests > bound {
				t.Errorf("%d requests, over the bound %d", r.requests, bound)
			}
			if !r.keep {
				for i, s := range tc.batch.Samples {
					taken := slices.Contains(r.stored[s.Labels.Get("i")], s.T)
					if taken != (o.verdicts[i] == nil) {
						t.Errorf("sample %d (%s at %d): stored %v, answered %v", i, s.Labels, s.T, taken, o.verdicts[i])
					}
				}
			}
			t.Logf("%d samples, %d requests", tc.batch.Len(), r.requests)
		})
	}
}

// checkVerdicts wants each sample answered as want says, but for the
// price of a probe: once the probe took a series' newest sample, the
// receiver refuses that series' older samples of the part as out of
// order (CauseAge, so parked, not lost). Those must be of at most probes
// series.
func checkVerdicts(t *testing.T, b sample.Batch, verdicts []error, probes int, want func(sample.Sample) Cause) {
	t.Helper()
	var probed []string
	for i, s := range b.Samples {
		got, w := verdicts[i], want(s)
		if id := s.Labels.Get("i"); got != nil && w == CauseUnknown && outOfOrder(got) && (len(probed) < probes || slices.Contains(probed, id)) {
			if !slices.Contains(probed, id) {
				probed = append(probed, id)
			}
			continue
		}
		if (got == nil) != (w == CauseUnknown) || got != nil && CauseOf(got) != w {
			t.Fatalf("sample %d (%s at %d): answered %v, want cause %v", i, s.Labels, s.T, got, w)
		}
	}
	if len(probed) > 0 {
		t.Logf("the probes' series %v: older samples refused out of order", probed)
	}
}

func causeIf(b bool, c Cause) Cause {
	if b {
		return c
	}
	return CauseUnknown
}

// TestIsolationFailedTryRetriesTheRest: a try that fails mid-isolation
// leaves answered what was answered, in order, and the retry delivers
// the rest; nothing is answered twice and nothing stored goes unanswered.
func TestIsolationFailedTryRetriesTheRest(t *testing.T) {
	for fail := 2; fail <= 8; fail++ {
		t.Run(fmt.Sprint("request ", fail, " fails"), func(t *testing.T) {
			r := newTSDB(t, 1500)
			r.failAt = map[int]bool{fail: true}
			b := scrapes(10, 1000, 2000, 3000, 4000)
			o := deliverTo(t, r, b)
			checkVerdicts(t, b, o.verdicts, 1, func(s sample.Sample) Cause { return causeIf(s.T < 1500, CauseAge) })
			if bound := isolationBound(b.Len(), 2) + 1; r.requests > bound {
				t.Errorf("%d requests, over the bound %d and the failed one", r.requests, bound)
			}
			for i, s := range b.Samples {
				if slices.Contains(r.stored[s.Labels.Get("i")], s.T) != (o.verdicts[i] == nil) {
					t.Errorf("sample %d at %d: stored %v, answered %v", i, s.T, o.verdicts[i] != nil, o.verdicts[i])
				}
			}
		})
	}
}

// BenchmarkIsolation reports how many requests Deliver makes for one
// refused request of a batch of 10 scrapes of 100 series (1000 samples),
// against the fake TSDB head: a few old scrapes among fresh ones, a
// whole batch past the cutoff, and two series out of order at one
// timestamp.
func BenchmarkIsolation(b *testing.B) {
	ts := make([]int64, 10)
	for i := range ts {
		ts[i] = int64(i+1) * 1000
	}
	for _, bc := range []struct {
		name  string
		batch sample.Batch
		setup func(*tsdbReceiver)
	}{
		{"mixed", scrapes(100, ts...), func(r *tsdbReceiver) { r.minValid = 2500 }},
		{"whole-old", scrapes(100, ts...), func(r *tsdbReceiver) { r.minValid = 20_000 }},
		{"per-series", scrapes(1000, 5000), func(r *tsdbReceiver) { r.newest["17"], r.newest["600"] = 6000, 6000 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			requests := 0
			for b.Loop() {
				r := newTSDB(b, 0)
				bc.setup(r)
				var enc Encoder
				if err := testPolicy.Deliver(context.Background(), r, &enc, bc.batch, nil, &recorder{}); err != nil {
					b.Fatal(err)
				}
				requests += r.requests
			}
			b.ReportMetric(float64(requests)/float64(b.N), "requests/refused-request")
		})
	}
}
