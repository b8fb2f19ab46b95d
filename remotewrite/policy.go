package remotewrite

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/redwire/redwire/internal/pause"
	"github.com/redwire/redwire/sample"
)

// Sender makes one remote-write request of an encoded body. *Client is
// the real one; the seam lets the policy be tested against a fake, as
// Prometheus' WriteClient does.
type Sender interface {
	Send(ctx context.Context, body []byte) error
}

// Policy is redwire's one answer to what a receiver says, followed by the
// agent's senders and by `redwire replay` alike:
//
//	2xx                 taken
//	413                 halve and send the halves, oldest first; a single
//	                    sample too large is refused
//	400, 409, 415, 4xx  refused for good: the caller drops and counts
//	429, 5xx, network   retried with backoff and jitter, honouring
//	                    Retry-After
//	401, 403, 404       retried at the slowest pace (MaxBackoff, jittered),
//	                    unless the caller gives up
//
// After a split, only what the receiver has not answered for is sent
// again: a receiver refuses samples older than the newest it holds for a
// series, so resending a half it took could have the whole request
// refused, and the half it never had with it.
//
// An endpoint configured for remote write 2.0 falls back to 1.0 when the
// receiver shows it does not take 2.0 (see Protocol); the part it showed
// it with is sent again as 1.0 at once, and its first answer is not one
// the Handler hears. A 2.0 receiver that refuses a request may say how
// many of its samples it wrote anyway (Error.Written): Refused counts the
// rest.
type Policy struct {
	// MinBackoff and MaxBackoff bound the wait between tries of a batch.
	MinBackoff, MaxBackoff time.Duration
	// Protocol is the endpoint's message, shared by every Deliver to
	// it; nil sends 1.0.
	Protocol *Protocol
	// Window is the receiver's declared out-of-order window
	// (out_of_order_time_window); 0: none declared. Samples older than
	// now minus Window are refused (CauseAge) without being sent: the
	// receiver would refuse them (window.go).
	Window time.Duration
}

// Handler hears what becomes of a batch while Deliver sends it. Deliver
// calls it from its own goroutine, in order.
type Handler interface {
	// Request reports one request of samples, answered after took with
	// err (nil: taken).
	Request(samples int, took time.Duration, err error)
	// Answered reports that part, the batch's next samples, is done:
	// taken (err nil) or refused for good (err's class is Reject; CauseOf
	// says why). The parts of a batch are disjoint, come in the batch's
	// order and together cover it exactly once, so a caller may trim
	// part.Len() samples off the front of what it keeps: a refused
	// request that Deliver isolated (see isolate.go) is answered, once
	// isolated, in runs of one verdict, though its samples were sent in
	// another order. The first part carries the batch's metadata, if any.
	// Deliver sends only what follows.
	Answered(part *sample.Batch, err error)
	// Failed reports a try that left the rest of the batch unanswered
	// (class Retry, RateLimited or Unauthorized), and the wait the policy
	// chose before the next try. Returning false gives up: Deliver
	// returns err.
	Failed(err error, wait time.Duration) bool
}

// Waiter is a Handler that waits between tries itself: it may end the
// wait early, as the agent does when a probe finds a down receiver back.
// It must honour a Retry-After in err. Wait reports false if ctx ended.
type Waiter interface {
	Wait(ctx context.Context, d time.Duration, err error) bool
}

// Pacer is a Handler that holds a request back before it is sent: the
// agent's link budget (Budget). Pace returns once body may go, or ctx's
// error if ctx ended first; the time it waits is not the request's.
type Pacer interface {
	Pace(ctx context.Context, body []byte) error
}

// Deliver sends b until the receiver has answered for all of it. body is
// b's encoding by enc if it was prepared ahead, nil otherwise; it is used
// only if enc wrote it in the message the endpoint speaks now. It returns
// nil once every sample was answered for (h.Answered says how), ctx's
// error if ctx ended first, or the error h.Failed gave up on.
func (p Policy) Deliver(ctx context.Context, s Sender, enc *Encoder, b sample.Batch, body []byte, h Handler) error {
	if p.Window > 0 {
		return p.deliverInWindow(ctx, s, enc, b, body, h)
	}
	return p.deliver(ctx, s, enc, b, body, h)
}

// deliver is Deliver of a batch the receiver's window does not cut.
func (p Policy) deliver(ctx context.Context, s Sender, enc *Encoder, b sample.Batch, body []byte, h Handler) error {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(p.MinBackoff),
		backoff.WithMaxInterval(p.MaxBackoff),
		backoff.WithMaxElapsedTime(0),
	)
	var st tries
	for {
		done, err := p.send(ctx, s, enc, &b, body, h, &st)
		if err == nil {
			return nil
		}
		st.maybeStored = !st.split && done == 0 && (st.maybeStored || !answered(err))
		// What was answered for is not sent again; a body encoded ahead
		// covered all of b, so the rest is encoded anew.
		rest := sample.Batch{Samples: b.Samples[done:]}
		if done == 0 {
			rest.Metadata = b.Metadata // not yet delivered
		}
		b = rest
		body = nil
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := p.wait(err, bo)
		if !h.Failed(err, wait) {
			return err
		}
		waitFor := pause.For
		if w, ok := h.(Waiter); ok {
			waitFor = func(ctx context.Context, d time.Duration) bool { return w.Wait(ctx, d, err) }
		}
		if !waitFor(ctx, wait) {
			return ctx.Err()
		}
	}
}

// send posts b, halving it on 413 until the halves fit, and isolating
// the refused samples of a request the receiver rolled back. It returns
// how many of b's first samples were answered for (taken or refused):
// all of them when err is nil.
func (p Policy) send(ctx context.Context, s Sender, enc *Encoder, b *sample.Batch, body []byte, h Handler, st *tries) (int, error) {
	if st.iso != nil {
		return p.isolate(ctx, s, enc, b, nil, h, st)
	}
	if st.cutoffErr != nil && slices.ContainsFunc(b.Samples, func(x sample.Sample) bool { return x.T <= st.cutoff }) {
		// Some of b is past a cutoff the receiver showed: answered
		// refused unsent, and the rest sent.
		return p.isolate(ctx, s, enc, b, nil, h, st)
	}
	sent, err := p.post(ctx, s, enc, b, body, h)
	switch {
	case !sent: // b does not encode
		h.Answered(b, err)
		return b.Len(), nil
	case st.maybeStored && !st.split && outOfOrder(err):
		h.Answered(b, nil) // stored by the try that went unanswered
		return b.Len(), nil
	case ClassOf(err) == Reject && b.Len() > 1 && RolledBack(err):
		return p.isolate(ctx, s, enc, b, err, h, st)
	case err == nil, ClassOf(err) == Reject:
		if b.Len() == 1 && pastCutoff(err) && RolledBack(err) {
			st.pastCutoff(b.Samples[0].T, err)
		}
		h.Answered(b, err)
		return b.Len(), nil
	case ClassOf(err) != TooLarge:
		return 0, err
	case b.Len() <= 1:
		h.Answered(b, &Error{StatusCode: 413, Class: Reject, Body: "a single sample is too large"})
		return b.Len(), nil
	}
	st.split = true
	half := b.Len() / 2
	first := sample.Batch{Samples: b.Samples[:half], Metadata: b.Metadata}
	if n, err := p.send(ctx, s, enc, &first, nil, h, st); err != nil {
		return n, err
	}
	second := sample.Batch{Samples: b.Samples[half:]}
	n, err := p.send(ctx, s, enc, &second, nil, h, st)
	return half + n, err
}

// post sends b as one request, encoding it unless body is its encoding
// in the message the endpoint speaks now, and tells h of it. A 2.0
// request that shows the receiver takes only 1.0 is sent again as 1.0,
// and only the second answer is returned. sent is false if b did not
// encode: then err says why, and no request was made.
func (p Policy) post(ctx context.Context, s Sender, enc *Encoder, b *sample.Batch, body []byte, h Handler) (sent bool, err error) {
	ms, speaks2 := s.(MessageSender)
	msg := p.Protocol.Message()
	if !speaks2 {
		msg = MessageV1
	}
	if enc.use(msg, p.Protocol.NativeHistograms()) {
		// Prepared before a fall back, or by an encoder not yet told.
		body = nil
	}
	if body == nil {
		if body, err = enc.Encode(b); err != nil {
			return false, &Error{Class: Reject, Err: err}
		}
	}
	if pc, ok := h.(Pacer); ok {
		if err := pc.Pace(ctx, body); err != nil {
			// Not sent; Deliver returns ctx's error.
			return true, &Error{Class: Retry, Err: err}
		}
	}
	start := time.Now()
	if msg == MessageV2 {
		var w Written
		w, err = ms.SendMessage(ctx, msg, body)
		if why := unsupported(w, err); why != nil {
			h.Request(b.Len(), time.Since(start), why)
			if p.Protocol.fallBack() {
				if fh, ok := h.(FallbackHandler); ok {
					fh.FellBack(msg, MessageV1, why)
				}
			}
			return p.post(ctx, s, enc, b, nil, h) // as 1.0 now
		}
	} else {
		err = s.Send(ctx, body)
	}
	h.Request(b.Len(), time.Since(start), err)
	return true, err
}

// unsupported is the error of Class Unsupported that tells the answer w,
// err to a 2.0 request came from a receiver that does not take 2.0, or
// nil if it did not.
func unsupported(w Written, err error) error {
	var re *Error
	switch {
	case err == nil && !w.Reported:
		return &Error{Class: Unsupported, Body: "answered 2xx without " + headerSamplesWritten + ": a remote write 1.x receiver, which wrote nothing of a 2.0 request"}
	case errors.As(err, &re) && re.StatusCode == http.StatusUnsupportedMediaType:
		return &Error{StatusCode: re.StatusCode, Class: Unsupported, Body: re.Body}
	}
	return nil
}

// wait is how long to wait after err before the next try.
func (p Policy) wait(err error, bo backoff.BackOff) time.Duration {
	if ClassOf(err) == Unauthorized {
		// An expired token or a wrong URL needs an operator: probe at the
		// slowest pace until one fixes it.
		return Jitter(p.MaxBackoff)
	}
	var re *Error
	if errors.As(err, &re) && re.RetryAfter > 0 {
		return re.RetryAfter
	}
	return bo.NextBackOff() // randomised ±50%: the jitter
}

// Jitter spreads d over [d/2, d), so that many agents do not retry in
// step.
func Jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// tries is what Deliver's tries of one batch tell the next.
type tries struct {
	// maybeStored: a try of the whole batch went unanswered (a timeout,
	// a connection cut), so the receiver may have stored it. A refusal
	// of that same batch as out of order then means it did: a receiver
	// refuses a sample older than the newest of its series, and redwire
	// sends each series in order. The batch counts as taken, not
	// refused; the soak saw a replay request time out on a loaded
	// Prometheus that stored it, and its retry refused whole.
	maybeStored bool
	// split: a 413 split the batch, or an isolation did. A part that
	// went unanswered is not the batch retried, so nothing is presumed
	// stored after it.
	split bool
	// cutoff: a sample at cutoff was refused for being past the
	// receiver's cutoff (pastCutoff), with cutoffErr (nil: none yet), so
	// every sample at cutoff or before is refused too, unsent.
	cutoff    int64
	cutoffErr error
	// probed: an isolation sent a probe (see isolate.go). One is enough
	// for a Deliver, and each costs its series' older samples.
	probed bool
	// iso is the isolation a failed try interrupted, resumed by the next.
	iso *isolation
}

// pastCutoff notes that the receiver refused a sample at t with err, for
// being past its cutoff.
func (st *tries) pastCutoff(t int64, err error) {
	if st.cutoffErr == nil || t > st.cutoff {
		st.cutoff, st.cutoffErr = t, err
	}
}

// answered reports whether err came with the receiver's answer (an HTTP
// status), rather than none at all: a request that got no answer may
// still have been stored.
func answered(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode != 0
}

// outOfOrder reports whether err is a refusal for samples older than the
// receiver's newest of their series: Prometheus and Thanos say "out of
// order sample", Mimir "… out-of-order samples are not allowed
// (err-mimir-sample-out-of-order)".
func outOfOrder(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.Class != Reject {
		return false
	}
	body := strings.ToLower(e.Body)
	return strings.Contains(body, "out of order") || strings.Contains(body, "out-of-order")
}
