package agent

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// replayBacklog starts a receiver and stores a backlog of scrapes (a
// minute old, one a second) of perScrape series redis_test_series, labelled
// instance; it returns the receiver, the store and a client for it.
func replayBacklog(t *testing.T, instance string, scrapes, perScrape int) (*harness.Prometheus, *buffer.Store, *remotewrite.Client) {
	t.Helper()
	prom := harness.StartPrometheus(t)
	store, _, err := buffer.OpenStore(filepath.Join(t.TempDir(), "b.bbolt"), buffer.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute)
	base := labels.FromStrings("instance", instance, "job", "redis")
	for k := range scrapes {
		sc := sample.NewScrape(start.Add(time.Duration(k)*time.Second), base)
		for i := range perScrape {
			sc.Gauge("redis_test_series", "test", float64(k), "i", fmt.Sprint(i))
		}
		if _, err := store.Append(sc.Batch()); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := url.Parse(prom.WriteURL())
	client, err := remotewrite.NewClient(remotewrite.NewEndpointConfig(u), "test")
	if err != nil {
		t.Fatal(err)
	}
	return prom, store, client
}

// hookedSender passes every request to next, running before ahead of it
// and after with its answer; either may be nil.
type hookedSender struct {
	next   remotewrite.Sender
	before func()
	after  func(err error)
}

func (h hookedSender) Send(ctx context.Context, body []byte) error {
	if h.before != nil {
		h.before()
	}
	err := h.next.Send(ctx, body)
	if h.after != nil {
		h.after(err)
	}
	return err
}

// TestReplayRateLimit: with replay.max_samples_per_second set, a backlog
// drains no faster than the limit (a receiver's ingestion limit would
// otherwise reject the excess), in order, and completely. The pace is read
// from the waits the sender asks for, not from a clock: before each
// request, the waits asked so far cover every sample sent before it at the
// limit, and in all they come to the backlog at the limit.
func TestReplayRateLimit(t *testing.T) {
	const (
		scrapes    = 10
		perScrape  = 100
		rate       = 500.0 // samples/s: the backlog owes 2 s of waits
		instanceID = "rate-limited"
	)
	prom, store, client := replayBacklog(t, instanceID, scrapes, perScrape)
	buf := buffer.New(store, buffer.Options{Capacity: 1000, MaxBatch: 250, Deadline: time.Second})
	defer buf.Close()
	m := newMetrics(prometheus.NewRegistry())
	sent := func() float64 { return testutil.ToFloat64(m.rwSamples.WithLabelValues("rl", "success")) }
	// owed is the wait n samples owe at the limit; each wait asked is
	// rounded down to the nanosecond, hence the slack of 1 ns a wait.
	owed := func(n float64) time.Duration { return time.Duration(n / rate * float64(time.Second)) }
	var (
		paced           time.Duration
		waits, requests int
	)
	hooked := hookedSender{next: client, before: func() {
		requests++
		if n := sent(); paced+time.Duration(waits) < owed(n) {
			t.Errorf("request %d went out after %v samples, owing %v of waits at %v/s; %v were asked", requests, n, owed(n), rate, paced)
		}
	}}
	e := &sender{name: "rl", client: hooked, buf: buf, threshold: 3,
		policy: remotewrite.Policy{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, replayRate: rate, modes: newModes(),
		m: m, log: slog.New(slog.DiscardHandler),
		pace: func(ctx context.Context, d time.Duration) bool {
			paced += d
			waits++
			return ctx.Err() == nil
		}}

	ctx := context.Background()
	buf.Drain()
	e.run(ctx)
	total := float64(scrapes * perScrape)
	if want := owed(total); paced > want || paced+time.Duration(waits) < want {
		t.Errorf("drained %v samples asking %v of waits in %d; the %v/s limit needs %v", total, paced, waits, rate, want)
	}
	if requests < 2 {
		t.Errorf("%d requests: a backlog of one request tests no pace", requests)
	}
	vec, err := prom.Query(ctx, fmt.Sprintf(`count(count_over_time(redis_test_series{instance=%q}[5m]) == %d)`, instanceID, scrapes))
	if err != nil || len(vec) != 1 || vec[0].Value != perScrape {
		t.Errorf("receiver: %v %v; want %d series with %d samples each", vec, err, perScrape, scrapes)
	}
}

// TestReplaySendsEveryBatchOnce drains a backlog of many requests, each
// prepared while the one before is in flight and acked in the background
// while the next is sent: every sample must reach the receiver, and
// none twice (a read of the store before an ack landed would resend).
// Every ack is held, as on a stuck disk, until the sender waits for acks:
// so they are all still pending whenever it looks at the store without
// waiting, which is forced, not made likely; and the whole backlog must
// go out with no ack landed, since acks never hold up a send.
func TestReplaySendsEveryBatchOnce(t *testing.T) {
	const (
		scrapes    = 40
		perScrape  = 100
		instanceID = "acked-behind"
	)
	prom, store, client := replayBacklog(t, instanceID, scrapes, perScrape)
	// At most 250 samples (whole scrapes: 200) a request: 20 requests,
	// each but the first prepared ahead.
	buf := buffer.New(store, buffer.Options{Capacity: 1000, MaxBatch: 250, StoreBatch: 250, Deadline: time.Second})
	defer buf.Close()
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	release := make(chan struct{}) // closed: held acks land
	let := sync.OnceFunc(func() { close(release) })
	t.Cleanup(let)
	sentAtWait := -1.0
	hooked := hookedSender{next: client, after: func(err error) {
		if err != nil {
			// A resend refused as out of order: the store was read with
			// acks pending. Let them land so the run ends; the checks
			// below tell what went wrong.
			let()
		}
	}}
	e := &sender{name: "once", client: hooked, buf: buf, threshold: 3,
		policy: remotewrite.Policy{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, modes: newModes(), m: m, log: slog.New(slog.DiscardHandler),
		holdAck: func() {
			bound := time.NewTimer(time.Minute) // only ends a broken run
			defer bound.Stop()
			select {
			case <-release:
			case <-bound.C:
				t.Errorf("an ack was held a minute and the sender never said it waits for acks: it blocks on an ack in line")
				let()
			}
		},
		awaitAcks: func() {
			if sentAtWait < 0 {
				sentAtWait = testutil.ToFloat64(m.rwSamples.WithLabelValues("once", "success"))
			}
			let()
		}}
	buf.Drain()
	e.run(context.Background())

	if sentAtWait != scrapes*perScrape {
		t.Errorf("the sender first waited for acks with %v of %d samples sent, want all: acks held up sending", sentAtWait, scrapes*perScrape)
	}
	if e.state.mode == modeReplay {
		t.Error("the backlog was sent but the replay never ended (its end was judged before the acks were in)")
	}
	// A batch sent twice is refused by Prometheus as out of order, so it
	// shows as rejected, not as success.
	results := byLabel(t, reg, "redwire_remote_write_samples_total", "result")
	if want := map[string]float64{"success": scrapes * perScrape}; !maps.Equal(results, want) {
		t.Errorf("samples sent by result: %v, want %v: each sample once", results, want)
	}
	if st := buf.Stats().Store; st.Batches != 0 {
		t.Errorf("store still holds %d batches", st.Batches)
	}
	vec, err := prom.Query(context.Background(), fmt.Sprintf(`count(count_over_time(redis_test_series{instance=%q}[5m]) == %d)`, instanceID, scrapes))
	if err != nil || len(vec) != 1 || vec[0].Value != perScrape {
		t.Errorf("receiver: %v %v; want %d series with %d samples each", vec, err, perScrape, scrapes)
	}
}

// TestReplayStartJitter: the replay after an outage waits a random part
// of replay.start_jitter before its second batch (the first is the one
// that found the receiver back), and not at all with 0. The wait is read
// from what the sender asks for, not from a clock.
func TestReplayStartJitter(t *testing.T) {
	for _, jitter := range []time.Duration{time.Hour, 0} {
		t.Run(jitter.String(), func(t *testing.T) {
			// Three failures declare the endpoint down: the batch in
			// flight and the one behind it go to disk, two records. The
			// fourth try takes the first; the second waits the jitter.
			rig := newSenderRig(t, []int{500, 500, 500, 204, 204})
			rig.s.startJitter = jitter
			var waits []time.Duration
			rig.s.pace = func(ctx context.Context, d time.Duration) bool {
				waits = append(waits, d)
				return ctx.Err() == nil
			}
			rig.buf.Append(rigBatch(8))
			rig.buf.Append(rigBatch(8))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rig.fake.done = cancel
			rig.s.run(ctx)

			if rig.fake.taken != 16 {
				t.Fatalf("receiver took %d samples, want 16", rig.fake.taken)
			}
			switch {
			case jitter == 0 && len(waits) != 0:
				t.Errorf("start_jitter 0: the replay waited %v", waits)
			case jitter > 0 && (len(waits) != 1 || waits[0] <= 0 || waits[0] > jitter):
				t.Errorf("start_jitter %v: the replay waited %v, want one wait within it", jitter, waits)
			}
		})
	}
}
