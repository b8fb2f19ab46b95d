package agent

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/remotewrite"
)

// budgetDrain drains a backlog of scrapes × perScrape samples through the
// real sender into a real Prometheus under budget b, on a fake clock that
// only the budget's waits move (no sleeping, no timing in the assertions).
// Before each request, check gets the bytes sent before it (counted on
// the wire by meteredSender), the request's bytes and the fake time.
// It returns the sender's budget and metrics once the backlog is in the
// receiver, which it checks.
func budgetDrain(t *testing.T, instance string, b remotewrite.Budget, check func(sentBefore, n int, now time.Time)) (*linkBudget, *metrics) {
	t.Helper()
	const scrapes, perScrape = 20, 100
	prom, store, client := replayBacklog(t, instance, scrapes, perScrape)
	buf := buffer.New(store, buffer.Options{Capacity: 1000, MaxBatch: 200, StoreBatch: 200, Deadline: time.Second})
	defer buf.Close()
	m := newMetrics(prometheus.NewRegistry())
	now := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	lb := newLinkBudget()
	lb.now = func() time.Time { return now }
	lb.b = b
	wire := func() int { return int(testutil.ToFloat64(m.rwBytes.WithLabelValues("budget"))) }
	var sentBefore int
	hooked := hookedSender{next: client, before: func() {
		n := wire() - sentBefore // meteredSender counted it just now
		check(sentBefore, n, now)
		sentBefore += n
	}}
	e := &sender{name: "budget", client: meteredSender{next: hooked, name: "budget", m: m}, buf: buf, budget: lb, threshold: 3,
		policy: remotewrite.Policy{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, modes: newModes(),
		m: m, log: slog.New(slog.DiscardHandler),
		pace: func(ctx context.Context, d time.Duration) bool {
			now = now.Add(d)
			return ctx.Err() == nil
		}}
	buf.Drain()
	e.run(context.Background())
	vec, err := prom.Query(context.Background(), fmt.Sprintf(`count(count_over_time(redis_test_series{instance=%q}[5m]) == %d)`, instance, scrapes))
	if err != nil || len(vec) != 1 || vec[0].Value != perScrape {
		t.Errorf("receiver: %v %v; want %d series with %d samples each: a budget delays, it never drops", vec, err, perScrape, scrapes)
	}
	if got := wire(); got != sentBefore {
		t.Errorf("%d bytes counted, %d seen by the receiver's client", got, sentBefore)
	}
	return lb, m
}

// TestLinkBudgetRateHoldsTheBacklogDrain: a backlog drained under
// max_bytes_per_second never has sent more than the rate × the time since
// its first request plus one request, counted on the wire; it goes
// through whole into a real Prometheus; and what the budget held back
// shows in the metrics and the status.
func TestLinkBudgetRateHoldsTheBacklogDrain(t *testing.T) {
	const rate = 2000.0 // B/s: each ~1.5 kB request of 200 samples waits
	var (
		first    time.Time
		requests int
	)
	lb, m := budgetDrain(t, "budget-rate", remotewrite.Budget{Rate: rate}, func(sentBefore, n int, now time.Time) {
		if requests++; requests == 1 {
			first = now
		}
		elapsed := now.Sub(first).Seconds()
		if float64(sentBefore+n) > rate*elapsed+float64(n) {
			t.Errorf("request %d: %d bytes sent by %.2fs after the first: over %v B/s plus this request's %d", requests, sentBefore+n, elapsed, rate, n)
		}
	})
	if requests < 5 {
		t.Fatalf("%d requests: too few to test a pace", requests)
	}
	st := lb.status()
	if st == nil || st.MaxBytesPerSecond != rate {
		t.Fatalf("status: %+v; want the budget shown", st)
	}
	held := st.Held["backlog"]
	if held.Requests == 0 || held.Seconds <= 0 || held.Bytes == 0 {
		t.Errorf("status held the backlog back %+v: want requests, bytes and seconds", held)
	}
	if got := testutil.ToFloat64(m.budgetWait.WithLabelValues("budget", "backlog")); got != held.Seconds {
		t.Errorf("redwire_remote_write_budget_wait_seconds_total = %v, status says %v", got, held.Seconds)
	}
	if st.Held["live"].Requests != 0 {
		t.Errorf("live requests held back in a backlog drain: %+v", st.Held["live"])
	}
	if sent, _ := lb.b.Sent(); float64(sent) != testutil.ToFloat64(m.rwBytes.WithLabelValues("budget")) {
		t.Errorf("the budget counted %d bytes, redwire_remote_write_bytes_total %v", sent, testutil.ToFloat64(m.rwBytes.WithLabelValues("budget")))
	}
	if u := testutil.ToFloat64(m.rwUncompressed.WithLabelValues("budget")); u <= testutil.ToFloat64(m.rwBytes.WithLabelValues("budget")) {
		t.Errorf("uncompressed bytes %v not above the %v sent compressed", u, testutil.ToFloat64(m.rwBytes.WithLabelValues("budget")))
	}
}

// TestLinkBudgetDaySpreadsTheBacklog: under max_bytes_per_day, a backlog
// sends no more in a UTC day than the day's budget, and within a day no
// more than the share of it the day has used up: it waits for midnight
// in the buffer when the day is spent, and is delivered whole over the
// following days.
func TestLinkBudgetDaySpreadsTheBacklog(t *testing.T) {
	const perDay = 3000 // a few requests a day: the drain spans days
	var (
		day     time.Time
		dayUsed int
		days    int
	)
	lb, _ := budgetDrain(t, "budget-day", remotewrite.Budget{PerDay: perDay}, func(sentBefore, n int, now time.Time) {
		if d := now.UTC().Truncate(24 * time.Hour); !d.Equal(day) {
			day, dayUsed = d, 0
			days++
		}
		dayUsed += n
		// In whole numbers: dayUsed/perDay ≤ elapsed/day.
		if dayUsed > perDay || int64(dayUsed)*int64(24*time.Hour) > perDay*int64(now.Sub(day)) {
			t.Errorf("%v: %d bytes of backlog sent today, over the day's %d or its share so far %.1f", now, dayUsed, perDay,
				float64(perDay)*now.Sub(day).Hours()/24)
		}
	})
	if days < 3 {
		t.Errorf("the drain took %d days at %d B/day: too few to test the day", days, perDay)
	}
	st := lb.status()
	if st == nil || st.MaxBytesPerDay != perDay || st.DayResets.IsZero() || st.Held["backlog"].Requests == 0 {
		t.Errorf("status %+v: want the day's budget, its reset and the backlog held", st)
	}
}
