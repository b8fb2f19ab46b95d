package remotewrite

import (
	"math"
	"time"
)

// Budget is an endpoint's link budget (max_bytes_per_second,
// max_bytes_per_day): the bytes its request bodies may put on a metered
// link, with the backlog held back first and live data last.
//
// The rate is a token bucket that starts empty and fills at Rate bytes/s.
// A live request goes as soon as the bucket is not in debt, and takes its
// bytes from it, into debt if it must; a backlog request goes only once
// the bucket holds its bytes plus the largest live request seen, so that
// live data sent next does not wait behind it. Either way, the bytes sent
// since the first request never exceed Rate × the time elapsed plus one
// request: that is the invariant the tests check.
//
// The day (UTC) is a count of the bytes sent since midnight. A live
// request goes while the day's count plus it stays within PerDay (and the
// first request of a day always goes, however large). A backlog request
// goes only while the count plus it stays within the share of PerDay that
// the day has used up so far (one larger than PerDay goes first in a day): the backlog is spread over the day, and
// live data, if it alone fits in PerDay, always finds room for the rest
// of the day. When even live data does not fit, it waits for midnight in
// the buffer, which keeps it (on disk once memory is full) as it does
// through an outage: a budget delays data, it never drops any.
//
// The zero value (no Rate, no PerDay) holds nothing back. Budget is not
// safe for concurrent use.
type Budget struct {
	// Rate is max_bytes_per_second; 0: none.
	Rate float64
	// PerDay is max_bytes_per_day; 0: none.
	PerDay int64

	started     bool
	tokens      float64   // bytes the rate allows now; negative: debt
	last        time.Time // when tokens was last brought up to date
	largestLive int       // the largest live request so far: the backlog leaves room for it
	day         time.Time // the UTC midnight dayBytes counts from
	dayBytes    int64
	sent        int64 // every byte taken since the first request
	first       time.Time
}

// Day is the length of the daily budget's day.
const Day = 24 * time.Hour

// Limited reports whether the budget holds anything back.
func (b *Budget) Limited() bool { return b.Rate > 0 || b.PerDay > 0 }

// Delay is how long a request of n bytes must wait at now before it may
// go; backlog says it carries samples from the store. 0: it may go now.
// The caller waits, asks again (another request may have gone meanwhile,
// or the day turned), and calls Take when it sends. The first call starts
// the rate's clock, with the bucket empty.
func (b *Budget) Delay(now time.Time, n int, backlog bool) time.Duration {
	var d time.Duration
	if b.Rate > 0 {
		d = b.rateDelay(now, n, backlog)
	}
	if b.PerDay > 0 {
		d = max(d, b.dayDelay(now, n, backlog))
	}
	return d
}

// Take records a request of n bytes sent at now.
func (b *Budget) Take(now time.Time, n int, backlog bool) {
	b.start(now)
	if b.Rate > 0 {
		b.tokens = b.filled(now, float64(n+b.largestLive))
		b.last = later(b.last, now)
	}
	b.tokens -= float64(n)
	if !backlog {
		b.largestLive = max(b.largestLive, n)
	}
	b.turnDay(now)
	b.dayBytes += int64(n)
	b.sent += int64(n)
}

// Sent is every byte taken since the first request, and when that was.
func (b *Budget) Sent() (bytes int64, since time.Time) { return b.sent, b.first }

// DayBytes is the bytes counted against the day that holds now, and when
// that day ends (its count starts again at 0).
func (b *Budget) DayBytes(now time.Time) (bytes int64, resets time.Time) {
	day := dayOf(now)
	if !day.Equal(b.day) {
		return 0, day.Add(Day)
	}
	return b.dayBytes, day.Add(Day)
}

// DaySpent reports whether, at now, a live request of n bytes would wait
// for the day to end.
func (b *Budget) DaySpent(now time.Time, n int) bool {
	if b.PerDay <= 0 {
		return false
	}
	used, _ := b.DayBytes(now)
	return used > 0 && used+int64(n) > b.PerDay
}

// rateDelay is the rate's part of Delay.
func (b *Budget) rateDelay(now time.Time, n int, backlog bool) time.Duration {
	need := 0.0 // a live request needs the bucket out of debt
	if backlog {
		need = float64(n + b.largestLive)
	}
	b.start(now)
	tokens := b.filled(now, need)
	if tokens >= need {
		return 0
	}
	// Rounded up: a wait a nanosecond short would leave the bucket short.
	return time.Duration(math.Ceil((need - tokens) / b.Rate * float64(time.Second)))
}

// filled is tokens brought up to now. The bucket holds at most a second
// of the rate, or what the request waiting needs if that is more, so
// that an idle link cannot save up for a burst but a backlog request
// larger than a second's bytes still goes once it has waited for them.
func (b *Budget) filled(now time.Time, need float64) float64 {
	dt := now.Sub(b.last).Seconds()
	if dt <= 0 {
		return b.tokens
	}
	ceiling := max(b.Rate, need)
	return max(b.tokens, min(b.tokens+b.Rate*dt, ceiling))
}

// start starts the clock at the first request asked about: the bucket
// starts empty there.
func (b *Budget) start(now time.Time) {
	if !b.started {
		b.started, b.first, b.last = true, now, now
	}
}

// dayDelay is the day's part of Delay.
func (b *Budget) dayDelay(now time.Time, n int, backlog bool) time.Duration {
	used, resets := b.DayBytes(now)
	after := used + int64(n)
	if !backlog {
		if used == 0 || after <= b.PerDay {
			return 0
		}
		return resets.Sub(now)
	}
	switch {
	case used == 0 && after > b.PerDay:
		return 0 // larger than a whole day: it goes first in one, as live data does
	case after > b.PerDay:
		return resets.Sub(now)
	}
	// The backlog may have spent the day's share so far: after bytes are
	// the share at dayStart + after/PerDay of the day.
	// (rounded up, so as not to go a nanosecond early).
	due := resets.Add(-Day).Add(time.Duration(math.Ceil(float64(after) / float64(b.PerDay) * float64(Day))))
	return max(0, due.Sub(now))
}

// turnDay starts the count of a new day once now is past midnight.
func (b *Budget) turnDay(now time.Time) {
	if day := dayOf(now); !day.Equal(b.day) {
		b.day, b.dayBytes = day, 0
	}
}

// dayOf is the UTC midnight that starts t's day.
func dayOf(t time.Time) time.Time { return t.UTC().Truncate(Day) }
