package agent

import (
	"sync"
	"time"
)

// fillRate follows how fast an endpoint's disk buffer grows, to say when
// it will be full at that pace: redwire_buffer_time_to_full_seconds, and
// one warning an outage when the buffer will fill before the outage has
// lasted as long again. The pace is the store's record bytes per second
// over the maintenance ticks, smoothed, so degraded mode's slower
// scrapes and sealing's compaction are in it.
type fillRate struct {
	mu        sync.Mutex
	at        time.Time // of the last observation; zero before the first
	bytes     int64
	rate      float64   // bytes a second, smoothed; 0 while not growing
	downSince time.Time // zero while the endpoint is up
	warned    bool      // this outage
}

// fillSmoothing weighs the newest tick's pace against the past ones'.
const fillSmoothing = 0.3

// observe records the store's size at now.
func (f *fillRate) observe(now time.Time, bytes int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.at.IsZero() && now.After(f.at) {
		r := max(0, float64(bytes-f.bytes)/now.Sub(f.at).Seconds())
		f.rate = fillSmoothing*r + (1-fillSmoothing)*f.rate
	}
	f.at, f.bytes = now, bytes
}

// timeToFull is how long room bytes last at the current pace; false if
// the buffer is not growing (nothing to say) or room is not known.
func (f *fillRate) timeToFull(room int64, known bool) (float64, bool) {
	if f == nil || !known {
		return 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case room == 0:
		return 0, true
	case f.rate < 1: // under a byte a second: not filling
		return 0, false
	}
	return float64(room) / f.rate, true
}

// outage tracks whether the endpoint is down and reports, once an outage,
// whether the buffer will be full (ttf away) before the outage doubles.
func (f *fillRate) outage(now time.Time, down bool, ttf float64, ttfKnown bool) (warn bool, lasted time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !down {
		f.downSince, f.warned = time.Time{}, false
		return false, 0
	}
	if f.downSince.IsZero() {
		f.downSince = now
	}
	lasted = now.Sub(f.downSince)
	if f.warned || !ttfKnown || ttf >= lasted.Seconds() {
		return false, lasted
	}
	f.warned = true
	return true, lasted
}
