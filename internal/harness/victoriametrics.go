package harness

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// VictoriaMetrics is a single-node victoria-metrics run for one test as a
// remote-write receiver.
type VictoriaMetrics struct {
	srv *server
	api *apiClient
}

// StartVictoriaMetrics starts victoria-metrics on a free loopback port and
// returns once /health answers 200.
//
// VictoriaMetrics is built to hide the newest data from queries, which
// suits dashboards and defeats tests. Three things undo that:
//   - -search.latencyOffset=0s: by default queries end 30s in the past;
//   - nocache=1 on every query (Query, QueryRange, Samples): otherwise an
//     instant query's time is clamped to the server's clock, which ticks in
//     whole seconds, hiding samples written within the current second;
//   - GET /internal/force_flush before every query: ingested rows are
//     buffered for about a second, and a new series' index entries become
//     searchable only when a 10-second background task runs.
//
// -search.disableCache additionally turns off the rollup result cache, so
// repeated queries (WaitFor loops) never see a stale answer.
func StartVictoriaMetrics(t testing.TB) *VictoriaMetrics {
	t.Helper()
	return startVictoriaMetrics(t, FreePort(t))
}

// startVictoriaMetrics is StartVictoriaMetrics on a chosen first port.
func startVictoriaMetrics(t testing.TB, port int) *VictoriaMetrics {
	t.Helper()
	v := &VictoriaMetrics{
		srv: newServer(t, "victoria-metrics", "victoria-metrics"),
		api: newAPIClient("", url.Values{"nocache": {"1"}}),
	}
	t.Cleanup(v.api.http.CloseIdleConnections)
	v.srv.args = func(port int) []string {
		return []string{
			"-httpListenAddr=127.0.0.1:" + strconv.Itoa(port),
			"-storageDataPath=" + v.dataDir(),
			"-search.latencyOffset=0s",
			"-search.disableCache",
		}
	}
	v.srv.probe = v.probe
	v.srv.start(port)
	v.api.base = v.URL()
	return v
}

// dataDir is the storage, kept across Stop and Start.
func (v *VictoriaMetrics) dataDir() string { return filepath.Join(v.srv.dir, "data") }

// probe is ready when /health answers 200 and the server's flag metrics
// name our storage dir.
func (v *VictoriaMetrics) probe(ctx context.Context, port, _ int) error {
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if _, err := v.api.fetch(ctx, base+"/health"); err != nil {
		return err
	}
	body, err := v.api.fetch(ctx, base+"/metrics")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(body), "\n") {
		name, raw, _, ok := parseSample(line)
		if !ok || name != "flag" {
			continue
		}
		if labels, ok := parseLabels(raw); ok && labels["name"] == "storageDataPath" {
			if labels["value"] != v.dataDir() {
				return fmt.Errorf("%s is a victoria-metrics with storageDataPath %q, not ours", base, labels["value"])
			}
			return nil
		}
	}
	return fmt.Errorf("%s/metrics shows no storageDataPath flag", base)
}

// URL is the server's base URL, "http://127.0.0.1:PORT"; it survives
// restarts.
func (v *VictoriaMetrics) URL() string { return "http://" + v.srv.hostPort() }

// WriteURL is the Prometheus remote-write endpoint.
func (v *VictoriaMetrics) WriteURL() string { return v.URL() + "/api/v1/write" }

// Dir is the server's temp dir: storage (data/) and victoria-metrics.log.
func (v *VictoriaMetrics) Dir() string { return v.srv.dir }

// Flush makes everything ingested so far visible to queries. Query,
// QueryRange and Samples call it; it is exported for tests that read the
// server some other way.
func (v *VictoriaMetrics) Flush(ctx context.Context) error {
	if _, err := v.api.fetch(ctx, v.URL()+"/internal/force_flush"); err != nil {
		return fmt.Errorf("flush victoria-metrics: %w", err)
	}
	return nil
}

// Query flushes, then evaluates promql now.
func (v *VictoriaMetrics) Query(ctx context.Context, promql string) (Vector, error) {
	if err := v.Flush(ctx); err != nil {
		return nil, err
	}
	return v.api.instant(ctx, promql)
}

// QueryRange flushes, then evaluates promql at every step from start to
// end.
func (v *VictoriaMetrics) QueryRange(ctx context.Context, promql string, start, end time.Time, step time.Duration) ([]RangeSeries, error) {
	if err := v.Flush(ctx); err != nil {
		return nil, err
	}
	return v.api.rangeQuery(ctx, promql, start, end, step)
}

// Samples flushes, then returns the raw samples of selector over the last
// window.
func (v *VictoriaMetrics) Samples(ctx context.Context, selector string, window time.Duration) ([]RangeSeries, error) {
	if err := v.Flush(ctx); err != nil {
		return nil, err
	}
	return v.api.samples(ctx, selector, window)
}

// Metric sums the server's own /metrics samples matching series, a name
// with optional required labels; absent series read 0. Note that 1.79
// drops samples outside the retention without counting them in
// vm_rows_ignored_total; it logs a warning, which
// `vm_log_messages_total{level="warn"}` counts.
func (v *VictoriaMetrics) Metric(ctx context.Context, series string) (float64, error) {
	return v.api.metric(ctx, series)
}

// Stop shuts the server down with SIGTERM, which flushes its buffers to
// disk, and waits; the data stays for Start. A no-op when it is not
// running.
func (v *VictoriaMetrics) Stop() {
	v.srv.t.Helper()
	v.srv.stop(syscall.SIGTERM)
}

// Kill ends the server with SIGKILL, as a crash would: rows still buffered
// in memory (about the last second) are lost.
func (v *VictoriaMetrics) Kill() {
	v.srv.t.Helper()
	v.srv.stop(syscall.SIGKILL)
}

// Start runs the server again on the same port and storage and waits until
// it is ready. A no-op while it is running.
func (v *VictoriaMetrics) Start() {
	v.srv.t.Helper()
	v.srv.restart()
}
