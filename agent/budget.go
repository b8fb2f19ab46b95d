package agent

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/remotewrite"
)

// The link budget of a metered link (max_bytes_per_second,
// max_bytes_per_day): remotewrite.Budget decides how long a request
// waits; the sender waits it (leaseTry.Pace, before every data request)
// and says what it held back in /metrics and /api/v1/status.
//
// The backlog is held back first. With replay.order live_first its turn
// (storeDue) moves past the budget's delay, and fresh batches go
// meanwhile (livefirst.go); with fifo the backlog and fresh scrapes are
// one stream in time order, and it waits. Live data waits only when even
// it exceeds the budget: then it stays in the buffer (memory, and the
// disk once memory is full) until the budget allows it, as through an
// outage. Nothing is dropped for a budget.
//
// Probes of a down receiver and the out-of-order check are neither held
// back nor counted against the budget (a probe's body is one byte, the
// check's two samples once a run); redwire_remote_write_bytes_total
// counts them, as it counts every request body.
//
// The budget is the endpoint's, not the sender's: a reload that replaces
// the sender keeps it (and the day's count) with the new limits. A
// restart starts the day's count again.

// stream is a request's stream as the budget labels it.
type stream int

const (
	streamLive stream = iota
	streamBacklog
)

func (s stream) String() string {
	if s == streamBacklog {
		return "backlog"
	}
	return "live"
}

// linkBudget is an endpoint's budget, shared by its sender, the pass
// that sends parked samples again, and the API that shows it.
type linkBudget struct {
	mu  sync.Mutex
	b   remotewrite.Budget
	now func() time.Time
	// held is what each stream was held back, since start.
	held [2]heldBack
	// waiting is the stream of the request held back now, and its bytes;
	// waitingN 0: none.
	waiting  stream
	waitingN int
	// lastBacklog is the bytes of the last backlog request: the guess
	// at the next one's, which live_first's turn is paced by.
	lastBacklog int
}

// heldBack is what the budget held back of one stream.
type heldBack struct {
	Requests int64   `json:"requests"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
}

func newLinkBudget() *linkBudget { return &linkBudget{now: time.Now} }

// setLimits applies an endpoint's (new) limits, keeping what was sent.
func (lb *linkBudget) setLimits(ec remotewrite.EndpointConfig) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	fresh := ec.Budget()
	lb.b.Rate, lb.b.PerDay = fresh.Rate, fresh.PerDay
}

func (lb *linkBudget) delay(n int, st stream) time.Duration {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.b.Delay(lb.now(), n, st == streamBacklog)
}

// backlogDue is when the next backlog request may go, by the budget.
func (lb *linkBudget) backlogDue() time.Time {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	now := lb.now()
	if !lb.b.Limited() {
		return now
	}
	return now.Add(lb.b.Delay(now, lb.lastBacklog, true))
}

// pace waits until a request of n bytes of stream st may go, then counts
// it against the budget. It returns ctx's error if ctx ended first. wait
// waits d (the sender's pauseFor: a test seam).
func (lb *linkBudget) pace(ctx context.Context, n int, st stream, wait func(context.Context, time.Duration) bool, m *metrics, name string) error {
	start := lb.now()
	for {
		d := lb.delay(n, st)
		if d <= 0 {
			break
		}
		lb.mu.Lock()
		first := lb.waitingN == 0
		lb.waiting, lb.waitingN = st, n
		if first {
			lb.held[st].Requests++
			lb.held[st].Bytes += int64(n)
		}
		lb.mu.Unlock()
		if first {
			m.budgetHeldRequests.WithLabelValues(name, st.String()).Inc()
			m.budgetHeldBytes.WithLabelValues(name, st.String()).Add(float64(n))
		}
		ok := wait(ctx, d)
		lb.noteWait(st, lb.now().Sub(start), m, name)
		start = lb.now()
		if !ok {
			lb.mu.Lock()
			lb.waitingN = 0
			lb.mu.Unlock()
			return ctx.Err()
		}
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.waitingN = 0
	lb.b.Take(lb.now(), n, st == streamBacklog)
	if st == streamBacklog {
		lb.lastBacklog = n
	}
	return nil
}

func (lb *linkBudget) noteWait(st stream, d time.Duration, m *metrics, name string) {
	if d <= 0 {
		return
	}
	lb.mu.Lock()
	lb.held[st].Seconds += d.Seconds()
	lb.mu.Unlock()
	m.budgetWait.WithLabelValues(name, st.String()).Add(d.Seconds())
}

// budgetStatus is an endpoint's link budget in GET /api/v1/status.
type budgetStatus struct {
	MaxBytesPerSecond int64 `json:"max_bytes_per_second,omitempty"`
	MaxBytesPerDay    int64 `json:"max_bytes_per_day,omitempty"`
	// BytesSent is every request body counted since start; BytesToday
	// those of the UTC day, whose count starts again at DayResets.
	BytesSent  int64     `json:"bytes_sent"`
	BytesToday int64     `json:"bytes_today"`
	DayResets  time.Time `json:"day_resets_at"`
	// DaySpent: the day's bytes are spent, or a live request waits for
	// the day to end; the backlog waits too.
	DaySpent bool `json:"day_spent"`
	// Waiting is the stream of the request held back now, if any.
	Waiting string `json:"waiting,omitempty"`
	// Held is what each stream ("live", "backlog") was held back since
	// start: requests, their bytes, and the seconds they waited.
	Held map[string]heldBack `json:"held"`
}

// status is the budget as GET /api/v1/status shows it; nil if it holds
// nothing back.
func (lb *linkBudget) status() *budgetStatus {
	if lb == nil {
		return nil
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if !lb.b.Limited() {
		return nil
	}
	now := lb.now()
	sent, _ := lb.b.Sent()
	today, resets := lb.b.DayBytes(now)
	st := &budgetStatus{
		MaxBytesPerSecond: int64(lb.b.Rate), MaxBytesPerDay: lb.b.PerDay,
		BytesSent: sent, BytesToday: today, DayResets: resets.UTC(),
		DaySpent: lb.b.PerDay > 0 && (today >= lb.b.PerDay || (lb.waitingN > 0 && lb.waiting == streamLive && lb.b.DaySpent(now, lb.waitingN))),
		Held:     map[string]heldBack{streamLive.String(): lb.held[streamLive], streamBacklog.String(): lb.held[streamBacklog]},
	}
	if lb.waitingN > 0 {
		st.Waiting = lb.waiting.String()
	}
	return st
}

var (
	budgetDayBytesDesc = prometheus.NewDesc("redwire_remote_write_budget_day_bytes",
		"Request bytes counted against the endpoint's max_bytes_per_day this UTC day. Absent without a link budget.", []string{"endpoint"}, nil)
	budgetDayResetDesc = prometheus.NewDesc("redwire_remote_write_budget_day_reset_timestamp_seconds",
		"When the endpoint's daily byte count starts again (the next UTC midnight). Absent without a link budget.", []string{"endpoint"}, nil)
	budgetDaySpentDesc = prometheus.NewDesc("redwire_remote_write_budget_day_spent",
		"1 while the endpoint's max_bytes_per_day is spent: the backlog waits, and live data too once it no longer fits, kept in the buffer until the day resets. Absent without a link budget.", []string{"endpoint"}, nil)
)

// collect sends the budget's gauges for the named endpoint.
func (lb *linkBudget) collect(ch chan<- prometheus.Metric, name string) {
	st := lb.status()
	if st == nil {
		return
	}
	spent := 0.0
	if st.DaySpent {
		spent = 1
	}
	ch <- prometheus.MustNewConstMetric(budgetDayBytesDesc, prometheus.GaugeValue, float64(st.BytesToday), name)
	ch <- prometheus.MustNewConstMetric(budgetDayResetDesc, prometheus.GaugeValue, float64(st.DayResets.Unix()), name)
	ch <- prometheus.MustNewConstMetric(budgetDaySpentDesc, prometheus.GaugeValue, spent, name)
}

// meteredSender counts every request body an endpoint's client sends,
// probes included: as sent (compressed) and as its protobuf.
type meteredSender struct {
	next remotewrite.Sender
	name string
	m    *metrics
}

func (ms meteredSender) count(body []byte) {
	ms.m.rwBytes.WithLabelValues(ms.name).Add(float64(len(body)))
	ms.m.rwUncompressed.WithLabelValues(ms.name).Add(float64(remotewrite.DecodedLen(body)))
}

func (ms meteredSender) Send(ctx context.Context, body []byte) error {
	ms.count(body)
	return ms.next.Send(ctx, body)
}

func (ms meteredSender) SendMessage(ctx context.Context, msg remotewrite.Message, body []byte) (remotewrite.Written, error) {
	ms.count(body)
	if next, ok := ms.next.(remotewrite.MessageSender); ok {
		return next.SendMessage(ctx, msg, body)
	}
	return remotewrite.Written{}, ms.next.Send(ctx, body)
}
