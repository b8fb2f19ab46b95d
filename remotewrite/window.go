package remotewrite

import (
	"context"
	"fmt"
	"time"

	"github.com/redwire/redwire/sample"
)

// A receiver with an out-of-order window takes a sample no older than
// its newest minus the window, and refuses the rest. With the window
// declared (Policy.Window), the policy does not send what the receiver
// would refuse: after a long outage the backlog's old part goes straight
// to the caller as refused for its age (the agent parks it), and only
// the rest is sent. The receiver's newest sample is about now, as other
// sites keep it current.

// deliverInWindow delivers b's samples within p.Window of now and
// answers the older ones refused, unsent, in batch order: runs of old
// and young samples alternate as they come (a batch is in scrape order,
// so usually one run of each).
func (p Policy) deliverInWindow(ctx context.Context, s Sender, enc *Encoder, b sample.Batch, body []byte, h Handler) error {
	cutoff := time.Now().Add(-p.Window).UnixMilli()
	old := func(i int) bool { return b.Samples[i].T < cutoff }
	if b.Len() == 0 || !slicesAny(b.Len(), old) {
		return p.deliver(ctx, s, enc, b, body, h)
	}
	refusal := &Error{Class: Reject, Body: fmt.Sprintf(
		"too old sample: older than the receiver's declared out_of_order_time_window (%s); not sent", p.Window)}
	meta := b.Metadata
	for start := 0; start < b.Len(); {
		end := start + 1
		for end < b.Len() && old(end) == old(start) {
			end++
		}
		run := sample.Batch{Samples: b.Samples[start:end], Metadata: meta}
		meta = nil
		if old(start) {
			h.Answered(&run, refusal)
		} else if err := p.deliver(ctx, s, enc, run, nil, h); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// slicesAny reports whether f holds for any index below n.
func slicesAny(n int, f func(int) bool) bool {
	for i := range n {
		if f(i) {
			return true
		}
	}
	return false
}
