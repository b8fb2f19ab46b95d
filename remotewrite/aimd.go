package remotewrite

import (
	"errors"
	"time"
)

// AIMD paces the replay of a backlog to what the receiver keeps up with,
// as TCP paces a connection: the rate grows by Step samples/s with every
// request taken (additive increase) and halves on every push back, a 429,
// a 5xx or a timeout (multiplicative decrease). A Retry-After holds the
// next request until it has passed, whatever the rate. The rate never
// exceeds Max, and a replay has one request in flight at a time (every
// series stays in order), so pushing back slows an agent down and never
// makes it send more at once.
//
// When a fleet reconnects to one receiver at the same moment, each agent
// backs off on its own: together they settle near what the receiver
// takes, instead of all retrying at full speed.
//
// The zero value with Max 0 never waits but for Retry-After; AIMD is not
// safe for concurrent use (a sender owns one).
type AIMD struct {
	// Max is the ceiling in samples/s (replay.max_samples_per_second);
	// 0: none, and the replay goes as fast as the receiver answers until
	// it first pushes back.
	Max float64
	// Min is the floor in samples/s, which a run of push backs never goes
	// under (nor 1), so that the replay keeps going.
	Min float64
	// Step is the increase in samples/s per request taken.
	Step float64

	rate      float64   // the current limit; 0: none (only before any push back, with no Max)
	achieved  float64   // samples/s of the last request taken, on its own
	notBefore time.Time // set by a Retry-After
}

// Beta is what a push back multiplies the rate by.
const Beta = 0.5

// NewAIMD is the controller of a replay whose requests carry up to
// perRequest samples, under a ceiling of maxRate samples/s (0: none). A
// request taken adds a tenth of a request per second, and the floor is
// one request every 30 s, the slowest the policy retries at.
func NewAIMD(maxRate float64, perRequest int) AIMD {
	perRequest = max(perRequest, 1)
	return AIMD{Max: maxRate, Min: float64(perRequest) / 30, Step: float64(perRequest) / 10}
}

// Rate is the current limit in samples/s; 0 means none.
func (a *AIMD) Rate() float64 {
	if a.rate == 0 {
		return a.Max
	}
	return a.rate
}

// Taken reports a request of n samples that the receiver took after took.
func (a *AIMD) Taken(n int, took time.Duration) {
	if took > 0 {
		a.achieved = float64(n) / took.Seconds()
	}
	if a.rate == 0 {
		return // nothing to grow from: the ceiling, if any, applies
	}
	a.rate += a.Step
	if a.Max > 0 && a.rate >= a.Max {
		a.rate = 0 // back at the ceiling
	}
}

// PushedBack reports at now an answer that asks for less: err of class
// Retry (5xx, network error, timeout) or RateLimited (429), honouring its
// Retry-After. Other answers (refusals, 401) say nothing of the load and
// are ignored.
func (a *AIMD) PushedBack(now time.Time, err error) {
	switch ClassOf(err) {
	case Retry, RateLimited:
	default:
		return
	}
	var re *Error
	if errors.As(err, &re) && re.RetryAfter > 0 {
		a.notBefore = later(a.notBefore, now.Add(re.RetryAfter))
	}
	base := a.Rate()
	if base == 0 {
		// No limit so far: start from what the receiver last took, or
		// from the floor if it never took anything.
		base = a.achieved
	}
	// A floor of 0 would stop the replay for good.
	a.rate = max(base*Beta, a.Min, 1)
	if a.Max > 0 {
		a.rate = min(a.rate, a.Max)
	}
}

// Delay is how long to wait at now, after a request of n samples was
// taken, before the next one: n at the current rate, and at least until
// a Retry-After has passed.
func (a *AIMD) Delay(now time.Time, n int) time.Duration {
	var d time.Duration
	if r := a.Rate(); r > 0 && n > 0 {
		d = time.Duration(float64(n) / r * float64(time.Second))
	}
	return max(d, a.notBefore.Sub(now))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
