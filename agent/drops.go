package agent

import "github.com/redwire/redwire/buffer"

// dropReasons are the reasons every endpoint shows from the start, at
// zero, so dashboards see zeros, not gaps. The reasons themselves are
// buffer's Drop constants. A drop at shutdown is rare enough to appear
// only when it happens.
var dropReasons = []string{buffer.DropRejected, buffer.DropBufferFull, buffer.DropTooOld, buffer.DropDiskFull, buffer.DropOutOfOrder}

// countDropped is the one place drops are counted.
func (m *metrics) countDropped(endpoint string, ds []buffer.Dropped) {
	for _, d := range ds {
		if d.Samples > 0 {
			m.samplesDropped.WithLabelValues(endpoint, d.Reason).Add(float64(d.Samples))
		}
	}
}
