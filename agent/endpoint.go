package agent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// Circuit states as exported in redwire_circuit_state.
const (
	circuitClosed   = 0 // sending normally
	circuitOpen     = 1 // endpoint down: buffering to disk, probing with backoff
	circuitHalfOpen = 2 // a probe is in flight
)

// endpoint delivers one remote-write endpoint's buffer, one request at a
// time so every series reaches the receiver in time order. During a
// replay it reads and encodes the next batch of the backlog while the
// current one is in flight, so the receiver does not wait for the agent.
//
// Normal: batches come from memory. After failureThreshold consecutive
// failures the circuit opens: the batch in flight and memory are committed
// to disk, new scrapes go to disk, scraping slows down, and the oldest
// batch is retried as a probe with backoff and jitter. The first success
// closes the circuit; the backlog then drains oldest-first while new
// batches append to its tail, and memory takes over once it is empty.
type endpoint struct {
	name       string
	cfg        remotewrite.EndpointConfig // what it was built from, for reloads
	client     *remotewrite.Client
	buf        *buffer.Buffer
	encs       [2]remotewrite.Encoder // the current request's and the next one's
	threshold  int
	minWait    time.Duration
	maxWait    time.Duration
	replayRate float64
	modes      *modes
	m          *metrics
	log        *slog.Logger

	failures int    // consecutive failed sends
	open     bool   // circuit open
	paused   string // reason sending is paused (401/403/404), "" if not
	replay   bool   // draining a backlog; logs its start and end once
	rejected bool   // logs a run of rejections once
	// acking is closed once the last ack made in the background is done;
	// nil if none is pending. Acks stay in order: each waits for the one
	// before.
	acking chan struct{}
	// slowAcks, if set, runs before every ack: tests play a slow disk
	// with it, to hold acks pending while the sender moves on.
	slowAcks func()
}

// outgoing is a lease with the encoder for its requests and, if it was
// prepared ahead, its request body.
type outgoing struct {
	l    *buffer.Lease
	enc  *remotewrite.Encoder
	body []byte // nil: not encoded yet
	err  error  // reading the buffer failed
}

func (e *endpoint) run(ctx context.Context) {
	defer e.waitAcks()
	var ahead chan outgoing // the next batch of a backlog, being prepared
	for {
		var o outgoing
		if ahead != nil {
			o = <-ahead
			ahead = nil
			if o.l == nil {
				// Nothing followed: the backlog may be done once the acks
				// are in.
				e.waitAcks()
				e.checkReplayDone()
				if !e.replay {
					// Nothing uses the second encoder, which only prepares
					// replay requests: let its buffers go.
					e.encs[1] = remotewrite.Encoder{}
				}
			}
		}
		if o.l == nil && o.err == nil {
			// Nothing is being prepared now: the first encoder is free,
			// and outside replays the only one used. Next reads the
			// store from its front, so the acks must be in.
			e.waitAcks()
			o.l, o.err = e.buf.Next(ctx)
			o.enc = &e.encs[0]
		}
		switch {
		case errors.Is(o.err, buffer.ErrClosed), ctx.Err() != nil:
			return
		case o.err != nil:
			// The store could not be read: say so, wait, try again. The
			// data stays where it is.
			e.log.Error("reading the buffer failed", "err", o.err)
			if !sleep(ctx, e.maxWait) {
				return
			}
			continue
		}
		if o.l.FromStore {
			other := &e.encs[0]
			if o.enc == other {
				other = &e.encs[1]
			}
			ahead = e.prepare(o.l, other)
		}
		e.deliver(ctx, o, ahead != nil)
		if ctx.Err() != nil {
			// Stopped mid-delivery (shutdown, or a reload replacing this
			// sender): the batch stays the head for whoever sends next.
			if ahead != nil {
				// Done with the encoder. The lease was only a view, but
				// any metadata it carried is still to be sent.
				if p := <-ahead; p.l != nil {
					e.buf.Unsent(p.l)
				}
			}
			e.buf.Release(o.l)
			return
		}
	}
}

// prepare reads the lease that follows l in the store and encodes it with
// enc, in the background; the channel yields it (l nil if nothing follows).
func (e *endpoint) prepare(l *buffer.Lease, enc *remotewrite.Encoder) chan outgoing {
	ch := make(chan outgoing, 1)
	go func() {
		next, err := e.buf.Following(l)
		o := outgoing{l: next, enc: enc, err: err}
		if next != nil {
			// An encoding error is left for deliver to find and report.
			o.body, _ = enc.Encode(&next.Batch)
		}
		ch <- o
	}()
	return ch
}

// deliver sends a lease until the receiver takes it, rejects it for good,
// or ctx ends (then the lease stays the buffer's head). With ackLater, a
// lease the receiver took is acked in the background, while the next
// request, prepared meanwhile, is already on its way: the ack is a bbolt
// commit, fsync included, which the receiver need not wait for.
func (e *endpoint) deliver(ctx context.Context, o outgoing, ackLater bool) {
	l := o.l
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(e.minWait),
		backoff.WithMaxInterval(e.maxWait),
		backoff.WithMaxElapsedTime(0),
	)
	for try := 0; ; try++ {
		if try > 0 {
			e.m.rwRetries.WithLabelValues(e.name).Inc()
		}
		if e.open {
			e.m.circuitState.WithLabelValues(e.name).Set(circuitHalfOpen)
		}
		// A body encoded ahead serves the first try; a 413 split reuses
		// the encoder's buffers, so later tries encode again.
		body := o.body
		if try > 0 {
			body = nil
		}
		taken, err := e.send(ctx, o.enc, &l.Batch, body)
		if err == nil {
			e.succeeded(ctx, l, ackLater)
			return
		}
		if taken > 0 {
			e.buf.Taken(l, taken)
		}
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		switch remotewrite.ClassOf(err) {
		case remotewrite.Reject:
			e.reject(l, err)
			return
		case remotewrite.Unauthorized:
			// An expired token must not throw the backlog away: keep
			// buffering, probe at the slowest pace.
			e.failed(err)
			e.pause("unauthorized", err)
			wait = jitter(e.maxWait)
		default: // Retry, RateLimited
			e.failed(err)
			wait = bo.NextBackOff()
			var re *remotewrite.Error
			if errors.As(err, &re) && re.RetryAfter > 0 {
				wait = re.RetryAfter
			}
		}
		if e.open {
			e.m.circuitState.WithLabelValues(e.name).Set(circuitOpen)
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// send posts a batch (body: its encoding by enc, nil if not done yet),
// halving it on 413 until the halves fit. It returns how many of b's
// first samples the receiver took: all of them when err is nil, and after
// a failure part way through a split, those of the halves it took.
func (e *endpoint) send(ctx context.Context, enc *remotewrite.Encoder, b *sample.Batch, body []byte) (int, error) {
	err := e.post(ctx, enc, b, body)
	switch {
	case err == nil:
		return b.Len(), nil
	case remotewrite.ClassOf(err) != remotewrite.TooLarge:
		return 0, err
	case b.Len() <= 1:
		return 0, &remotewrite.Error{StatusCode: 413, Class: remotewrite.Reject, Body: "a single sample is too large"}
	}
	half := b.Len() / 2
	first := sample.Batch{Samples: b.Samples[:half], Metadata: b.Metadata}
	if n, err := e.send(ctx, enc, &first, nil); err != nil {
		return n, err
	}
	second := sample.Batch{Samples: b.Samples[half:]}
	n, err := e.send(ctx, enc, &second, nil)
	return half + n, err
}

// post makes one request and records its outcome.
func (e *endpoint) post(ctx context.Context, enc *remotewrite.Encoder, b *sample.Batch, body []byte) error {
	if body == nil {
		var err error
		if body, err = enc.Encode(b); err != nil {
			return &remotewrite.Error{Class: remotewrite.Reject, Err: err}
		}
	}
	start := time.Now()
	err := e.client.Send(ctx, body)
	e.m.rwDuration.WithLabelValues(e.name).Observe(time.Since(start).Seconds())
	result := "success"
	if err != nil {
		result = remotewrite.ClassOf(err).String()
	}
	e.m.rwRequests.WithLabelValues(e.name, result).Inc()
	e.m.rwSamples.WithLabelValues(e.name, result).Add(float64(b.Len()))
	if err == nil {
		e.m.lastSendSuccess.WithLabelValues(e.name).SetToCurrentTime()
	}
	return err
}

func (e *endpoint) succeeded(ctx context.Context, l *buffer.Lease, ackLater bool) {
	if ackLater {
		e.ackInBackground(l)
	} else {
		e.ack(l)
	}
	e.rejected = false
	e.answered()
	if l.FromStore {
		e.m.replaySamples.WithLabelValues(e.name).Add(float64(l.Batch.Len()))
		e.replay = true
		if e.replayRate > 0 {
			sleep(ctx, time.Duration(float64(l.Batch.Len())/e.replayRate*float64(time.Second)))
		}
	}
	if !ackLater {
		e.checkReplayDone()
	}
}

// checkReplayDone ends a replay once the store is empty; its acks must be
// in.
func (e *endpoint) checkReplayDone() {
	if e.replay && e.buf.Stats().Store.Batches == 0 {
		e.replay = false
		e.log.Info("backlog replayed; back to normal")
		if err := e.buf.Store().Compact(); err != nil {
			e.log.Warn("compacting the drained buffer file failed", "err", err)
		}
	}
}

// answered closes the circuit: the receiver took or judged a batch.
func (e *endpoint) answered() {
	e.failures = 0
	if e.paused != "" {
		e.m.paused.WithLabelValues(e.name, e.paused).Set(0)
		e.paused = ""
	}
	if !e.open {
		return
	}
	e.open = false
	e.buf.Resume()
	e.modes.set(e.name, false)
	e.m.degraded.WithLabelValues(e.name).Set(0)
	e.m.circuitState.WithLabelValues(e.name).Set(circuitClosed)
	e.log.Info("endpoint answers again: replaying the backlog oldest-first", "backlog_samples", e.buf.Stats().Store.Samples)
}

// failed counts a failed send toward opening the circuit.
func (e *endpoint) failed(err error) {
	e.failures++
	if e.open || e.failures < e.threshold {
		if e.failures == 1 {
			e.log.Warn("remote write failing; retrying with backoff", errAttrs(err)...)
		}
		return
	}
	e.open = true
	dropped, spillErr := e.buf.Spill()
	e.countDropped(dropped)
	e.modes.set(e.name, true)
	e.m.degraded.WithLabelValues(e.name).Set(1)
	e.m.circuitState.WithLabelValues(e.name).Set(circuitOpen)
	attrs := append(errAttrs(err), "consecutive_failures", e.failures)
	if spillErr != nil {
		attrs = append(attrs, "spill_err", spillErr)
	}
	e.log.Warn("endpoint down: buffering to disk and sampling less until it answers", attrs...)
}

func (e *endpoint) pause(reason string, err error) {
	if e.paused == reason {
		return
	}
	e.paused = reason
	e.m.paused.WithLabelValues(e.name, reason).Set(1)
	e.log.Error("receiver refuses our credentials or URL: sending paused, data kept; fix the config", errAttrs(err)...)
}

// reject drops a batch the receiver will never take, and says why once per
// run of rejections.
func (e *endpoint) reject(l *buffer.Lease, err error) {
	if !e.rejected {
		e.rejected = true
		e.log.Error("receiver rejected a batch; dropping it", append(errAttrs(err), "samples", l.Batch.Len())...)
	}
	e.m.samplesDropped.WithLabelValues(e.name, "rejected").Add(float64(l.Batch.Len()))
	e.buf.Unsent(l)
	e.ack(l)
	e.answered()
}

func (e *endpoint) ack(l *buffer.Lease) {
	e.waitAcks()
	e.ackNow(l)
}

// ackInBackground acks l after the acks before it, without waiting.
func (e *endpoint) ackInBackground(l *buffer.Lease) {
	prev, done := e.acking, make(chan struct{})
	e.acking = done
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		e.ackNow(l)
	}()
}

func (e *endpoint) ackNow(l *buffer.Lease) {
	if e.slowAcks != nil {
		e.slowAcks()
	}
	if err := e.buf.Ack(l); err != nil {
		e.log.Error("removing a sent batch from the buffer failed; it may be sent twice", "err", err)
	}
}

// waitAcks returns once every background ack is done.
func (e *endpoint) waitAcks() {
	if e.acking != nil {
		<-e.acking
		e.acking = nil
	}
}

func (e *endpoint) countDropped(ds []buffer.Dropped) {
	for _, d := range ds {
		if d.Samples > 0 {
			e.m.samplesDropped.WithLabelValues(e.name, d.Reason).Add(float64(d.Samples))
		}
	}
}

func errAttrs(err error) []any {
	attrs := []any{"err", err}
	var re *remotewrite.Error
	if errors.As(err, &re) && re.StatusCode != 0 {
		attrs = append(attrs, "status", strconv.Itoa(re.StatusCode))
	}
	return attrs
}

// jitter spreads d over [d/2, d) so many agents do not probe in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
