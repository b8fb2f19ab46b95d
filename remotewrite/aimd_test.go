package remotewrite

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/batchtest"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// busyReceiver is a fake Sender on a fake clock that takes capacity
// samples/s (a token bucket one request deep) and answers 429 with a
// Retry-After to a request over it. It counts a request that comes
// before the Retry-After it was given as a broken promise.
type busyReceiver struct {
	now        time.Time
	capacity   float64 // samples/s
	took       time.Duration
	tokens     float64
	depth      float64
	last       time.Time
	retryAfter time.Time // the last 429's Retry-After ends here

	taken, refusals, early int
}

func (r *busyReceiver) Send(_ context.Context, body []byte) error {
	n, err := harness.CountSamples(body)
	if err != nil {
		return err
	}
	if r.now.Before(r.retryAfter) {
		r.early++
	}
	r.tokens = min(r.depth, r.tokens+r.now.Sub(r.last).Seconds()*r.capacity)
	r.last = r.now
	r.now = r.now.Add(r.took)
	if r.tokens < float64(n) {
		r.refusals++
		wait := time.Duration(math.Ceil((float64(n)-r.tokens)/r.capacity)) * time.Second
		r.retryAfter = r.now.Add(wait)
		return &Error{StatusCode: 429, Class: RateLimited, RetryAfter: wait}
	}
	r.tokens -= float64(n)
	r.taken += n
	return nil
}

// aimdHandler feeds what Deliver hears to the controller and waits on
// the fake clock.
type aimdHandler struct {
	t    *testing.T
	r    *busyReceiver
	a    *AIMD
	took time.Duration
}

func (h *aimdHandler) Request(_ int, took time.Duration, _ error) { h.took = took }
func (h *aimdHandler) Answered(part *sample.Batch, err error) {
	if err != nil {
		h.t.Fatalf("refused: %v", err)
	}
	h.a.Taken(part.Len(), h.r.took)
}
func (h *aimdHandler) Failed(err error, _ time.Duration) bool {
	before := h.a.Rate()
	h.a.PushedBack(h.r.now, err)
	if after := h.a.Rate(); before > 0 && after > max(before*Beta, h.a.Min) {
		h.t.Errorf("a 429 took the rate from %.0f to %.0f samples/s, want at most half", before, after)
	}
	return true
}
func (h *aimdHandler) Wait(_ context.Context, d time.Duration, _ error) bool {
	h.r.now = h.r.now.Add(d)
	return true
}

// TestAIMDAgainstA429Receiver replays through the real policy into a
// receiver that takes a quarter of the configured ceiling and answers
// the rest 429 with Retry-After, all on a fake clock. The controller must
// never send before a Retry-After has passed, never exceed its ceiling,
// halve on each 429, and settle near what the receiver takes: most
// requests taken, and at least half the receiver's capacity used.
func TestAIMDAgainstA429Receiver(t *testing.T) {
	const (
		perRequest = 500
		requests   = 200
		capacity   = 1000.0 // samples/s the receiver takes
	)
	start := time.Unix(1_700_000_000, 0)
	r := &busyReceiver{now: start, last: start, capacity: capacity, took: 10 * time.Millisecond, depth: perRequest, tokens: perRequest}
	a := &AIMD{Max: 4 * capacity, Min: perRequest / 10, Step: capacity / 20}
	h := &aimdHandler{t: t, r: r, a: a}
	p := Policy{MinBackoff: time.Second, MaxBackoff: 30 * time.Second}
	var enc Encoder
	for i := range requests {
		b := batchtest.Small(1, perRequest, start.UnixMilli()+int64(i)*perRequest)
		if err := p.Deliver(context.Background(), r, &enc, b, nil, h); err != nil {
			t.Fatal(err)
		}
		if rate := a.Rate(); rate > a.Max {
			t.Fatalf("request %d: rate %.0f over the ceiling %.0f", i, rate, a.Max)
		}
		r.now = r.now.Add(a.Delay(r.now, perRequest))
	}
	if r.early > 0 {
		t.Errorf("%d requests went before the Retry-After they were given", r.early)
	}
	if r.refusals == 0 {
		t.Fatal("the receiver never pushed back: the test tests nothing")
	}
	if r.refusals > requests/4 {
		t.Errorf("%d 429s for %d requests taken: the controller does not settle", r.refusals, requests)
	}
	used := float64(r.taken) / r.now.Sub(start).Seconds()
	if used < capacity/2 || used > capacity {
		t.Errorf("%.0f samples/s taken of the receiver's %.0f: want between half and all of it", used, capacity)
	}
	t.Logf("%d requests, %d 429s, %.0f samples/s of %.0f", requests, r.refusals, used, capacity)
}

// TestAIMDSteps: what each answer does to the rate.
func TestAIMDSteps(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	busy := &Error{StatusCode: 429, Class: RateLimited, RetryAfter: 5 * time.Second}
	down := &Error{StatusCode: 503, Class: Retry}
	refused := &Error{StatusCode: 400, Class: Reject}

	a := &AIMD{Min: 10, Step: 100}
	if d := a.Delay(now, 1000); d != 0 {
		t.Errorf("no ceiling, no push back: waits %v, want 0", d)
	}
	a.Taken(1000, time.Second) // 1000 samples/s achieved
	a.PushedBack(now, busy)
	if got := a.Rate(); got != 500 {
		t.Errorf("first 429 without a ceiling: rate %v, want half of the 1000/s last achieved", got)
	}
	if d := a.Delay(now, 100); d != 5*time.Second {
		t.Errorf("Retry-After 5s: waits %v", d)
	}
	if d := a.Delay(now.Add(5*time.Second), 1000); d != 2*time.Second {
		t.Errorf("after the Retry-After, 1000 samples at 500/s: waits %v, want 2s", d)
	}
	a.Taken(1000, time.Second)
	if got := a.Rate(); got != 600 {
		t.Errorf("a request taken: rate %v, want 500+100", got)
	}
	a.PushedBack(now, refused)
	if got := a.Rate(); got != 600 {
		t.Errorf("a refusal says nothing of the load, yet the rate went to %v", got)
	}
	for range 20 {
		a.PushedBack(now, down)
	}
	if got := a.Rate(); got != 10 {
		t.Errorf("a run of 503s: rate %v, want the floor 10", got)
	}
	a.PushedBack(now, context.DeadlineExceeded) // a timeout classes as Retry
	if got := a.Rate(); got != 10 {
		t.Errorf("a timeout at the floor: rate %v, want 10", got)
	}

	c := &AIMD{Max: 1000, Step: 300}
	if got := c.Rate(); got != 1000 {
		t.Errorf("with a ceiling, the rate starts at it: %v", got)
	}
	c.PushedBack(now, down)
	for range 3 {
		c.Taken(100, time.Millisecond)
	}
	if got := c.Rate(); got != 1000 {
		t.Errorf("increases past the ceiling: rate %v, want 1000", got)
	}
}
