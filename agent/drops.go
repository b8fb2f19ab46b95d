package agent

import "github.com/redwire/redwire/buffer"

// Reasons a sample is given up on: the reason label of
// redwire_samples_dropped_total, and nothing else. The buffer's own
// reasons are defined where the buffer decides them.
const (
	// dropRejected: the receiver refused the samples for good (400, 409,
	// 415, other 4xx, one sample over its size limit).
	dropRejected = "rejected"
	// dropOutOfOrder: scraped while the wall clock was at or behind the
	// last scrape sent for the target; never sent.
	dropOutOfOrder = "out_of_order"
	// dropBufferFull: over buffer.max_bytes, oldest first.
	dropBufferFull = buffer.DropBufferFull
	// dropTooOld: older than buffer.max_age.
	dropTooOld = buffer.DropTooOld
	// dropDiskFull: the disk could not take them and memory was full.
	dropDiskFull = "disk_full"
	// dropShutdown: could not be stored at shutdown.
	dropShutdown = "shutdown"
)

// dropReasons are the reasons every endpoint shows from the start, at
// zero, so dashboards see zeros, not gaps.
var dropReasons = []string{dropRejected, dropBufferFull, dropTooOld, dropDiskFull, dropOutOfOrder}

// countDropped is the one place drops are counted.
func (m *metrics) countDropped(endpoint string, ds []buffer.Dropped) {
	for _, d := range ds {
		if d.Samples > 0 {
			m.samplesDropped.WithLabelValues(endpoint, d.Reason).Add(float64(d.Samples))
		}
	}
}
