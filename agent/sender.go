package agent

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/pause"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// Circuit states as exported in redwire_circuit_state.
const (
	circuitClosed   = 0 // sending normally
	circuitOpen     = 1 // endpoint down: buffering to disk, probing with backoff
	circuitHalfOpen = 2 // a probe is in flight
)

// sender delivers one remote-write endpoint's buffer, one request at a
// time so every series reaches the receiver in time order. Each lease
// goes out under the receiver policy (remotewrite.Policy); every answer
// is an event for the delivery state machine (delivery.go), and the
// sender does what the transition asks: spill to disk when the endpoint
// goes down, resume memory when it answers again.
//
// During a replay it reads and encodes the next batch of the backlog
// while the current one is in flight, so the receiver does not wait for
// the agent. The backlog goes at the replay's pace (replay.go); with
// replay.order live_first, fresh batches from memory go in between
// (livefirst.go), still one request at a time.
type sender struct {
	name       string
	cfg        remotewrite.EndpointConfig // what it was built from, for reloads
	client     remotewrite.Sender
	buf        *buffer.Buffer
	encs       [2]remotewrite.Encoder // the current request's and the next one's
	policy     remotewrite.Policy
	threshold  int     // degraded.failure_threshold
	replayRate float64 // replay.max_samples_per_second; 0: no limit
	// replayBatch is replay.max_samples_per_send, the size the replay's
	// pace (aimd) steps by.
	replayBatch int
	// startJitter is replay.start_jitter: the replay that follows an
	// outage waits a random part of it, so that a fleet whose link comes
	// back does not replay into one receiver in the same second.
	startJitter time.Duration
	// liveFirst is replay.order live_first: fresh scrapes go out while
	// the backlog drains behind them (livefirst.go).
	liveFirst bool
	// identity labels the out-of-order check's series: the agent's
	// external labels, job and instance.
	identity   labels.Labels
	probeEvery time.Duration // degraded.probe_interval; 0: no probes
	// budget is the endpoint's link budget (budget.go); nil: none.
	budget *linkBudget
	prog   *progress // what the receiver has taken; nil in tests that do not look
	modes  *modes
	m      *metrics
	log    *slog.Logger

	state delivery
	// aimd paces the replay to what the receiver takes, under replayRate
	// (replay.go); storeDue is when the next batch of the backlog may go.
	aimd     remotewrite.AIMD
	storeDue time.Time
	// With live_first: whether the receiver takes out-of-order samples,
	// when to ask again if it did not answer, whether the last request
	// was a fresh batch, and the live stream's encoder (livefirst.go).
	ooo      outOfOrder
	oooRetry time.Time
	lastLive bool
	liveEnc  remotewrite.Encoder
	// published is state for other goroutines (the status page), and
	// changes where its moves are listed (nil: nowhere); see changes.go.
	published atomic.Pointer[delivery]
	changes   *changeLog
	// acking is closed once the last ack made in the background is done;
	// nil if none is pending. Acks stay in order: each waits for the one
	// before.
	acking chan struct{}
	// Test seams, nil in the agent. holdAck runs before every ack: tests
	// hold acks pending with it while the sender moves on. awaitAcks runs
	// when the sender is about to wait for acks still pending: where a
	// test must let them land. pace waits d between replay requests
	// (replay.max_samples_per_second) and reports whether ctx is still
	// on; nil is pause.For.
	holdAck   func()
	awaitAcks func()
	pace      func(ctx context.Context, d time.Duration) bool
}

// outgoing is a lease with the encoder for its requests and, if it was
// prepared ahead, its request body.
type outgoing struct {
	l    *buffer.Lease
	enc  *remotewrite.Encoder
	body []byte // nil: not encoded yet
	err  error  // reading the buffer failed
}

// run sends leases until ctx ends or the buffer is closed (drained, at
// shutdown).
func (s *sender) run(ctx context.Context) {
	defer s.waitAcks()
	if s.cfg.OutOfOrderTimeWindow > 0 {
		var unparking sync.WaitGroup
		defer unparking.Wait()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		unparking.Go(func() { s.unpark(ctx) })
	}
	// Show a state that a reload handed over before any answer moves it.
	s.report(s.state, nil)
	s.showProtocol(s.policy.Protocol.Message())
	s.aimd = remotewrite.NewAIMD(s.replayRate, s.replayBatch)
	if s.liveFirst && s.state.noOutOfOrder {
		// The sender this one replaces found no out-of-order window.
		s.liveFirst = false
		s.buf.SetLiveFirst(false)
	}
	var ahead chan outgoing // the next batch of a backlog, being prepared
	for {
		var o outgoing
		if s.liveFirst && s.budget != nil {
			// The link budget holds the backlog back first.
			s.storeDue = later(s.storeDue, s.budget.backlogDue())
		}
		if s.liveFirst {
			// A fresh batch due before the backlog's turn goes first,
			// the next batch of the backlog staying prepared meanwhile.
			o.l, o.err = s.liveTurn(ctx, ahead != nil)
			o.enc = &s.liveEnc
		}
		if ahead != nil && o.l == nil && o.err == nil {
			o = <-ahead
			ahead = nil
			if o.l == nil {
				// Nothing followed: the backlog may be done once the acks
				// are in.
				s.waitAcks()
				s.checkBacklog()
				if s.state.mode != modeReplay {
					// Nothing uses the second encoder, which only prepares
					// replay requests: let its buffers go.
					s.encs[1] = remotewrite.Encoder{}
				}
			}
		}
		if o.l == nil && o.err == nil {
			// Nothing is being prepared now: the first encoder is free,
			// and outside replays the only one used. Next reads the
			// store from its front, so the acks must be in.
			s.waitAcks()
			o.l, o.err = s.buf.Next(ctx)
			o.enc = &s.encs[0]
		}
		switch {
		case errors.Is(o.err, buffer.ErrClosed), ctx.Err() != nil:
			return
		case o.err != nil:
			// The store could not be read: say so, wait, try again. The
			// data stays where it is.
			s.log.Error("reading the buffer failed", "err", o.err)
			if !pause.For(ctx, s.policy.MaxBackoff) {
				return
			}
			continue
		}
		if o.l.FromStore() && !s.waitStoreDue(ctx) {
			s.m.countDropped(s.name, s.buf.Release(o.l))
			return
		}
		if o.l.FromStore() && ahead == nil {
			other := &s.encs[0]
			if o.enc == other {
				other = &s.encs[1]
			}
			ahead = s.prepare(o.l, other)
		}
		s.send(ctx, o, o.l.FromStore() && ahead != nil)
		if ctx.Err() != nil {
			// Stopped mid-delivery (shutdown, or a reload replacing this
			// sender): the batch stays the head for whoever sends next.
			if ahead != nil {
				// Done with the encoder. The lease was only a view, but
				// any metadata it carried is still to be sent.
				if p := <-ahead; p.l != nil {
					s.buf.Unsent(p.l)
					if !o.l.FromStore() {
						// A fresh batch was in flight (live_first): the
						// backlog's prepared lease is given back here.
						s.m.countDropped(s.name, s.buf.Release(p.l))
					}
				}
			}
			s.m.countDropped(s.name, s.buf.Release(o.l))
			return
		}
	}
}

// prepare reads the lease that follows l in the store and encodes it with
// enc, in the background; the channel yields it (l nil if nothing follows).
func (s *sender) prepare(l *buffer.Lease, enc *remotewrite.Encoder) chan outgoing {
	ch := make(chan outgoing, 1)
	go func() {
		next, err := s.buf.Following(l)
		o := outgoing{l: next, enc: enc, err: err}
		if next != nil {
			// An encoding error is left for the policy to find and report.
			o.body, _ = enc.Encode(&next.Batch)
		}
		ch <- o
	}()
	return ch
}

// send delivers a lease under the receiver policy until the receiver has
// answered for all of it, or ctx ends (then what is left of the lease
// stays the buffer's head). With ackLater, a lease the receiver took is
// acked in the background, while the next request, prepared meanwhile,
// is already on its way: the ack is a bbolt commit, fsync included,
// which the receiver need not wait for.
func (s *sender) send(ctx context.Context, o outgoing, ackLater bool) {
	t := &leaseTry{s: s, l: o.l}
	if err := s.policy.Deliver(ctx, t, o.enc, o.l.Batch, o.body, t); err != nil {
		return // ctx ended: the agent's sender never gives up
	}
	if ackLater {
		s.ackInBackground(o.l)
	} else {
		s.ack(o.l)
	}
	if o.l.FromStore() && t.taken > 0 {
		s.paceReplay(ctx, t.taken, t.took)
	}
	if !ackLater {
		s.checkBacklog()
	}
}

// checkBacklog tells the state machine once the store is empty; the acks
// must be in.
func (s *sender) checkBacklog() {
	if s.state.mode == modeReplay && s.buf.Stats().Store.Batches == 0 {
		s.handle(evBacklogEmpty, nil)
	}
}

// handle feeds ev to the state machine and does what the transition
// asks, but for warnRefused, which it returns for the caller to log with
// what was refused. err is the answer behind ev, if any.
func (s *sender) handle(ev event, err error) effect {
	var fx effect
	before := s.state
	s.state, fx = s.state.on(ev, s.threshold)
	s.report(before, err)
	if fx&warnFailing != 0 {
		s.log.Warn("remote write failing; retrying with backoff", errAttrs(err)...)
	}
	if fx&goDown != 0 {
		dropped, spillErr := s.buf.Spill()
		s.m.countDropped(s.name, dropped)
		s.modes.set(s.name, true)
		s.m.degraded.WithLabelValues(s.name).Set(1)
		s.m.circuitState.WithLabelValues(s.name).Set(circuitOpen)
		attrs := append(errAttrs(err), "consecutive_failures", s.state.failures)
		if spillErr != nil {
			attrs = append(attrs, "spill_err", spillErr)
		}
		s.log.Warn("endpoint down: buffering to disk and sampling less until it answers", attrs...)
	}
	if fx&pauseOn != 0 {
		s.m.paused.WithLabelValues(s.name, pauseUnauthorized).Set(1)
		s.log.Error("receiver refuses our credentials or URL: sending paused, data kept; fix the config", errAttrs(err)...)
	}
	if fx&pauseOff != 0 {
		s.m.paused.WithLabelValues(s.name, pauseUnauthorized).Set(0)
	}
	if fx&comeBack != 0 {
		s.replayStarts()
		s.buf.Resume()
		s.modes.set(s.name, false)
		s.m.degraded.WithLabelValues(s.name).Set(0)
		s.m.circuitState.WithLabelValues(s.name).Set(circuitClosed)
		s.log.Info("endpoint answers again: replaying the backlog oldest-first", "backlog_samples", s.buf.Stats().Store.Samples)
	}
	if fx&fallBackFIFO != 0 {
		s.liveFirst = false
		s.buf.SetLiveFirst(false)
		s.log.Warn("receiver refuses out-of-order samples: replay.order live_first falls back to fifo for this endpoint (fresh scrapes wait behind the backlog); give the receiver an out-of-order window, or set replay.order: fifo",
			errAttrs(err)...)
	}
	if fx&replayDone != 0 {
		if s.prog != nil {
			s.prog.replayEnded()
		}
		s.log.Info("backlog replayed; back to normal")
		if err := s.buf.Compact(); err != nil {
			s.log.Warn("compacting the drained buffer file failed", "err", err)
		}
	}
	return fx
}

// showProtocol sets redwire_remote_write_protocol to m, over what a
// sender of the endpoint before a reload showed.
func (s *sender) showProtocol(m remotewrite.Message) {
	for _, each := range []remotewrite.Message{remotewrite.MessageV1, remotewrite.MessageV2} {
		v := 0.0
		if each == m {
			v = 1
		}
		s.m.rwProtocol.WithLabelValues(s.name, string(each)).Set(v)
	}
}

// pauseUnauthorized is the reason label of redwire_remote_write_paused.
const pauseUnauthorized = "unauthorized"

// countRequest records one remote-write request's duration and result,
// and returns the result label: every request the sender makes, lease or
// parked record, is counted the same way.
func (s *sender) countRequest(took time.Duration, err error) string {
	s.m.rwDuration.WithLabelValues(s.name).Observe(took.Seconds())
	result := "success"
	if err != nil {
		result = remotewrite.ClassOf(err).String()
	}
	s.m.rwRequests.WithLabelValues(s.name, result).Inc()
	return result
}

// dropRefused counts what the receiver refused of part for good (less
// what a 2.0 receiver said it wrote) by cause and as dropped, with its
// time ranges, and returns how many samples that is.
func (s *sender) dropRefused(part *sample.Batch, err error) int {
	refused := remotewrite.Refused(part.Len(), err)
	s.m.rwRefused.WithLabelValues(s.name, remotewrite.CauseOf(err).String()).Add(float64(refused))
	if refused > 0 {
		s.m.countDropped(s.name, []buffer.Dropped{{Reason: buffer.DropRejected, Samples: refused, Spans: sample.AddSpans(nil, part.Samples)}})
	}
	return refused
}

// leaseTry is one lease on its way: the policy's Sender (the endpoint's
// client, with the circuit gauge around it) and its Handler.
type leaseTry struct {
	s     *sender
	l     *buffer.Lease
	taken int           // samples the receiver took
	took  time.Duration // by the requests that it took
}

// Send marks the circuit half-open while a probe of a down endpoint is
// in flight.
func (t *leaseTry) Send(ctx context.Context, body []byte) error {
	t.halfOpen()
	return t.s.client.Send(ctx, body)
}

// SendMessage is Send of a remote write 2.0 body. A client that cannot
// say what the receiver wrote gets it as Send, and the policy falls back.
func (t *leaseTry) SendMessage(ctx context.Context, m remotewrite.Message, body []byte) (remotewrite.Written, error) {
	t.halfOpen()
	if ms, ok := t.s.client.(remotewrite.MessageSender); ok {
		return ms.SendMessage(ctx, m, body)
	}
	return remotewrite.Written{}, t.s.client.Send(ctx, body)
}

// Pace holds a request back for the endpoint's link budget (budget.go):
// a batch from the store as backlog, any other as live data.
func (t *leaseTry) Pace(ctx context.Context, body []byte) error {
	s := t.s
	if s.budget == nil {
		return nil
	}
	st := streamLive
	if t.l.FromStore() {
		st = streamBacklog
	}
	return s.budget.pace(ctx, len(body), st, s.pauseFor, s.m, s.name)
}

func (t *leaseTry) halfOpen() {
	if t.s.state.mode == modeDegraded {
		t.s.m.circuitState.WithLabelValues(t.s.name).Set(circuitHalfOpen)
	}
}

// FellBack says once, in the log and on redwire_remote_write_protocol,
// that the receiver does not take remote write 2.0.
func (t *leaseTry) FellBack(from, to remotewrite.Message, err error) {
	s := t.s
	s.showProtocol(to)
	s.log.Warn("receiver does not take remote write 2.0: sending 1.0 from now on, the batch in flight included", append(errAttrs(err), "from", from, "to", to)...)
}

// Request records a request's outcome.
func (t *leaseTry) Request(samples int, took time.Duration, err error) {
	s := t.s
	result := s.countRequest(took, err)
	if remotewrite.ClassOf(err) == remotewrite.Reject {
		// What a 2.0 receiver wrote of a refused request was sent: the
		// rest is what Answered counts dropped.
		refused := remotewrite.Refused(samples, err)
		s.m.rwSamples.WithLabelValues(s.name, "success").Add(float64(samples - refused))
		samples = refused
	}
	s.m.rwSamples.WithLabelValues(s.name, result).Add(float64(samples))
	if err == nil {
		s.m.lastSendSuccess.WithLabelValues(s.name).SetToCurrentTime()
		t.took += took
	}
}

// Answered trims what the receiver answered for from the lease, so that
// a retry, a spill when the endpoint goes down, or Close carries only
// the rest; a refused part is dropped and counted, less what a 2.0
// receiver said it wrote of it.
func (t *leaseTry) Answered(part *sample.Batch, err error) {
	s, n := t.s, part.Len()
	if err != nil {
		// Its metadata, if it carried the lease's, was not delivered.
		s.buf.Unsent(t.l)
	}
	s.buf.Taken(t.l, n)
	if err != nil && remotewrite.CauseOf(err) == remotewrite.CauseAge {
		// Refused for its age: kept, not dropped (parked.go).
		s.handle(evRefused, err)
		s.park(part, err)
		return
	}
	if err != nil {
		refused := s.dropRefused(part, err)
		if s.handle(evRefused, err)&warnRefused != 0 {
			s.log.Error("receiver rejected a batch; dropping it", append(errAttrs(err), "samples", refused, "written", n-refused)...)
		}
		return
	}
	t.taken += n
	if s.prog != nil {
		s.prog.taken(part, t.l.FromStore(), time.Now())
	}
	if t.l.FromStore() {
		s.m.replaySamples.WithLabelValues(s.name).Add(float64(n))
		s.handle(evSentStored, nil)
	} else {
		s.handle(evSent, nil)
	}
}

// Wait waits out the policy's wait before the next try. While the
// endpoint is down, it asks every probeEvery (jittered) with an empty
// request whether the receiver is back, and ends the wait at the first
// one answered 2xx: a return is noticed in about probeEvery, not after a
// backoff grown to max_backoff. It never probes a receiver that asked for
// a pause (429, Retry-After), nor one that refuses our credentials (a
// probe cannot mend them), and never has more than one request out.
func (t *leaseTry) Wait(ctx context.Context, d time.Duration, err error) bool {
	s := t.s
	var re *remotewrite.Error
	asked := remotewrite.ClassOf(err) == remotewrite.RateLimited || (errors.As(err, &re) && re.RetryAfter > 0)
	if s.probeEvery <= 0 || s.state.mode != modeDegraded || s.state.paused || asked || d <= s.probeEvery {
		return pause.For(ctx, d)
	}
	end := time.Now().Add(d)
	for {
		if !pause.For(ctx, min(remotewrite.Jitter(s.probeEvery), time.Until(end))) {
			return false
		}
		if !time.Now().Before(end) {
			return true
		}
		err := s.client.Send(ctx, remotewrite.ProbeBody)
		result := "success"
		if err != nil {
			result = remotewrite.ClassOf(err).String()
		}
		s.m.rwProbes.WithLabelValues(s.name, result).Inc()
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			return false
		}
	}
}

// Failed feeds a failed try to the state machine; the agent never gives
// up on a batch.
func (t *leaseTry) Failed(err error, _ time.Duration) bool {
	s := t.s
	s.m.rwRetries.WithLabelValues(s.name).Inc()
	if s.state.mode != modeDegraded {
		// A receiver that is down is not busy: the replay's pace is for
		// one that answers, and a push back on fresh data (live_first)
		// slows the backlog too.
		s.aimd.PushedBack(time.Now(), err)
	}
	ev := evFailed
	if remotewrite.ClassOf(err) == remotewrite.Unauthorized {
		ev = evUnauthorized
	}
	s.handle(ev, err)
	if s.state.mode == modeDegraded {
		s.m.circuitState.WithLabelValues(s.name).Set(circuitOpen)
	}
	return true
}

func (s *sender) ack(l *buffer.Lease) {
	s.waitAcks()
	s.ackNow(l)
}

// ackInBackground acks l after the acks before it, without waiting.
func (s *sender) ackInBackground(l *buffer.Lease) {
	prev, done := s.acking, make(chan struct{})
	s.acking = done
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		s.ackNow(l)
	}()
}

func (s *sender) ackNow(l *buffer.Lease) {
	if s.holdAck != nil {
		s.holdAck()
	}
	if err := s.buf.Ack(l); err != nil {
		s.log.Error("removing a sent batch from the buffer failed; it may be sent twice", "err", err)
	}
}

// waitAcks returns once every background ack is done.
func (s *sender) waitAcks() {
	if s.acking != nil {
		if s.awaitAcks != nil {
			s.awaitAcks()
		}
		<-s.acking
		s.acking = nil
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
