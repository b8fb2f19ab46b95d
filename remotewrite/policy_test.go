package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// fakeSender answers each request with the next queued error (nil:
// taken) and records how many samples each request carried. Past the
// queue it takes everything.
type fakeSender struct {
	answers []error
	sent    []int // samples per request
	then    error // the answer past the queue; nil: taken
}

func (f *fakeSender) Send(_ context.Context, body []byte) error {
	n, err := harness.CountSamples(body)
	if err != nil {
		return err
	}
	f.sent = append(f.sent, n)
	if len(f.answers) == 0 {
		return f.then
	}
	err, f.answers = f.answers[0], f.answers[1:]
	return err
}

// recorder is a Handler that writes down what it hears; giveUp makes
// Failed give up on that class.
type recorder struct {
	taken, refused []int // samples per answered part
	refusedErrs    []error
	failures       []Class
	waits          []time.Duration
	requests       int
	metadataParts  int // answered parts that carried metadata
	giveUp         map[Class]bool
}

func (r *recorder) Request(int, time.Duration, error) { r.requests++ }

func (r *recorder) Answered(part *sample.Batch, err error) {
	if len(part.Metadata) > 0 {
		r.metadataParts++
	}
	if err == nil {
		r.taken = append(r.taken, part.Len())
		return
	}
	r.refused = append(r.refused, part.Len())
	r.refusedErrs = append(r.refusedErrs, err)
}

func (r *recorder) Failed(err error, wait time.Duration) bool {
	r.failures = append(r.failures, ClassOf(err))
	r.waits = append(r.waits, wait)
	return !r.giveUp[ClassOf(err)]
}

func testBatch(n int) sample.Batch {
	var b sample.Batch
	for i := range n {
		b.Samples = append(b.Samples, sample.Sample{
			Labels: labels.FromStrings("__name__", "redis_up", "i", fmt.Sprint(i)), T: 1000, V: 1,
		})
	}
	b.Metadata = []sample.Metadata{{Family: "redis_up", Type: sample.Gauge, Help: "up"}}
	return b
}

func status(code int, class Class) error { return &Error{StatusCode: code, Class: class} }

var testPolicy = Policy{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}

// TestPolicyAnswers walks the README's "receiver answers" table: each
// answer, what is sent, what is taken, refused or retried.
func TestPolicyAnswers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answers  []error
		batch    int
		sent     []int   // samples per request
		taken    []int   // samples per taken part
		refused  []int   // samples per refused part
		failures []Class // classes of the tries that left samples unanswered
	}{
		{name: "2xx is done", batch: 8, sent: []int{8}, taken: []int{8}},
		{name: "network error or 5xx is retried whole", answers: []error{status(0, Retry), status(503, Retry)},
			batch: 8, sent: []int{8, 8, 8}, taken: []int{8}, failures: []Class{Retry, Retry}},
		{name: "429 is retried whole", answers: []error{status(429, RateLimited)},
			batch: 8, sent: []int{8, 8}, taken: []int{8}, failures: []Class{RateLimited}},
		{name: "413 splits into halves, oldest first", answers: []error{status(413, TooLarge)},
			batch: 8, sent: []int{8, 4, 4}, taken: []int{4, 4}},
		{name: "413 splits again until the halves fit", answers: []error{status(413, TooLarge), status(413, TooLarge)},
			batch: 8, sent: []int{8, 4, 2, 2, 4}, taken: []int{2, 2, 4}},
		{name: "413 then a failed half retries only the rest",
			answers: []error{status(413, TooLarge), nil, status(503, Retry)},
			batch:   8, sent: []int{8, 4, 4, 4}, taken: []int{4, 4}, failures: []Class{Retry}},
		{name: "413 of a single sample refuses it", answers: []error{status(413, TooLarge)},
			batch: 1, sent: []int{1}, refused: []int{1}},
		{name: "400 refuses the batch", answers: []error{status(400, Reject)},
			batch: 8, sent: []int{8}, refused: []int{8}},
		{name: "409 and 415 refuse the batch", answers: []error{status(409, Reject)},
			batch: 8, sent: []int{8}, refused: []int{8}},
		{name: "a refused half does not take the other with it",
			answers: []error{status(413, TooLarge), status(400, Reject)},
			batch:   8, sent: []int{8, 4, 4}, taken: []int{4}, refused: []int{4}},
		{name: "401, 403, 404 are retried at the slowest pace", answers: []error{status(401, Unauthorized), status(404, Unauthorized)},
			batch: 8, sent: []int{8, 8, 8}, taken: []int{8}, failures: []Class{Unauthorized, Unauthorized}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &fakeSender{answers: tc.answers}
			var r recorder
			var enc Encoder
			if err := testPolicy.Deliver(context.Background(), s, &enc, testBatch(tc.batch), nil, &r); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if !slices.Equal(s.sent, tc.sent) {
				t.Errorf("requests carried %v samples, want %v", s.sent, tc.sent)
			}
			if !slices.Equal(r.taken, tc.taken) || !slices.Equal(r.refused, tc.refused) {
				t.Errorf("taken %v refused %v, want taken %v refused %v", r.taken, r.refused, tc.taken, tc.refused)
			}
			if !slices.Equal(r.failures, tc.failures) {
				t.Errorf("failed tries %v, want %v", r.failures, tc.failures)
			}
			if r.requests != len(s.sent) {
				t.Errorf("Request heard %d requests, %d were made", r.requests, len(s.sent))
			}
			if r.metadataParts != 1 {
				t.Errorf("metadata went with %d answered parts, want exactly one", r.metadataParts)
			}
			for _, err := range r.refusedErrs {
				if ClassOf(err) != Reject {
					t.Errorf("refused with %v of class %v, want Reject", err, ClassOf(err))
				}
			}
		})
	}
}

// TestPolicyWaits: Retry-After wins over the backoff and 401 waits the
// slowest pace. (A 400 with Retry-After is not waited on:
// TestDeliverDoesNotWaitOnARefusal.)
func TestPolicyWaits(t *testing.T) {
	p := Policy{MinBackoff: time.Millisecond, MaxBackoff: 40 * time.Millisecond}
	s := &fakeSender{answers: []error{
		&Error{StatusCode: 429, Class: RateLimited, RetryAfter: 3 * time.Millisecond},
		status(503, Retry),
		status(401, Unauthorized),
	}}
	var r recorder
	var enc Encoder
	if err := p.Deliver(context.Background(), s, &enc, testBatch(2), nil, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.waits) != 3 {
		t.Fatalf("%d waits, want 3", len(r.waits))
	}
	if r.waits[0] != 3*time.Millisecond {
		t.Errorf("wait after a 429 with Retry-After 3ms: %v", r.waits[0])
	}
	if r.waits[1] > p.MaxBackoff {
		t.Errorf("backoff after a 503: %v, over max_backoff", r.waits[1])
	}
	if w := r.waits[2]; w < p.MaxBackoff/2 || w > p.MaxBackoff {
		t.Errorf("wait after a 401: %v, want within [max_backoff/2, max_backoff]", w)
	}
}

// TestPolicyGivesUpWhenTheCallerDoes: `redwire replay` stops on 401; the
// error comes back, nothing is answered for.
func TestPolicyGivesUpWhenTheCallerDoes(t *testing.T) {
	s := &fakeSender{answers: []error{status(403, Unauthorized)}}
	r := recorder{giveUp: map[Class]bool{Unauthorized: true}}
	var enc Encoder
	err := testPolicy.Deliver(context.Background(), s, &enc, testBatch(4), nil, &r)
	if ClassOf(err) != Unauthorized {
		t.Fatalf("Deliver: %v, want the 403 back", err)
	}
	if len(r.taken)+len(r.refused) != 0 || len(s.sent) != 1 {
		t.Errorf("taken %v refused %v after %d requests; want one request and nothing answered for", r.taken, r.refused, len(s.sent))
	}
}

// TestPolicyStopsWithTheContext: a cancelled context ends the retries.
func TestPolicyStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &fakeSender{answers: []error{status(503, Retry)}}
	r := &cancelOnFailure{cancel: cancel}
	var enc Encoder
	if err := (Policy{MinBackoff: time.Hour, MaxBackoff: time.Hour}).Deliver(ctx, s, &enc, testBatch(4), nil, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Deliver: %v, want context.Canceled", err)
	}
	if len(s.sent) != 1 {
		t.Errorf("%d requests after the context ended, want 1", len(s.sent))
	}
}

type cancelOnFailure struct {
	recorder
	cancel func()
}

func (c *cancelOnFailure) Failed(error, time.Duration) bool { c.cancel(); return true }

// TestPolicyUsesTheBodyPreparedAhead: a body encoded ahead serves the
// first try; a retry after a split encodes only the rest.
func TestPolicyUsesTheBodyPreparedAhead(t *testing.T) {
	var ahead Encoder
	b := testBatch(3)
	body, err := ahead.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	prepared := slices.Clone(body)
	var got [][]byte
	s := senderFunc(func(_ context.Context, body []byte) error {
		got = append(got, slices.Clone(body))
		return nil
	})
	var r recorder
	var enc Encoder
	if err := testPolicy.Deliver(context.Background(), s, &enc, b, prepared, &r); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !slices.Equal(got[0], prepared) {
		t.Fatalf("sent %d bodies; want the prepared one alone", len(got))
	}
}

type senderFunc func(context.Context, []byte) error

func (f senderFunc) Send(ctx context.Context, body []byte) error { return f(ctx, body) }

// waitingRecorder is a Handler that waits between tries itself, and ends
// each wait at once.
type waitingRecorder struct {
	recorder
	waits []error
}

func (w *waitingRecorder) Wait(_ context.Context, _ time.Duration, err error) bool {
	w.waits = append(w.waits, err)
	return true
}

// TestPolicyLetsTheHandlerWait: a Handler that is a Waiter waits between
// tries itself (the agent's probes end a long backoff early), and hears
// why it waits.
func TestPolicyLetsTheHandlerWait(t *testing.T) {
	s := &fakeSender{answers: []error{status(503, Retry), status(0, Retry)}}
	var w waitingRecorder
	var enc Encoder
	hour := Policy{MinBackoff: time.Hour, MaxBackoff: time.Hour}
	if err := hour.Deliver(context.Background(), s, &enc, testBatch(2), nil, &w); err != nil {
		t.Fatal(err)
	}
	if len(w.waits) != 2 || ClassOf(w.waits[0]) != Retry {
		t.Fatalf("Wait heard %v, want the two failures", w.waits)
	}
	if len(s.sent) != 3 {
		t.Errorf("%d requests, want 3", len(s.sent))
	}
}

// TestPolicyRetryRefusedAsOutOfOrderAfterNoAnswer: a try that got no
// answer (a timeout) may have been stored; a retry of the same batch
// refused as out of order means it was, and the batch counts as taken.
// Without a try that went unanswered, or after a 413 split the batch,
// out of order stays a refusal (the fake refuses every series as out of
// order, so isolating the batch finds every sample refused).
func TestPolicyRetryRefusedAsOutOfOrderAfterNoAnswer(t *testing.T) {
	ooo := &Error{StatusCode: 400, Class: Reject, Body: "out of order sample"}
	for _, tc := range []struct {
		name           string
		answers        []error
		taken, refused []int
	}{
		{"timeout, then out of order: stored by the first try", []error{status(0, Retry), ooo}, []int{8}, nil},
		{"timeout, 503, then out of order: still the first try's", []error{status(0, Retry), status(503, Retry), ooo}, []int{8}, nil},
		{"timeout, then Mimir's out of order", []error{status(0, Retry), &Error{StatusCode: 400, Class: Reject,
			Body: "the sample has been rejected because another sample with a more recent timestamp has already been ingested and out-of-order samples are not allowed (err-mimir-sample-out-of-order)"}}, []int{8}, nil},
		{"out of order at once: refused", []error{ooo}, nil, []int{8}},
		{"503, then out of order: the 503 stored nothing", []error{status(503, Retry), ooo}, nil, []int{8}},
		{"timeout, then another 400: refused", []error{status(0, Retry), status(400, Reject)}, nil, []int{8}},
		{"a split part timed out, then out of order: refused", []error{status(413, TooLarge), status(0, Retry), ooo}, nil, []int{8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &fakeSender{answers: tc.answers}
			if tc.refused != nil {
				s.then = ooo
			}
			var r recorder
			var enc Encoder
			if err := testPolicy.Deliver(context.Background(), s, &enc, testBatch(8), nil, &r); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if !slices.Equal(r.taken, tc.taken) || !slices.Equal(r.refused, tc.refused) {
				t.Errorf("taken %v refused %v, want taken %v refused %v (requests %v)", r.taken, r.refused, tc.taken, tc.refused, s.sent)
			}
		})
	}
}
