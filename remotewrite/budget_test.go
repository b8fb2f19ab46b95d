package remotewrite

import (
	"math/rand/v2"
	"testing"
	"time"
)

// t0 is a fake clock's start, at 06:00 UTC so that a day's share is a
// quarter already.
var budgetT0 = time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)

func TestBudgetZeroHoldsNothingBack(t *testing.T) {
	var b Budget
	for i := range 100 {
		if d := b.Delay(budgetT0, 1<<20, i%2 == 0); d != 0 {
			t.Fatalf("request %d: the zero Budget asks to wait %v", i, d)
		}
		b.Take(budgetT0, 1<<20, i%2 == 0)
	}
}

// TestBudgetNeverSendsMoreThanTheRatePlusOneRequest: whatever mix of live
// and backlog requests of whatever sizes, a sender that waits what Delay
// says never has sent more than Rate × the time since it started plus
// one request; and it is not held back much more than that either.
func TestBudgetNeverSendsMoreThanTheRatePlusOneRequest(t *testing.T) {
	const rate = 10_000.0
	rng := rand.New(rand.NewPCG(1, 2))
	b := Budget{Rate: rate}
	now := budgetT0
	var sent, largest int
	for i := range 2000 {
		n := 100 + rng.IntN(30_000) // some larger than a second's bytes
		backlog := rng.IntN(3) > 0
		for {
			d := b.Delay(now, n, backlog)
			if d == 0 {
				break
			}
			now = now.Add(d)
		}
		b.Take(now, n, backlog)
		sent += n
		largest = max(largest, n)
		elapsed := now.Sub(budgetT0).Seconds()
		if float64(sent) > rate*elapsed+float64(n) {
			t.Fatalf("request %d: %d bytes sent in %.3fs: over %v/s plus this request's %d", i, sent, elapsed, rate, n)
		}
		if got, _ := b.Sent(); got != int64(sent) {
			t.Fatalf("Sent says %d, %d were taken", got, sent)
		}
	}
	// The bytes that went, over the time they took, come near the rate:
	// waits are the bytes owed, plus room for one live request.
	elapsed := now.Sub(budgetT0).Seconds()
	if got := float64(sent) / elapsed; got < rate*0.7 {
		t.Errorf("%.0f B/s sent under a %v B/s budget: held back more than it must", got, rate)
	}
}

// TestBudgetLiveGoesFirst: live requests that fit within the rate never
// wait, even with a backlog taking the rest; the backlog gets what the
// live data leaves.
func TestBudgetLiveGoesFirst(t *testing.T) {
	const (
		rate = 1000.0
		live = 2000 // every 5 s: 400 B/s, leaving 600 B/s
		back = 3000
	)
	b := Budget{Rate: rate}
	now := budgetT0
	nextLive := now
	var backlogBytes int
	for now.Before(budgetT0.Add(10 * time.Minute)) {
		if !now.Before(nextLive) {
			if d := b.Delay(now, live, false); d != 0 {
				t.Fatalf("at %v a live request within the rate waits %v", now.Sub(budgetT0), d)
			}
			b.Take(now, live, false)
			nextLive = nextLive.Add(5 * time.Second)
			continue
		}
		d := b.Delay(now, back, true)
		if d == 0 {
			b.Take(now, back, true)
			backlogBytes += back
			continue
		}
		// The sender waits for the backlog's turn, or the next live batch.
		now = now.Add(min(d, nextLive.Sub(now)))
	}
	got := float64(backlogBytes) / 600
	if got < 400 || got > 600 {
		t.Errorf("the backlog got %.0f B/s of the %v B/s the live data left (600): want most of it", got, rate)
	}
}

// TestBudgetDay: live data spends the day's bytes up to PerDay and then
// waits for midnight UTC; the backlog spends no more than the share of
// PerDay the day has used up, and never past what is left for live data.
func TestBudgetDay(t *testing.T) {
	const perDay = 1_000_000
	b := Budget{PerDay: perDay}
	now := budgetT0 // a quarter of the day gone: the backlog may have 250 kB
	n := 0
	for b.Delay(now, 10_000, true) == 0 {
		b.Take(now, 10_000, true)
		n += 10_000
	}
	if n != 250_000 {
		t.Errorf("at 06:00 the backlog sent %d bytes of %d/day: want 250000, the day's share so far", n, perDay)
	}
	// 10 kB more are the share at 06:14:24.
	if d := b.Delay(now, 10_000, true); d != 864*time.Second {
		t.Errorf("the next backlog request waits %v; want 14m24s, until its bytes are the day's share", d)
	}
	// Live data goes until the day is spent.
	for b.Delay(now, 10_000, false) == 0 {
		b.Take(now, 10_000, false)
		n += 10_000
	}
	if n != perDay {
		t.Errorf("%d bytes went today; want the whole %d", n, perDay)
	}
	midnight := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	if d := b.Delay(now, 10_000, false); d != midnight.Sub(now) {
		t.Errorf("a live request past the day's budget waits %v; want until midnight UTC (%v)", d, midnight.Sub(now))
	}
	if !b.DaySpent(now, 10_000) {
		t.Error("DaySpent is false with the day's bytes spent")
	}
	if used, resets := b.DayBytes(now); used != perDay || !resets.Equal(midnight) {
		t.Errorf("DayBytes = %d, %v; want %d, %v", used, resets, perDay, midnight)
	}
	// After midnight: live at once, the count starts again.
	if d := b.Delay(midnight, 10_000, false); d != 0 {
		t.Errorf("after midnight a live request waits %v", d)
	}
	if used, _ := b.DayBytes(midnight); used != 0 {
		t.Errorf("after midnight the day's count is %d", used)
	}
	// A live request larger than the whole budget goes as a day's first.
	for _, backlog := range []bool{false, true} {
		if d := b.Delay(midnight, 2*perDay, backlog); d != 0 {
			t.Errorf("a day's first request (backlog %v) waits %v for a budget it can never fit", backlog, d)
		}
	}
}
