package agent

import (
	"context"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/pause"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// Samples a receiver refuses for their age are parked, never dropped: a
// central Prometheus, Mimir or Thanos that other sites keep current
// refuses a backlog older than its head window, and that backlog is
// exactly what redwire exists to keep. The parked area is part of the
// endpoint's buffer file (buffer/parked.go): same durability, same disk
// caps. From there a sample goes one of two ways:
//
//   - With the receiver's window declared (out_of_order_time_window), the
//     unparker sends parked samples again once they fall within it, and
//     the policy parks backlog older than it without sending it.
//   - Without one, `redwire backfill` writes them into TSDB blocks for the
//     receiver's data directory, bucket or mimirtool.
//
// Taken = delivered + dropped + pending + parked.

// unparkEvery is how often the unparker looks for parked samples within
// the declared window, while the endpoint is up and its backlog drained.
const unparkEvery = time.Minute

// parkAdvice is the one log line that says samples were parked, what
// would have the receiver take them, and how else to deliver them.
const parkAdvice = "receiver refused samples for their age: parked in the buffer file, not dropped. " +
	"To have redwire send them, give the receiver an out-of-order window (Prometheus storage.tsdb.out_of_order_time_window, " +
	"Mimir out_of_order_time_window or past_grace_period, Thanos --tsdb.out-of-order.time-window) and declare it as this endpoint's out_of_order_time_window; " +
	"or write them into TSDB blocks with `redwire backfill --buffer.path=DIR --output=DIR`"

// park keeps part, refused by the receiver for its age (err), in the
// endpoint's parked area. Only a file that cannot take it loses it, and
// that is counted as disk_full with its time range.
func (s *sender) park(part *sample.Batch, err error) {
	n := part.Len()
	s.m.rwRefused.WithLabelValues(s.name, remotewrite.CauseAge.String()).Add(float64(n))
	dropped, perr := s.buf.Park(sample.Batch{Samples: part.Samples})
	s.m.countDropped(s.name, dropped)
	if perr != nil {
		s.m.countDropped(s.name, []buffer.Dropped{{Reason: buffer.DropDiskFull, Samples: n, Spans: sample.AddSpans(nil, part.Samples)}})
		s.log.Error("parking samples the receiver refused for their age failed: dropping them", "samples", n, "err", perr, "refusal", err)
		return
	}
	s.m.samplesParked.WithLabelValues(s.name).Add(float64(n))
	if s.prog == nil || s.prog.firstPark() {
		s.log.Warn(parkAdvice, append(errAttrs(err), "samples", n)...)
	}
}

// unpark runs beside the sender while the endpoint declares a window: it
// sends parked samples that fall within it, once the endpoint is up and
// its backlog drained (the backlog goes first: it is older than the
// window's end and newer than what was parked). A pass starts at once,
// so a reload that declares a window sends what it now covers.
func (s *sender) unpark(ctx context.Context) {
	for {
		if s.unparkDue() {
			s.unparkPass(ctx)
		}
		if !pause.For(ctx, remotewrite.Jitter(2*unparkEvery)) {
			return
		}
	}
}

// unparkDue reports whether a pass may go now.
func (s *sender) unparkDue() bool {
	d := s.published.Load()
	return d != nil && d.mode == modeNormal && !d.paused && s.buf.Parked().Samples > 0 &&
		s.buf.Stats().Store.Batches == 0
}

// unparkPass sends every parked record within the window once, oldest
// first. A record the receiver took is deleted from the parked area;
// what it refuses again for age is parked anew, and what it refuses for
// another reason is dropped and counted, as on the main stream. A
// failure (network, 5xx) ends the pass: the next one tries again.
func (s *sender) unparkPass(ctx context.Context) {
	window := time.Duration(s.cfg.OutOfOrderTimeWindow)
	var after uint64
	// What the pass parks again goes to the end: it is not visited twice.
	left := s.buf.Parked().Batches
	for left > 0 {
		// Records whose newest sample is still older than the window
		// stay for backfill.
		recs, err := s.buf.PeekParked(after, s.cfg.QueueConfig.MaxSamplesPerSend, time.Now().Add(-window).UnixMilli())
		if err != nil {
			s.log.Error("reading parked samples failed", "err", err)
			return
		}
		if len(recs) == 0 {
			return
		}
		for _, r := range recs {
			if left--; left < 0 {
				return
			}
			after = r.Seq
			if !s.unparkRecord(ctx, r) {
				return
			}
		}
	}
}

// unparkRecord sends one parked record (the policy holds back what is
// still older than the window) and reports whether the pass may go on.
func (s *sender) unparkRecord(ctx context.Context, r buffer.Record) bool {
	u := &unparkTry{s: s}
	var enc remotewrite.Encoder
	if err := s.policy.Deliver(ctx, s.client, &enc, sample.Batch{Samples: r.Batch.Samples}, nil, u); err != nil {
		return false
	}
	if len(u.again) > 0 {
		dropped, err := s.buf.Park(sample.Batch{Samples: u.again})
		s.m.countDropped(s.name, dropped)
		if err != nil {
			s.log.Error("parking again what the receiver still refuses failed: the record stays parked whole", "err", err)
			return false
		}
	}
	if err := s.buf.DeleteParked([]uint64{r.Seq}); err != nil {
		s.log.Error("removing a delivered parked record failed: it may be sent twice", "err", err)
		return false
	}
	if u.taken > 0 {
		s.log.Info("parked samples delivered within the receiver's out-of-order window", "samples", u.taken)
	}
	return true
}

// unparkTry hears what becomes of one parked record.
type unparkTry struct {
	s     *sender
	taken int
	again []sample.Sample // refused for age again: parked anew
}

func (u *unparkTry) Request(samples int, took time.Duration, err error) {
	u.s.countRequest(took, err)
}

func (u *unparkTry) Answered(part *sample.Batch, err error) {
	s, n := u.s, part.Len()
	switch {
	case err == nil:
		u.taken += n
		s.m.rwSamples.WithLabelValues(s.name, "success").Add(float64(n))
		s.m.samplesUnparked.WithLabelValues(s.name).Add(float64(n))
	case remotewrite.CauseOf(err) == remotewrite.CauseAge:
		u.again = append(u.again, part.Samples...)
	default:
		refused := s.dropRefused(part, err)
		s.m.rwSamples.WithLabelValues(s.name, "success").Add(float64(n - refused))
		s.log.Error("receiver rejected parked samples; dropping them", append(errAttrs(err), "samples", refused)...)
	}
}

// Pace holds parked samples back as backlog under the link budget.
func (u *unparkTry) Pace(ctx context.Context, body []byte) error {
	s := u.s
	if s.budget == nil {
		return nil
	}
	return s.budget.pace(ctx, len(body), streamBacklog, pause.For, s.m, s.name)
}

// Failed ends the pass: the records stay parked for the next one.
func (u *unparkTry) Failed(error, time.Duration) bool { return false }
