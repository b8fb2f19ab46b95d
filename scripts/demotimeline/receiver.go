package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
)

// receiver is the Prometheus the demo's redwire writes to, asked through
// its HTTP API: the proof of delivery comes from the receiver itself.
type receiver struct {
	base string // "http://127.0.0.1:PORT"
	http *http.Client
}

// query evaluates promql at ts with /api/v1/query and returns its matrix.
func (r receiver) query(ctx context.Context, promql string, ts time.Time) (model.Matrix, error) {
	u := r.base + "/api/v1/query?" + url.Values{
		"query": {promql}, "time": {strconv.FormatFloat(float64(ts.UnixMilli())/1000, 'f', 3, 64)},
	}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
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
		return nil, err
	}
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("%s: %s", resp.Status, body)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("%s: %s", resp.Status, out.Error)
	}
	if out.Data.ResultType != "matrix" {
		return nil, fmt.Errorf("want a matrix, have a %s", out.Data.ResultType)
	}
	var m model.Matrix
	if err := json.Unmarshal(out.Data.Result, &m); err != nil {
		return nil, fmt.Errorf("decode the matrix: %w", err)
	}
	return m, nil
}

// held is what the receiver holds of one Redis target.
type held struct {
	Up       []time.Time     // timestamps of its redis_up samples, sorted
	PerStamp map[int64]int   // its samples (every series) by timestamp, ms
	Series   int             // series of the target
	Values   map[int64]int64 // redis_up's value by timestamp, ms
}

// held reads every raw sample of the target stamped after from: an
// instant query of a range selector returns the samples themselves, with
// their own timestamps, where query_range would return one evaluation a
// step.
func (r receiver) held(ctx context.Context, target string, from, now time.Time) (held, error) {
	window := int64(math.Ceil(now.Sub(from).Seconds()))
	q := fmt.Sprintf(`{job="redis",instance=%q}[%ds]`, target, max(window, 1))
	matrix, err := r.query(ctx, q, now)
	if err != nil {
		return held{}, fmt.Errorf("receiver %s: query %s: %w", r.base, q, err)
	}
	h := held{PerStamp: map[int64]int{}, Values: map[int64]int64{}, Series: len(matrix)}
	for _, ss := range matrix {
		up := ss.Metric[model.MetricNameLabel] == "redis_up"
		for _, p := range ss.Values {
			ts := int64(p.Timestamp)
			if ts < from.UnixMilli() {
				continue
			}
			h.PerStamp[ts]++
			if up {
				h.Up = append(h.Up, p.Timestamp.Time())
				h.Values[ts] = int64(p.Value)
			}
		}
	}
	slices.SortFunc(h.Up, time.Time.Compare)
	h.Up = slices.CompactFunc(h.Up, time.Time.Equal)
	return h, nil
}
