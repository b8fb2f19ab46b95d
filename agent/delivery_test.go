package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// TestDeliveryTransitions walks every transition of the delivery state
// machine, with a threshold of 3.
func TestDeliveryTransitions(t *testing.T) {
	normal := delivery{}
	failing := delivery{failures: 1}
	twice := delivery{failures: 2}
	down := delivery{mode: modeDegraded, failures: 3}
	replay := delivery{mode: modeReplay}
	for _, tc := range []struct {
		name string
		from delivery
		ev   event
		to   delivery
		fx   effect
	}{
		{"normal: a batch taken", normal, evSent, normal, 0},
		{"normal: the first failure is logged", normal, evFailed, failing, warnFailing},
		{"normal: a second failure is not", failing, evFailed, twice, 0},
		{"normal: the threshold-th failure declares the endpoint down", twice, evFailed, down, goDown},
		{"normal: a taken batch ends a run of failures", twice, evSent, normal, 0},
		{"normal: a refusal is an answer too", twice, evRefused, delivery{refusing: true}, warnRefused},
		{"normal: a run of refusals is logged once", delivery{refusing: true}, evRefused, delivery{refusing: true}, 0},
		{"normal: a taken batch ends a run of refusals", delivery{refusing: true}, evSent, normal, 0},
		{"normal: 401 pauses and counts as a failure", normal, evUnauthorized, delivery{failures: 1, paused: true}, warnFailing | pauseOn},
		{"paused: a pause is said once", delivery{failures: 1, paused: true}, evUnauthorized, delivery{failures: 2, paused: true}, 0},
		{"paused: unauthorized at the threshold goes down", delivery{failures: 2, paused: true}, evUnauthorized,
			delivery{mode: modeDegraded, failures: 3, paused: true}, goDown},
		{"paused: any answer ends the pause", delivery{failures: 2, paused: true}, evSent, normal, pauseOff},
		{"paused and down: an answer ends both", delivery{mode: modeDegraded, failures: 5, paused: true}, evSentStored,
			replay, pauseOff | comeBack},
		{"normal: a stored batch taken starts a replay (backlog of an earlier run)", normal, evSentStored, replay, 0},
		{"degraded: more failures change nothing", down, evFailed, delivery{mode: modeDegraded, failures: 4}, 0},
		{"degraded: the probe taken comes back into a replay", down, evSentStored, replay, comeBack},
		{"degraded: a batch from memory taken comes back to normal", down, evSent, normal, comeBack},
		{"degraded: a refusal is an answer: back to normal", down, evRefused, delivery{refusing: true}, comeBack | warnRefused},
		{"degraded: an empty backlog changes nothing", down, evBacklogEmpty, down, 0},
		{"replay: batches taken keep replaying", replay, evSentStored, replay, 0},
		{"replay: a batch from memory taken keeps replaying until the store is empty", replay, evSent, replay, 0},
		{"replay: the backlog empty is back to normal", replay, evBacklogEmpty, normal, replayDone},
		{"replay: the first failure is logged", replay, evFailed, delivery{mode: modeReplay, failures: 1}, warnFailing},
		{"replay: the threshold-th failure goes down again", delivery{mode: modeReplay, failures: 2}, evFailed, down, goDown},
		{"normal: an empty backlog is nothing new", normal, evBacklogEmpty, normal, 0},
		{"replay: no out-of-order window falls back to fifo", replay, evOutOfOrderRefused, delivery{mode: modeReplay, noOutOfOrder: true}, fallBackFIFO},
		{"replay: the fallback is said once", delivery{mode: modeReplay, noOutOfOrder: true}, evOutOfOrderRefused, delivery{mode: modeReplay, noOutOfOrder: true}, 0},
		{"replay: a failing run stands through the check's refusal", delivery{mode: modeReplay, failures: 2}, evOutOfOrderRefused,
			delivery{mode: modeReplay, failures: 2, noOutOfOrder: true}, fallBackFIFO},
		{"fallen back: the backlog empty is back to normal, still fifo", delivery{mode: modeReplay, noOutOfOrder: true}, evBacklogEmpty,
			delivery{noOutOfOrder: true}, replayDone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to, fx := tc.from.on(tc.ev, 3)
			if to != tc.to || fx != tc.fx {
				t.Errorf("%+v on %d: %+v with effects %b, want %+v with %b", tc.from, tc.ev, to, fx, tc.to, tc.fx)
			}
		})
	}
}

// TestSenderReceiverAnswers walks the README's "receiver answers" table
// through the agent's sender, with a fake receiver and a real buffer: for
// each answer, where delivery stands, what was taken, dropped or kept.
func TestSenderReceiverAnswers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answers  []int // HTTP status per request; 0: a network error; stop: the test ends
		mode     mode  // after the batch
		paused   bool
		taken    int // samples
		replayed int // of which were taken from disk
		rejected int // samples dropped as rejected
		requests int
	}{
		{name: "2xx: done", answers: []int{204}, mode: modeNormal, taken: 8, requests: 1},
		{name: "5xx: retried, taken", answers: []int{503, 204}, mode: modeNormal, taken: 8, requests: 2},
		{name: "network error: retried, taken", answers: []int{0, 204}, mode: modeNormal, taken: 8, requests: 2},
		{name: "5xx past the threshold: degraded, spilled, then replayed", answers: []int{500, 500, 500, 204},
			mode: modeNormal, taken: 8, replayed: 8, requests: 4},
		{name: "429: retried, counts toward down", answers: []int{429, 429, 429, 204}, mode: modeNormal, taken: 8, replayed: 8, requests: 4},
		{name: "413: halves", answers: []int{413, 204, 204}, mode: modeNormal, taken: 8, requests: 3},
		{name: "413 then a failed half: only the rest again", answers: []int{413, 204, 503, 204}, mode: modeNormal, taken: 8, requests: 4},
		{name: "400: dropped and counted", answers: []int{400}, mode: modeNormal, rejected: 8, requests: 1},
		{name: "409: dropped and counted", answers: []int{409}, mode: modeNormal, rejected: 8, requests: 1},
		{name: "415: dropped and counted", answers: []int{415}, mode: modeNormal, rejected: 8, requests: 1},
		{name: "401: paused, kept, probed", answers: []int{401, stop}, mode: modeNormal, paused: true, requests: 2},
		{name: "403 past the threshold: paused and degraded, kept", answers: []int{403, 403, 403, stop}, mode: modeDegraded, paused: true, requests: 4},
		{name: "404 then 2xx: the pause ends", answers: []int{404, 204}, mode: modeNormal, taken: 8, requests: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newSenderRig(t, tc.answers)
			rig.buf.Append(rigBatch(8))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rig.fake.done = func() { cancel() }
			rig.s.run(ctx)

			if got := rig.s.state; got.mode != tc.mode || got.paused != tc.paused {
				t.Errorf("after %v: mode %v paused %v, want %v paused %v", tc.answers, got.mode, got.paused, tc.mode, tc.paused)
			}
			if rig.fake.taken != tc.taken {
				t.Errorf("receiver took %d samples, want %d", rig.fake.taken, tc.taken)
			}
			if got := gathered(t, rig.reg, "redwire_replay_samples_total", nil); got != float64(tc.replayed) {
				t.Errorf("replayed from disk: %v samples, want %d", got, tc.replayed)
			}
			if got := rig.dropped(t, buffer.DropRejected); got != float64(tc.rejected) {
				t.Errorf("dropped as rejected: %v, want %d", got, tc.rejected)
			}
			if rig.fake.requests != tc.requests {
				t.Errorf("%d requests, want %d", rig.fake.requests, tc.requests)
			}
			held := rig.buf.Stats()
			if kept := int(held.Store.Samples) + held.MemorySamples; kept != 8-tc.taken-tc.rejected {
				t.Errorf("buffer holds %d samples, want the %d neither taken nor dropped", kept, 8-tc.taken-tc.rejected)
			}
			if tc.mode == modeDegraded && held.Store.Samples == 0 {
				t.Error("degraded, but nothing went to disk")
			}
			lag, ok := rig.s.prog.lag(time.Now())
			if ok != (tc.taken > 0) || lag < 0 {
				t.Errorf("delivery lag %v (known %v) after %d samples taken", lag, ok, tc.taken)
			}
		})
	}
}

// stop, queued as an answer, ends the test while a batch is being
// retried: its request fails and the sender's context ends.
const stop = -1

// fakeReceiver answers each request with the next queued status, and
// calls done once the last answer was given (or at stop). It counts only
// what it took.
type fakeReceiver struct {
	answers  []int
	requests int
	taken    int
	done     func()
}

func (f *fakeReceiver) Send(_ context.Context, body []byte) error {
	f.requests++
	status := http.StatusNoContent
	if len(f.answers) > 0 {
		status, f.answers = f.answers[0], f.answers[1:]
	}
	if len(f.answers) == 0 && f.done != nil {
		defer f.done()
	}
	switch {
	case status == stop:
		return &remotewrite.Error{Class: remotewrite.Retry, Err: fmt.Errorf("the test is over")}
	case status == 0:
		return &remotewrite.Error{Class: remotewrite.Retry, Err: fmt.Errorf("connection refused")}
	case status/100 == 2:
		n, err := harness.CountSamples(body)
		f.taken += n
		return err
	}
	return &remotewrite.Error{StatusCode: status, Class: classOfStatus(status)}
}

// classOfStatus is the class remotewrite.Client gives an answer, as the
// README's table says.
func classOfStatus(status int) remotewrite.Class {
	switch {
	case status == http.StatusTooManyRequests:
		return remotewrite.RateLimited
	case status == http.StatusRequestEntityTooLarge:
		return remotewrite.TooLarge
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusNotFound:
		return remotewrite.Unauthorized
	case status >= 500:
		return remotewrite.Retry
	}
	return remotewrite.Reject
}

type senderRig struct {
	s    *sender
	buf  *buffer.Buffer
	fake *fakeReceiver
	reg  *prometheus.Registry
}

func newSenderRig(t *testing.T, answers []int) *senderRig {
	t.Helper()
	store, _, err := buffer.OpenStore(filepath.Join(t.TempDir(), "b.bbolt"), buffer.StoreOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	buf := buffer.New(store, buffer.Options{Capacity: 100, MaxBatch: 8, Deadline: time.Millisecond})
	t.Cleanup(func() { buf.Close() })
	reg := prometheus.NewRegistry()
	fake := &fakeReceiver{answers: answers}
	s := &sender{name: "fake", client: fake, buf: buf, threshold: 3,
		policy: remotewrite.Policy{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond},
		modes:  newModes(), m: newMetrics(reg), log: slog.New(slog.DiscardHandler), prog: &progress{}}
	s.m.initEndpoint(s.name)
	return &senderRig{s: s, buf: buf, fake: fake, reg: reg}
}

func (r *senderRig) dropped(t *testing.T, reason string) float64 {
	t.Helper()
	return gathered(t, r.reg, "redwire_samples_dropped_total", map[string]string{"endpoint": r.s.name, "reason": reason})
}

// rigBatch is one scrape of n series.
func rigBatch(n int) sample.Batch {
	sc := sample.NewScrape(time.Now(), labels.FromStrings("instance", "fake"))
	for i := range n {
		sc.Gauge("redis_test_series", "test", 1, "i", fmt.Sprint(i))
	}
	return sc.Batch()
}
