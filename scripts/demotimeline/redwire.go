package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// What redwire says about itself: /api/v1/status (agent/api.go) and the
// counters of /metrics (agent/metrics.go). Only the fields the demo
// tells about are read.

// endpointStatus is one endpoint of redwire's /api/v1/status.
type endpointStatus struct {
	Name           string    `json:"name"`
	Degraded       bool      `json:"degraded"`
	BacklogSamples int64     `json:"backlog_samples"`
	BacklogBytes   int64     `json:"backlog_bytes"`
	MemorySamples  int       `json:"memory_samples"`
	Oldest         time.Time `json:"oldest"`
	DeliveryLag    *float64  `json:"delivery_lag_seconds"`
	BacklogDrain   *float64  `json:"backlog_drain_estimate_seconds"`
}

// The modes the demo names. The API has no mode field: degraded is its
// flag, and an endpoint that is not degraded but still has a backlog on
// disk is replaying it (agent/delivery.go).
const (
	modeNormal    = "normal"
	modeDegraded  = "degraded"
	modeReplaying = "replaying"
)

func (e endpointStatus) mode() string {
	switch {
	case e.Degraded:
		return modeDegraded
	case e.BacklogSamples > 0:
		return modeReplaying
	}
	return modeNormal
}

// describe says in a line where the endpoint's delivery stands.
func (e endpointStatus) describe() string {
	var s string
	switch e.mode() {
	case modeDegraded:
		s = fmt.Sprintf("degraded: %s samples (%s) kept on disk until the receiver answers", grouped(e.BacklogSamples), size(e.BacklogBytes))
		if !e.Oldest.IsZero() {
			s += ", the oldest taken at " + e.Oldest.Local().Format("15:04:05")
		}
	case modeReplaying:
		s = fmt.Sprintf("replaying: %s samples (%s) still on disk", grouped(e.BacklogSamples), size(e.BacklogBytes))
		if e.BacklogDrain != nil {
			s += fmt.Sprintf(", about %.1f s to go", *e.BacklogDrain)
		}
	default:
		s = "normal: nothing on disk"
		if e.MemorySamples > 0 {
			s += fmt.Sprintf(", %s samples in memory waiting for the next send", grouped(int64(e.MemorySamples)))
		}
	}
	if e.DeliveryLag != nil {
		s += fmt.Sprintf("; the receiver's newest sample is %.1f s old", *e.DeliveryLag)
	}
	return s
}

// redwire is a running redwire's web API.
type redwire struct {
	base string // "http://127.0.0.1:PORT"
	http *http.Client
}

func (r redwire) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s%s: %w", r.base, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s%s: %s", r.base, path, resp.Status)
	}
	return body, nil
}

// status reads /api/v1/status.
func (r redwire) status(ctx context.Context) ([]endpointStatus, error) {
	body, err := r.get(ctx, "/api/v1/status")
	if err != nil {
		return nil, err
	}
	var st struct {
		Data struct {
			Endpoints []endpointStatus `json:"endpoints"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("decode %s/api/v1/status: %w", r.base, err)
	}
	if len(st.Data.Endpoints) == 0 {
		return nil, fmt.Errorf("%s/api/v1/status lists no endpoint", r.base)
	}
	return st.Data.Endpoints, nil
}

// counters are the redwire counters the demo's bottom line is made of.
type counters struct {
	Target   string // the Redis target (its instance label)
	Taken    int64  // redwire_samples_scraped_total of the target
	Scrapes  int64  // redwire_target_scrapes_total of the target
	Dropped  int64  // redwire_samples_dropped_total, every endpoint and reason
	Replayed int64  // redwire_replay_samples_total, every endpoint
}

// selfTarget is the name of the loop that scrapes redwire's own metrics.
const selfTarget = "redwire"

// counters reads /metrics. The demo runs one Redis target; the loop that
// scrapes redwire itself is not it.
func (r redwire) counters(ctx context.Context) (counters, error) {
	body, err := r.get(ctx, "/metrics")
	if err != nil {
		return counters{}, err
	}
	return parseCounters(body)
}

func parseCounters(body []byte) (counters, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return counters{}, fmt.Errorf("parse redwire's /metrics: %w", err)
	}
	var c counters
	perTarget := func(family string) map[string]int64 {
		out := map[string]int64{}
		for _, m := range mfs[family].GetMetric() {
			if t := label(m, "target"); t != selfTarget {
				out[t] += int64(value(m))
			}
		}
		return out
	}
	taken, scrapes := perTarget("redwire_samples_scraped_total"), perTarget("redwire_target_scrapes_total")
	if len(taken) != 1 {
		return counters{}, fmt.Errorf("redwire's /metrics: want one Redis target in redwire_samples_scraped_total, have %d", len(taken))
	}
	for t, n := range taken {
		c.Target, c.Taken, c.Scrapes = t, n, scrapes[t]
	}
	c.Dropped = sum(mfs["redwire_samples_dropped_total"])
	c.Replayed = sum(mfs["redwire_replay_samples_total"])
	return c, nil
}

// stableCounters reads /metrics until two reads in a row agree. A scrape
// adds to the samples counter just before the scrapes counter; one read
// could fall between the two and count a scrape's samples without it.
func (r redwire) stableCounters(ctx context.Context) (counters, error) {
	prev, err := r.counters(ctx)
	if err != nil {
		return counters{}, err
	}
	for {
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			return counters{}, fmt.Errorf("redwire's counters never held still: %w", err)
		}
		c, err := r.counters(ctx)
		if err != nil {
			return counters{}, err
		}
		if c == prev {
			return c, nil
		}
		prev = c
	}
}

func label(m *dto.Metric, name string) string {
	i := slices.IndexFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == name })
	if i < 0 {
		return ""
	}
	return m.GetLabel()[i].GetValue()
}

func sum(mf *dto.MetricFamily) int64 {
	var n float64
	for _, m := range mf.GetMetric() {
		n += value(m)
	}
	return int64(n)
}

// value is a counter's value, or an untyped sample's (a /metrics without
// its TYPE lines).
func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetUntyped().GetValue()
}
