package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
)

// Querier reads data back from a receiver. Both *Prometheus and
// *VictoriaMetrics implement it, so assertions are written once.
type Querier interface {
	// Query evaluates promql at the current time.
	Query(ctx context.Context, promql string) (Vector, error)
}

// Receiver is everything tests do with a remote-write receiver, so a test
// body can run against Prometheus and VictoriaMetrics alike.
type Receiver interface {
	Querier
	// URL is the receiver's base URL, WriteURL its remote-write endpoint.
	URL() string
	WriteURL() string
	// QueryRange evaluates promql at every step from start to end.
	QueryRange(ctx context.Context, promql string, start, end time.Time, step time.Duration) ([]RangeSeries, error)
	// Samples returns the raw samples of selector over the last window.
	Samples(ctx context.Context, selector string, window time.Duration) ([]RangeSeries, error)
	// Metric sums the receiver's own /metrics samples matching series:
	// a name, optionally with label pairs, e.g. `x_total{code="400"}`.
	Metric(ctx context.Context, series string) (float64, error)
	Stop()
	Kill()
	Start()
}

var (
	_ Receiver = (*Prometheus)(nil)
	_ Receiver = (*VictoriaMetrics)(nil)
)

// Vector is an instant query's result, sorted by label set.
type Vector []Series

// Series is one element of an instant query's result.
type Series struct {
	Labels map[string]string // including __name__ when the query keeps it
	Value  float64
	T      time.Time // the evaluation time, not the sample's
}

// RangeSeries is one series of a range query's result, or of Samples.
type RangeSeries struct {
	Labels map[string]string
	Points []Point // in time order
}

// Point is one value of a RangeSeries.
type Point struct {
	T time.Time
	V float64
}

// apiClient speaks the Prometheus HTTP API, which both receivers serve.
type apiClient struct {
	base string
	http *http.Client
	// extra is added to every query; VictoriaMetrics needs nocache=1.
	extra url.Values
}

// newAPIClient returns a client with its own connection pool, so that
// closing it at cleanup leaves no idle connections to a dead server.
func newAPIClient(base string, extra url.Values) *apiClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &apiClient{base: base, http: &http.Client{Transport: tr}, extra: extra}
}

// query evaluates promql at the instant at, which is sent explicitly so
// the receiver's own idea of "now" (VictoriaMetrics rounds it down to the
// second) cannot hide the newest samples.
func (a *apiClient) query(ctx context.Context, promql string, at time.Time) (model.Value, error) {
	params := url.Values{"query": {promql}, "time": {apiTime(at)}}
	v, err := a.get(ctx, "/api/v1/query", params)
	if err != nil {
		return nil, fmt.Errorf("query %q at %s: %w", promql, a.base, err)
	}
	return v, nil
}

// instant runs query and converts a vector or scalar result.
func (a *apiClient) instant(ctx context.Context, promql string) (Vector, error) {
	v, err := a.query(ctx, promql, time.Now())
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case model.Vector:
		sort.Slice(v, func(i, j int) bool { return v[i].Metric.String() < v[j].Metric.String() })
		out := make(Vector, 0, len(v))
		for _, s := range v {
			out = append(out, Series{Labels: labelMap(s.Metric), Value: float64(s.Value), T: s.Timestamp.Time()})
		}
		return out, nil
	case *model.Scalar:
		return Vector{{Labels: map[string]string{}, Value: float64(v.Value), T: v.Timestamp.Time()}}, nil
	default:
		return nil, fmt.Errorf("query %q at %s returned a %s; use QueryRange or Samples", promql, a.base, v.Type())
	}
}

// rangeQuery runs /api/v1/query_range.
func (a *apiClient) rangeQuery(ctx context.Context, promql string, start, end time.Time, step time.Duration) ([]RangeSeries, error) {
	if step <= 0 {
		return nil, fmt.Errorf("query_range %q: step %v must be positive", promql, step)
	}
	params := url.Values{
		"query": {promql},
		"start": {apiTime(start)},
		"end":   {apiTime(end)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	v, err := a.get(ctx, "/api/v1/query_range", params)
	if err != nil {
		return nil, fmt.Errorf("query_range %q at %s: %w", promql, a.base, err)
	}
	return matrix(v, promql)
}

// samples returns the raw samples of selector over the last window: an
// instant query for a range selector answers with the stored samples and
// their own timestamps, which is what "was every sample delivered once?"
// needs.
func (a *apiClient) samples(ctx context.Context, selector string, window time.Duration) ([]RangeSeries, error) {
	promql := fmt.Sprintf("%s[%dms]", selector, window.Milliseconds())
	v, err := a.query(ctx, promql, time.Now())
	if err != nil {
		return nil, err
	}
	return matrix(v, promql)
}

// matrix converts a range result.
func matrix(v model.Value, promql string) ([]RangeSeries, error) {
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("%q returned a %s, want a matrix", promql, v.Type())
	}
	sort.Slice(m, func(i, j int) bool { return m[i].Metric.String() < m[j].Metric.String() })
	out := make([]RangeSeries, 0, len(m))
	for _, s := range m {
		rs := RangeSeries{Labels: labelMap(s.Metric), Points: make([]Point, 0, len(s.Values))}
		for _, p := range s.Values {
			rs.Points = append(rs.Points, Point{T: p.Timestamp.Time(), V: float64(p.Value)})
		}
		out = append(out, rs)
	}
	return out, nil
}

// get calls an API endpoint and decodes the result from its JSON envelope.
func (a *apiClient) get(ctx context.Context, path string, params url.Values) (model.Value, error) {
	for k, v := range a.extra {
		params[k] = v
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path+"?"+params.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("HTTP %d, reading body: %w", resp.StatusCode, err)
	}
	var env struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("HTTP %d, undecodable body %q: %w", resp.StatusCode, snippet(body), err)
	}
	if env.Status != "success" {
		return nil, fmt.Errorf("HTTP %d: %s: %s", resp.StatusCode, env.ErrorType, env.Error)
	}
	var v model.Value
	switch env.Data.ResultType {
	case "vector":
		v = &model.Vector{}
	case "matrix":
		v = &model.Matrix{}
	case "scalar":
		v = &model.Scalar{}
	case "string":
		v = &model.String{}
	default:
		return nil, fmt.Errorf("unknown result type %q", env.Data.ResultType)
	}
	if err := json.Unmarshal(env.Data.Result, v); err != nil {
		return nil, fmt.Errorf("decode %s result: %w", env.Data.ResultType, err)
	}
	// Vector and Matrix are slices: hand them on by value, as the
	// model.Value implementations they are.
	switch v := v.(type) {
	case *model.Vector:
		return *v, nil
	case *model.Matrix:
		return *v, nil
	}
	return v, nil
}

// apiTime formats t as the API's seconds with millisecond precision, the
// receivers' timestamp resolution.
func apiTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1e3, 'f', 3, 64)
}

// labelMap converts a result's label set.
func labelMap(m model.Metric) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[string(k)] = string(v)
	}
	return out
}

// snippet shortens a body for an error message.
func snippet(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
