package remotewrite

import (
	"context"
	"sync/atomic"
)

// Protocol is the message an endpoint is sent: the configured one, until
// the receiver shows that it does not take remote write 2.0, and 1.0 from
// then on (until a restart, or a reload that builds the endpoint anew).
// The policy moves it; everyone may read it. The zero value and nil speak
// 1.0.
//
// A receiver shows it does not take 2.0 by answering 415 Unsupported
// Media Type, or by answering 2xx without the Written headers: a 1.x
// receiver reads a 2.0 body as an empty 1.0 request (the fields differ)
// and takes it, having written nothing. Either way the samples are sent
// again as 1.0, so none is lost. Should a receiver have written them
// after all, the second copy is the same value at the same timestamp,
// which Prometheus-compatible receivers take as a no-op.
type Protocol struct {
	configured Message
	native     bool // native_histograms: see NativeHistograms
	fellBack   atomic.Bool
}

// NewProtocol is an endpoint's protocol, configured to send m ("": 1.0).
func NewProtocol(m Message) *Protocol { return &Protocol{configured: m} }

// WithNativeHistograms sets the endpoint's native_histograms and returns
// p; call it before p is shared.
func (p *Protocol) WithNativeHistograms(on bool) *Protocol {
	p.native = on
	return p
}

// NativeHistograms reports whether requests carry the latency histograms
// as native histograms now: configured so, and speaking 2.0. After a fall
// back to 1.0 they go classic, as 1.0 cannot carry them here.
func (p *Protocol) NativeHistograms() bool {
	return p != nil && p.native && p.Message() == MessageV2
}

// Message is what the endpoint is sent now.
func (p *Protocol) Message() Message {
	if p == nil || p.configured != MessageV2 || p.fellBack.Load() {
		return MessageV1
	}
	return MessageV2
}

// Configured is the message the endpoint was configured with.
func (p *Protocol) Configured() Message {
	if p == nil || p.configured == "" {
		return MessageV1
	}
	return p.configured
}

// fallBack makes the endpoint speak 1.0; it reports whether this call did
// it, so that the fall back is told once.
func (p *Protocol) fallBack() bool {
	return p != nil && p.fellBack.CompareAndSwap(false, true)
}

// MessageSender is a Sender that can post either message and report what
// a 2.0 receiver said it wrote; *Client is one. The policy sends 2.0 only
// through a MessageSender: to any other Sender it sends 1.0.
type MessageSender interface {
	SendMessage(ctx context.Context, m Message, body []byte) (Written, error)
}

// FallbackHandler is a Handler that hears when the endpoint falls back to
// 1.0, once per Protocol: so it can say so where an operator looks. err
// is the answer that showed it.
type FallbackHandler interface {
	FellBack(from, to Message, err error)
}
