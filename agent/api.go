package agent

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/sources/redis"
)

// targetInfo is one target as GET /api/v1/targets shows it.
type targetInfo struct {
	Instance            string            `json:"instance"`
	Addr                string            `json:"addr"` // password redacted
	Source              string            `json:"source"`
	Labels              map[string]string `json:"labels,omitempty"`
	Up                  bool              `json:"up"`
	ConsecutiveFailures int               `json:"consecutive_failures"`
	// LastError is the last scrape's error, absent when it succeeded;
	// LastSuccess the stamp of the last successful scrape, absent before.
	LastError   string    `json:"last_error,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
}

// targetView is what the HTTP API reads of the target manager: copies
// published after every change, so a request never touches the manager's
// own state.
type targetView struct {
	published atomic.Pointer[[]publishedTarget]
}

type publishedTarget struct {
	cfg    redis.TargetConfig
	source string
	target *redis.Target // its health methods are safe to call
}

func (v *targetView) publish(running map[string]*managedTarget) {
	list := make([]publishedTarget, 0, len(running))
	for _, mt := range running {
		list = append(list, publishedTarget{cfg: mt.cfg, source: mt.source, target: mt.target})
	}
	slices.SortFunc(list, func(a, b publishedTarget) int { return strings.Compare(a.cfg.Instance(), b.cfg.Instance()) })
	v.published.Store(&list)
}

func (v *targetView) targets() []targetInfo {
	p := v.published.Load()
	if p == nil {
		return []targetInfo{}
	}
	out := make([]targetInfo, 0, len(*p))
	for _, t := range *p {
		ti := targetInfo{
			Instance: t.cfg.Instance(), Addr: redis.RedactAddr(t.cfg.Addr), Source: t.source,
			Labels: t.cfg.Labels, Up: t.target.Up(), ConsecutiveFailures: t.target.ConsecutiveFailures(),
			LastSuccess: t.target.LastSuccess().UTC(),
		}
		if err := t.target.LastError(); err != nil {
			ti.LastError = err.Error()
		}
		out = append(out, ti)
	}
	return out
}

// endpointStatus is one endpoint (or the local buffer) in /api/v1/status.
type endpointStatus struct {
	Name     string `json:"name"`
	Degraded bool   `json:"degraded"`
	// Mode is the delivery state machine's (delivery.go): normal,
	// degraded or replay; absent for the local buffer, which sends
	// nothing. Paused: the receiver refuses our credentials or URL.
	Mode           string    `json:"mode,omitempty"`
	Paused         bool      `json:"paused"`
	BacklogSamples int64     `json:"backlog_samples"`
	BacklogBytes   int64     `json:"backlog_bytes"`
	MemorySamples  int       `json:"memory_samples"`
	Oldest         time.Time `json:"oldest,omitzero"`
	// DeliveryLag is the age of the newest sample the receiver took;
	// BacklogDrain how long the backlog takes at the current replay's
	// pace. Absent when not known.
	DeliveryLag  *float64 `json:"delivery_lag_seconds,omitempty"`
	BacklogDrain *float64 `json:"backlog_drain_estimate_seconds,omitempty"`
	// TimeToFull is how long the disk buffer lasts at its recent pace of
	// growth; absent while it is not growing.
	TimeToFull *float64 `json:"time_to_full_seconds,omitempty"`
	// LastSend is when the receiver last took samples; absent before.
	LastSend time.Time `json:"last_successful_send,omitzero"`
	// Parked is what the receiver refused for its age and the buffer
	// file keeps (parked.go); absent when nothing is parked.
	Parked *parkedStatus `json:"parked,omitempty"`
	// Budget is the link budget and what it held back (budget.go);
	// absent without max_bytes_per_second or max_bytes_per_day.
	Budget *budgetStatus `json:"link_budget,omitempty"`
}

// parkedStatus is an endpoint's parked area in GET /api/v1/status.
type parkedStatus struct {
	Samples int64     `json:"samples"`
	Bytes   int64     `json:"bytes"`
	Oldest  time.Time `json:"oldest"`
	Newest  time.Time `json:"newest"`
}

// status is GET /api/v1/status.
type status struct {
	Version   string           `json:"version"`
	StartedAt time.Time        `json:"started_at"`
	Degraded  bool             `json:"degraded"`
	Targets   int              `json:"targets"`
	Endpoints []endpointStatus `json:"endpoints"`
	// RecentChanges are the endpoints' last state changes, newest first
	// (changes.go).
	RecentChanges []stateChange `json:"recent_changes"`
}

func (a *agentRun) status(v *targetView, started time.Time) status {
	degraded, _ := a.modes.degraded()
	st := status{Version: a.version, StartedAt: started, Degraded: degraded, Targets: len(v.targets()),
		RecentChanges: a.changes.recent()}
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, o := range a.outputs {
		s := o.buf.Stats()
		es := endpointStatus{Name: o.name, BacklogSamples: s.Store.Samples, BacklogBytes: s.Store.Bytes, MemorySamples: s.MemorySamples}
		es.Degraded = a.modes.isDown(es.Name)
		for _, snd := range a.senders {
			if snd.name == o.name {
				d := snd.shownState()
				es.Mode, es.Paused = d.mode.String(), d.paused
			}
		}
		if s.Store.OldestT > 0 {
			es.Oldest = time.UnixMilli(s.Store.OldestT).UTC()
		}
		if pk := o.buf.Parked(); pk.Samples > 0 {
			es.Parked = &parkedStatus{Samples: pk.Samples, Bytes: pk.Bytes,
				Oldest: time.UnixMilli(pk.MinT).UTC(), Newest: time.UnixMilli(pk.MaxT).UTC()}
		}
		if p := a.m.buffers.progressOf(o.name); p != nil {
			now := time.Now()
			if a.now != nil {
				now = a.now()
			}
			if lag, ok := p.lag(now); ok {
				es.DeliveryLag = &lag
			}
			if d, ok := p.drainEstimate(s.Store.Samples, now); ok {
				es.BacklogDrain = &d
			}
			if t := p.lastSent(); !t.IsZero() {
				es.LastSend = t.UTC()
			}
		}
		es.Budget = a.m.buffers.budgetOf(o.name).status()
		if ttf, ok := a.m.buffers.fillOf(o.name).timeToFull(o.buf.Room()); ok {
			es.TimeToFull = &ttf
		}
		st.Endpoints = append(st.Endpoints, es)
	}
	return st
}

// gap is one lost range in GET /api/v1/gaps.
type gap struct {
	Endpoint string `json:"endpoint"`
	buffer.Gap
}

// gaps is GET /api/v1/gaps: the lost ranges of every endpoint, newest
// first.
func (a *agentRun) gaps() []gap {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := []gap{}
	for _, o := range a.outputs {
		for _, g := range a.m.buffers.gapsOf(o.name).list() {
			out = append(out, gap{Endpoint: o.name, Gap: g})
		}
	}
	slices.SortStableFunc(out, func(a, b gap) int { return b.To.Compare(a.To) })
	return out
}

// apiHandlers serve the agent's state as JSON for tooling.
func apiHandlers(mux *http.ServeMux, targets, status, gaps func() any) {
	serve := func(get func() any) http.HandlerFunc {
		return func(rw http.ResponseWriter, _ *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(rw)
			enc.SetIndent("", "  ")
			_ = enc.Encode(map[string]any{"status": "success", "data": get()})
		}
	}
	mux.Handle("GET /api/v1/targets", serve(targets))
	mux.Handle("GET /api/v1/status", serve(status))
	mux.Handle("GET /api/v1/gaps", serve(gaps))
}
