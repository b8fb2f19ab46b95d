package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sources/redis"
)

// syncBuffer collects log output from the agent's goroutines.
type syncBuffer = harness.LogBuffer

// testConfig is a finalized config polling addrs every second and writing
// to writeURL (none: buffer-only) with short batch deadlines.
func testConfig(t *testing.T, writeURL string, targets ...redis.TargetConfig) *Config {
	t.Helper()
	return editedTestConfig(t, writeURL, nil, targets...)
}

// editedTestConfig is testConfig with edit applied before Finalize.
func editedTestConfig(t testing.TB, writeURL string, edit func(*Config), targets ...redis.TargetConfig) *Config {
	t.Helper()
	cfg := &Config{
		Global:  GlobalConfig{ScrapeInterval: model.Duration(time.Second), ExternalLabels: map[string]string{"site": "test"}},
		Targets: targets,
		Web:     WebConfig{ListenAddress: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))},
	}
	cfg.Buffer.Path = t.TempDir()
	cfg.Buffer.CrashJournal = t.TempDir() // as tmpfs would: it outlives the process
	if writeURL != "" {
		u, err := url.Parse(writeURL)
		if err != nil {
			t.Fatal(err)
		}
		ep := remotewrite.NewEndpointConfig(u)
		ep.QueueConfig.BatchSendDeadline = model.Duration(100 * time.Millisecond)
		ep.QueueConfig.MinBackoff = model.Duration(50 * time.Millisecond)
		ep.QueueConfig.MaxBackoff = model.Duration(200 * time.Millisecond)
		cfg.RemoteWrite = []remotewrite.EndpointConfig{ep}
	}
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Finalize(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startAgent runs the agent until the test ends and returns its log.
func startAgent(t *testing.T, cfg *Config) *syncBuffer {
	t.Helper()
	a := runAgent(t, cfg)
	return a.logs
}

// testAgent is an agent running in the test process.
type testAgent struct {
	logs *syncBuffer
	reg  *prometheus.Registry
	stop func() // graceful stop; waits for Run to return; idempotent
}

// runAgent starts agent.Run, waits for /-/ready and stops it when the
// test ends (or earlier, through stop).
func runAgent(t testing.TB, cfg *Config, edit ...func(*Options)) *testAgent {
	t.Helper()
	a := &testAgent{logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts := Options{Logger: slog.New(slog.NewTextHandler(a.logs, nil)), Registry: a.reg, Version: "test"}
	for _, e := range edit {
		e(&opts)
	}
	go func() {
		done <- Run(ctx, cfg, opts)
	}()
	var once sync.Once
	a.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("agent log:\n%s", a.logs.String())
		}
	})
	harness.WaitFor(t, 30*time.Second, "agent /-/ready", func() (bool, error) {
		select {
		case err := <-done:
			done <- err
			return false, fmt.Errorf("agent exited: %v", err)
		default:
		}
		resp, err := http.Get("http://" + cfg.Web.ListenAddress + "/-/ready")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return a
}

// agentMetric reads one sample of the agent's own /metrics, e.g.
// `redwire_target_up{target="x"}`; it returns -1 if the line is absent.
func agentMetric(t *testing.T, cfg *Config, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(metricsText(t, cfg), "\n") {
		if name, val, ok := strings.Cut(line, " "); ok && name == series {
			var v float64
			if _, err := fmt.Sscan(val, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// metricsText fetches the agent's /metrics page; "" if it does not answer.
func metricsText(t *testing.T, cfg *Config) string {
	t.Helper()
	resp, err := http.Get("http://" + cfg.Web.ListenAddress + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// queryOne waits until promql returns exactly one series and returns it.
func queryOne(t *testing.T, q harness.Querier, promql string, ok func(harness.Series) bool) harness.Series {
	t.Helper()
	var got harness.Series
	harness.WaitFor(t, 60*time.Second, promql, func() (bool, error) {
		vec, err := q.Query(context.Background(), promql)
		if err != nil {
			return false, err
		}
		if len(vec) != 1 {
			return false, fmt.Errorf("%d series", len(vec))
		}
		got = vec[0]
		if ok != nil && !ok(got) {
			return false, fmt.Errorf("not yet: %v = %v", got.Labels, got.Value)
		}
		return true, nil
	})
	return got
}

func fill(t *testing.T, r *harness.Redis, db, n int) {
	t.Helper()
	ctx := context.Background()
	c := r.Client()
	pipe := c.Pipeline()
	pipe.Select(ctx, db)
	for i := 0; i < n; i++ {
		pipe.Set(ctx, fmt.Sprintf("key:%d", i), i, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestEndToEndPrometheus is the product's promise in one test: keys written
// to a real Redis arrive as exact values, with the right labels, types and
// metadata, in a real Prometheus remote-write receiver.
func TestEndToEndPrometheus(t *testing.T) {
	r := harness.StartRedis(t)
	fill(t, r, 0, 1234)
	fill(t, r, 3, 7)
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL()) // records requests, forwards all
	cfg := testConfig(t, proxy.URL()+"/api/v1/write",
		redis.TargetConfig{Addr: r.URL(), Labels: map[string]string{"team": "cache"}})
	startAgent(t, cfg)

	keys := queryOne(t, prom, `redis_db_keys{db="db0"}`, func(s harness.Series) bool { return s.Value == 1234 })
	want := map[string]string{"__name__": "redis_db_keys", "db": "db0", "instance": r.Addr(), "job": "redis", "team": "cache", "site": "test"}
	if fmt.Sprint(keys.Labels) != fmt.Sprint(want) {
		t.Errorf("labels = %v, want %v", keys.Labels, want)
	}
	queryOne(t, prom, `redis_db_keys{db="db3"}`, func(s harness.Series) bool { return s.Value == 7 })
	queryOne(t, prom, `redis_up`, func(s harness.Series) bool { return s.Value == 1 })
	queryOne(t, prom, `redis_instance_info{role="master"}`, func(s harness.Series) bool { return s.Value == 1 })

	// Counters increase between scrapes (every INFO is a command).
	queryOne(t, prom, `max_over_time(redis_commands_processed_total[5m]) - min_over_time(redis_commands_processed_total[5m]) > 0`, nil)

	// The wire format and the metadata, as the receiver got them.
	var sawCounter, sawGauge bool
	for _, req := range proxy.Requests() {
		if req.Write == nil {
			t.Fatalf("undecodable request: %v", req.DecodeErr)
		}
		for h, want := range map[string]string{"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf", "X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": "redwire/test"} {
			if got := req.Header.Get(h); got != want {
				t.Errorf("header %s = %q, want %q", h, got, want)
			}
		}
		for _, m := range req.Write.Metadata {
			switch {
			case m.MetricFamilyName == "redis_commands_processed_total" && m.Type == prompb.MetricMetadata_COUNTER && m.Help != "":
				sawCounter = true
			case m.MetricFamilyName == "redis_db_keys" && m.Type == prompb.MetricMetadata_GAUGE && m.Help != "":
				sawGauge = true
			}
		}
	}
	if !sawCounter || !sawGauge {
		t.Errorf("metadata sent: counter %v, gauge %v; want both", sawCounter, sawGauge)
	}
	if n, err := prom.Metric(context.Background(), "prometheus_tsdb_out_of_order_samples_total"); err != nil || n != 0 {
		t.Errorf("receiver rejected out-of-order samples: %v %v", n, err)
	}

	// The agent's own metrics travel with the Redis samples.
	queryOne(t, prom, fmt.Sprintf(`redwire_target_up{job="redwire",target=%q}`, r.Addr()), func(s harness.Series) bool { return s.Value == 1 })
	if resp, err := http.Get("http://" + cfg.Web.ListenAddress + "/-/healthy"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/-/healthy: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// The agent's own view.
	if v := agentMetric(t, cfg, fmt.Sprintf(`redwire_target_up{target=%q}`, r.Addr())); v != 1 {
		t.Errorf("redwire_target_up = %v", v)
	}
	if v := agentMetric(t, cfg, fmt.Sprintf(`redwire_remote_write_samples_total{endpoint=%q,result="success"}`, cfg.RemoteWrite[0].Label())); v <= 0 {
		t.Errorf("redwire_remote_write_samples_total{result=success} = %v", v)
	}
}

// TestEndToEndVictoriaMetrics proves the protocol is not Prometheus-only.
func TestEndToEndVictoriaMetrics(t *testing.T) {
	r := harness.StartRedis(t)
	fill(t, r, 0, 1234)
	vm := harness.StartVictoriaMetrics(t)
	cfg := testConfig(t, vm.WriteURL(), redis.TargetConfig{Addr: r.URL()})
	startAgent(t, cfg)

	keys := queryOne(t, vm, `redis_db_keys{db="db0"}`, func(s harness.Series) bool { return s.Value == 1234 })
	if keys.Labels["instance"] != r.Addr() || keys.Labels["job"] != "redis" || keys.Labels["site"] != "test" {
		t.Errorf("labels = %v", keys.Labels)
	}
	queryOne(t, vm, `max_over_time(redis_commands_processed_total[5m]) - min_over_time(redis_commands_processed_total[5m]) > 0`, nil)
}

// TestUnreachableRedis: the agent keeps running, reports redis_up 0, logs
// the outage once (not once per scrape) and the recovery once.
func TestUnreachableRedis(t *testing.T) {
	r := harness.StartRedis(t)
	r.Stop()
	prom := harness.StartPrometheus(t)
	cfg := testConfig(t, prom.WriteURL(), redis.TargetConfig{Addr: r.URL()})
	logs := startAgent(t, cfg)

	queryOne(t, prom, `redis_up`, func(s harness.Series) bool { return s.Value == 0 })
	// Several failed scrapes later there is still exactly one warning.
	queryOne(t, prom, `count_over_time(redis_up[5m]) >= 4`, nil)
	if n := logs.Count("target down"); n != 1 {
		t.Errorf("%d 'target down' lines after several failed scrapes, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), r.Addr()) {
		t.Errorf("the log does not name the target %s", r.Addr())
	}

	r.Start()
	queryOne(t, prom, `redis_up`, func(s harness.Series) bool { return s.Value == 1 })
	harness.WaitFor(t, 10*time.Second, "recovery log line", func() (bool, error) {
		return logs.Count("target is back up") == 1, nil
	})
	if n := logs.Count("target down"); n != 1 {
		t.Errorf("%d 'target down' lines, want 1", n)
	}
}

// TestUnreachableReceiver: nothing listens at the endpoint; the agent keeps
// scraping, counts failed requests and logs the failure once.
func TestUnreachableReceiver(t *testing.T) {
	r := harness.StartRedis(t)
	cfg := testConfig(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/write", harness.FreePort(t)), redis.TargetConfig{Addr: r.URL()})
	logs := startAgent(t, cfg)

	ep := cfg.RemoteWrite[0].Label()
	harness.WaitFor(t, 30*time.Second, "several failed requests", func() (bool, error) {
		return agentMetric(t, cfg, fmt.Sprintf(`redwire_remote_write_requests_total{endpoint=%q,result="retry"}`, ep)) >= 3, nil
	})
	if n := logs.Count("remote write failing"); n != 1 {
		t.Errorf("%d 'remote write failing' lines, want 1:\n%s", n, logs.String())
	}
	if v := agentMetric(t, cfg, fmt.Sprintf(`redwire_target_up{target=%q}`, r.Addr())); v != 1 {
		t.Errorf("scraping stopped: redwire_target_up = %v", v)
	}
}

// TestBufferOnlyModeSaysSo: no endpoint is a supported mode, and the log
// says so.
func TestBufferOnlyModeSaysSo(t *testing.T) {
	r := harness.StartRedis(t)
	cfg := testConfig(t, "", redis.TargetConfig{Addr: r.URL()})
	logs := startAgent(t, cfg)
	if logs.Count("buffer-only mode") != 1 {
		t.Errorf("no buffer-only line in:\n%s", logs.String())
	}
	harness.WaitFor(t, 30*time.Second, "samples kept on disk", func() (bool, error) {
		return agentMetric(t, cfg, `redwire_buffer_samples{endpoint="local"}`) > 0, nil
	})
}

// TestSoftFailureInReceiver: Redis is killed; in the receiver, redis_up
// stays 1 for the first two failed scrapes and is 0 from the third on,
// while redwire_target_scrape_success is 0 for every failed scrape.
func TestSoftFailureInReceiver(t *testing.T) {
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := testConfig(t, prom.WriteURL(), redis.TargetConfig{Addr: r.URL()})
	logs := startAgent(t, cfg)
	queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q}`, r.Addr()), func(s harness.Series) bool { return s.Value == 1 })
	r.Kill()
	queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q}`, r.Addr()), func(s harness.Series) bool { return s.Value == 0 })

	byTime := func(family string) map[int64]float64 {
		series, err := prom.Samples(context.Background(), fmt.Sprintf(`%s{instance=%q}`, family, r.Addr()), 10*time.Minute)
		if err != nil || len(series) != 1 {
			t.Fatalf("%s: %v %v", family, series, err)
		}
		m := map[int64]float64{}
		for _, p := range series[0].Points {
			m[p.T.UnixMilli()] = p.V
		}
		return m
	}
	up, success := byTime("redis_up"), byTime("redwire_target_scrape_success")
	var ts []int64
	for t := range success {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	failed := 0
	for _, at := range ts {
		if success[at] == 1 {
			failed = 0
			continue
		}
		failed++
		if want := boolFloat(failed < 3); up[at] != want {
			t.Errorf("failed scrape %d at %d: redis_up = %v, want %v", failed, at, up[at], want)
		}
	}
	if failed < 3 {
		t.Fatalf("only %d failed scrapes seen", failed)
	}
	if logs.Count("target down") != 1 || logs.Count("soft-failure window") != 1 {
		t.Errorf("want one 'soft-failure window' line then one 'target down' line:\n%s", logs.String())
	}
}
