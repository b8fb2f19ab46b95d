package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// Prometheus is a Prometheus server, Debian's 2.42 or a 3.x, run for one
// test as a remote-write receiver: it scrapes nothing, so everything in
// its TSDB was written to it.
type Prometheus struct {
	srv *server
	api *apiClient
}

// PrometheusOptions chooses which Prometheus StartPrometheusWith runs and
// how. The zero value is StartPrometheus: Debian's 2.42 with its defaults.
type PrometheusOptions struct {
	// Version3 runs Prometheus 3.x (Prometheus3Version, built once by
	// make deps) instead of Debian's 2.42; see StartPrometheus3.
	Version3 bool
	// OutOfOrderWindow is storage.tsdb.out_of_order_time_window: how far
	// behind a series' newest sample a sample is still taken. 0 keeps
	// Prometheus's default, which refuses every out-of-order sample.
	OutOfOrderWindow time.Duration
	// CPUs, if set, holds the server to these CPUs, as taskset -c takes
	// them (e.g. "1"); see StartPrometheusOn.
	CPUs string
	// Features are --enable-feature names (prometheus_features.go).
	Features []string
}

// config is the server's config file. It scrapes nothing (Prometheus
// refuses to start without a config file); the TSDB's out-of-order window
// can only be set here, not by a flag.
func (o PrometheusOptions) config() string {
	c := "global: {}\nscrape_configs: []\n"
	if o.OutOfOrderWindow > 0 {
		c += "storage:\n  tsdb:\n    out_of_order_time_window: " + model.Duration(o.OutOfOrderWindow).String() + "\n"
	}
	return c
}

// StartPrometheus starts prometheus with the remote-write receiver enabled
// on a free loopback port and returns once /-/ready answers 200.
func StartPrometheus(t testing.TB) *Prometheus {
	t.Helper()
	return StartPrometheusWith(t, PrometheusOptions{})
}

// StartPrometheusOn is StartPrometheus with the server held to cpus (as
// taskset -c takes them, e.g. "1"): benchmarks give the receiver its own
// cores, as it has on its own host, so that its maximum ingest rate and
// the agent's drain are measured apart from each other's CPU use.
func StartPrometheusOn(t testing.TB, cpus string) *Prometheus {
	t.Helper()
	return StartPrometheusWith(t, PrometheusOptions{CPUs: cpus})
}

// StartPrometheusWith is StartPrometheus as opts say.
func StartPrometheusWith(t testing.TB, opts PrometheusOptions) *Prometheus {
	t.Helper()
	var srv *server
	if opts.Version3 {
		srv = newServerAt(t, "prometheus", cachedBinary(t, "prometheus", Prometheus3Version))
	} else {
		srv = newServer(t, "prometheus", "prometheus")
	}
	p := &Prometheus{srv: srv, api: newAPIClient("", nil)}
	p.srv.cpus = opts.CPUs
	t.Cleanup(p.api.http.CloseIdleConnections)
	config := filepath.Join(p.srv.dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(opts.config()), 0o644); err != nil {
		t.Fatalf("write prometheus config: %v", err)
	}
	p.srv.args = func(port int) []string {
		args := []string{
			"--config.file=" + config,
			"--storage.tsdb.path=" + p.dataDir(),
			"--web.listen-address=127.0.0.1:" + strconv.Itoa(port),
			"--web.enable-remote-write-receiver",
		}
		if opts.Version3 {
			args = append(args, prometheus3Args...)
		}
		return append(args, opts.featureArgs()...)
	}
	p.srv.probe = p.probe
	p.srv.start(FreePort(t))
	p.api.base = p.URL()
	return p
}

// dataDir is the TSDB, kept across Stop and Start.
func (p *Prometheus) dataDir() string { return filepath.Join(p.srv.dir, "data") }

// probe is ready when /-/ready answers 200 (the TSDB is open) and the
// server's flags name our TSDB dir.
func (p *Prometheus) probe(ctx context.Context, port, _ int) error {
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if _, err := p.api.fetch(ctx, base+"/-/ready"); err != nil {
		return err
	}
	body, err := p.api.fetch(ctx, base+"/api/v1/status/flags")
	if err != nil {
		return err
	}
	var flags struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(body, &flags); err != nil {
		return fmt.Errorf("decode %s/api/v1/status/flags: %w", base, err)
	}
	if got := flags.Data["storage.tsdb.path"]; got != p.dataDir() {
		return fmt.Errorf("%s is a prometheus with storage.tsdb.path %q, not ours", base, got)
	}
	return nil
}

// URL is the server's base URL, "http://127.0.0.1:PORT"; it survives
// restarts.
func (p *Prometheus) URL() string { return "http://" + p.srv.hostPort() }

// WriteURL is the remote-write endpoint.
func (p *Prometheus) WriteURL() string { return p.URL() + "/api/v1/write" }

// Dir is the server's temp dir: config, TSDB (data/) and prometheus.log.
func (p *Prometheus) Dir() string { return p.srv.dir }

// Query evaluates promql now.
func (p *Prometheus) Query(ctx context.Context, promql string) (Vector, error) {
	return p.api.instant(ctx, promql)
}

// QueryRange evaluates promql at every step from start to end.
func (p *Prometheus) QueryRange(ctx context.Context, promql string, start, end time.Time, step time.Duration) ([]RangeSeries, error) {
	return p.api.rangeQuery(ctx, promql, start, end, step)
}

// Samples returns the raw samples of selector over the last window, with
// their own timestamps.
func (p *Prometheus) Samples(ctx context.Context, selector string, window time.Duration) ([]RangeSeries, error) {
	return p.api.samples(ctx, selector, window)
}

// Metric sums Prometheus's own /metrics samples matching series, a name
// with optional required labels, e.g.
// "prometheus_tsdb_out_of_order_samples_total" or
// `prometheus_http_requests_total{handler="/api/v1/write",code="400"}`;
// absent series read 0.
func (p *Prometheus) Metric(ctx context.Context, series string) (float64, error) {
	return p.api.metric(ctx, series)
}

// Stop shuts Prometheus down with SIGTERM and waits; the TSDB stays for
// Start. A no-op when it is not running.
func (p *Prometheus) Stop() {
	p.srv.t.Helper()
	p.srv.stop(syscall.SIGTERM)
}

// Kill ends Prometheus with SIGKILL, as a crash would; Start replays the
// WAL.
func (p *Prometheus) Kill() {
	p.srv.t.Helper()
	p.srv.stop(syscall.SIGKILL)
}

// Start runs Prometheus again on the same port and TSDB and waits until it
// is ready. A no-op while it is running.
func (p *Prometheus) Start() {
	p.srv.t.Helper()
	p.srv.restart()
}
