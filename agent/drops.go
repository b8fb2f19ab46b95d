package agent

import "github.com/redwire/redwire/buffer"

// dropReasons are the reasons every endpoint shows from the start, at
// zero, so dashboards see zeros, not gaps. The reasons themselves are
// buffer's Drop constants. A drop at shutdown is rare enough to appear
// only when it happens.
var dropReasons = []string{buffer.DropRejected, buffer.DropBufferFull, buffer.DropTooOld, buffer.DropDiskFull, buffer.DropOutOfOrder}

// countDropped is the one place drops are counted: as samples, and as
// lost ranges with the seconds they lost. What the store thinned
// (buffer.ReasonThinned) comes the same way but is no drop: it is
// counted as thinned, and listed as a thinned range with the resolution
// kept, which loses no seconds.
func (m *metrics) countDropped(endpoint string, ds []buffer.Dropped) {
	gaps := m.buffers.gapsOf(endpoint)
	for _, d := range ds {
		if d.Reason == buffer.ReasonThinned {
			m.samplesThinned.WithLabelValues(endpoint).Add(float64(d.Samples))
			gaps.storeThinned(d.Spans, d.KeptEvery)
			continue
		}
		if d.Samples > 0 {
			m.samplesDropped.WithLabelValues(endpoint, d.Reason).Add(float64(d.Samples))
		}
		for target, secs := range gaps.lost(d.Reason, d.Spans) {
			m.lostSeconds.WithLabelValues(endpoint, target, d.Reason).Add(secs)
		}
	}
}
