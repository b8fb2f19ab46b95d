package agent

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
)

// replay.order live_first: once a down endpoint answers again, fresh
// scrapes go out at once on their own stream (memory, NextLive), while
// the backlog drains behind them from the store, oldest first, at its
// pace (replay.go). Each stream keeps every series in time order; across
// the two, the receiver gets older samples after newer ones, which only
// a receiver with an out-of-order window takes.
//
// One sender loop serves both streams, one request at a time: a fresh
// batch ready before the backlog's turn (storeDue) goes first, and when
// both are waiting they alternate, so the backlog has at most half of
// the sending capacity and fresh scrapes at least half.
//
// A receiver that refuses out-of-order samples would refuse the whole
// backlog of every series a fresh sample reached first: that loss cannot
// be undone. So before the first fresh batch overtakes a backlog, the
// sender asks (checkOutOfOrder); a receiver that refuses makes the
// endpoint fall back to fifo for the rest of the run, with a warning
// naming replay.order, and nothing is lost.

// outOfOrder is what the sender knows of the receiver's out-of-order
// window.
type outOfOrder int

const (
	oooUnknown outOfOrder = iota
	oooTaken
	oooRefused
)

// liveTurn returns a fresh batch if one is due before the backlog's turn,
// or nil when the backlog goes next (or there is none: Next serves
// memory then). err is the buffer's.
func (s *sender) liveTurn(ctx context.Context, backlogAhead bool) (*buffer.Lease, error) {
	if !s.liveFirst || (!backlogAhead && s.buf.Stats().Store.Batches == 0) {
		return nil, nil
	}
	if s.lastLive && !time.Now().Before(s.storeDue) {
		// Both may go: the backlog's turn.
		s.lastLive = false
		return nil, nil
	}
	if !s.outOfOrderTaken(ctx) {
		return nil, nil
	}
	wait, cancel := context.WithDeadline(ctx, s.storeDue)
	defer cancel()
	l, err := s.buf.NextLive(wait)
	switch {
	case l != nil:
		s.lastLive = true
		return l, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, buffer.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		// Memory is drained (shutdown), or the backlog's turn came.
		s.lastLive = false
		return nil, nil
	}
	return nil, err
}

// outOfOrderTaken reports whether the receiver takes out-of-order
// samples, asking it the first time. Until it has answered, it is
// treated as refusing them: the backlog goes first, as with fifo.
func (s *sender) outOfOrderTaken(ctx context.Context) bool {
	if s.ooo == oooUnknown && s.state.mode != modeDegraded && !time.Now().Before(s.oooRetry) {
		s.ooo = s.checkOutOfOrder(ctx)
		if s.ooo == oooUnknown {
			s.oooRetry = time.Now().Add(s.policy.MaxBackoff)
		}
	}
	return s.ooo == oooTaken
}

// oooCheckFamily is the series the out-of-order check writes, one per
// agent host and endpoint.
const oooCheckFamily = "redwire_out_of_order_check"

// checkOutOfOrder sends the receiver two samples of one series, the
// second a millisecond older than the first: both taken, the receiver has
// an out-of-order window; one refused, it has none (or refuses the check
// for another reason, which the warning shows), and the endpoint falls
// back to fifo; no answer, ask again later.
func (s *sender) checkOutOfOrder(ctx context.Context) outOfOrder {
	now := time.Now().UnixMilli()
	var enc remotewrite.Encoder
	for i, t := range []int64{now, now - 1} {
		b := sample.Batch{Samples: []sample.Sample{{Labels: s.oooLabels(), T: t, V: float64(i)}}}
		body, err := enc.Encode(&b)
		if err != nil {
			s.log.Error("encoding the out-of-order check failed", "err", err)
			return oooUnknown
		}
		err = s.client.Send(ctx, body)
		switch {
		case err == nil:
			continue
		case remotewrite.ClassOf(err) == remotewrite.Reject:
			s.handle(evOutOfOrderRefused, err)
			return oooRefused
		default:
			return oooUnknown
		}
	}
	s.log.Info("receiver takes out-of-order samples: fresh scrapes go before the backlog (replay.order live_first)")
	return oooTaken
}

func (s *sender) oooLabels() labels.Labels {
	b := labels.NewBuilder(s.identity)
	b.Set(model.MetricNameLabel, oooCheckFamily)
	b.Set("endpoint", s.name)
	return b.Labels()
}

// agentIdentity is what labels the agent's own series: its external
// labels, job="redwire" and instance=its host, as self-metrics do.
func agentIdentity(external map[string]string) labels.Labels {
	b := labels.NewBuilder(labels.EmptyLabels())
	for k, v := range external {
		b.Set(k, v)
	}
	host, _ := os.Hostname()
	b.Set("job", "redwire")
	b.Set("instance", host)
	return b.Labels()
}
