package configs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"

	"github.com/redwire/redwire/agent"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sources/redis"
)

// exported is what a real redwire pushes: metric name → the jobs it comes
// with. Histogram series (_bucket, _sum, _count) are also listed under
// their family.
type exported map[string]map[string]bool

func (e exported) add(name, job string) {
	for _, n := range []string{name, family(name)} {
		if e[n] == nil {
			e[n] = map[string]bool{}
		}
		e[n][job] = true
	}
}

// family strips the series suffixes of histograms and summaries.
func family(name string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			return base
		}
	}
	return name
}

// receiver is a remote-write endpoint that records what it is sent.
type receiver struct {
	mu  sync.Mutex
	got exported
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err == nil {
		body, err = snappy.Decode(nil, body)
	}
	var wr prompb.WriteRequest
	if err == nil {
		err = wr.Unmarshal(body)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ts := range wr.Timeseries {
		var name, job string
		for _, l := range ts.Labels {
			switch l.Name {
			case model.MetricNameLabel:
				name = l.Value
			case model.JobLabel:
				job = l.Value
			}
		}
		r.got.add(name, job)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) has(name, job string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[name][job]
}

func (r *receiver) snapshot() exported {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := exported{}
	for n, jobs := range r.got {
		for j := range jobs {
			out.add(n, j)
		}
	}
	return out
}

var (
	exportedOnce sync.Once
	exportedSet  exported
)

// redwireExports runs a real redwire against a real Redis master, its
// replica and a dead target, pushing to a receiver that accepts and to one
// that answers 401, and returns every metric name pushed, with its job. It
// waits until every redwire_ family the agent serves on /metrics has been
// pushed, so conditional families (request durations, scrape errors,
// paused) are in. Shared by the tests of this package.
func redwireExports(t *testing.T) exported {
	t.Helper()
	exportedOnce.Do(func() { exportedSet = collectExports(t) })
	if exportedSet == nil {
		t.Fatal("collecting redwire's metric names failed in an earlier test")
	}
	return exportedSet
}

func collectExports(t *testing.T) exported {
	t.Helper()
	master := harness.StartRedis(t)
	host, port, err := net.SplitHostPort(master.Addr())
	if err != nil {
		t.Fatal(err)
	}
	replica := harness.StartRedis(t, harness.WithArgs("--replicaof", host, port))
	harness.WaitFor(t, 30*time.Second, "the replica to be linked", func() (bool, error) {
		info, err := master.Client().Info(context.Background(), "replication").Result()
		if err != nil {
			return false, err
		}
		return strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online"), fmt.Errorf("master says %q", info)
	})
	dead := fmt.Sprintf("redis://127.0.0.1:%d", harness.FreePort(t))

	rec := &receiver{got: exported{}}
	ok := httptest.NewServer(rec)
	t.Cleanup(ok.Close)
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "bad credentials", http.StatusUnauthorized)
	}))
	t.Cleanup(refusing.Close)

	cfg := &agent.Config{
		Global: agent.GlobalConfig{ScrapeInterval: model.Duration(time.Second)},
		Targets: []redis.TargetConfig{
			{Name: "master", Addr: master.URL()},
			{Name: "replica", Addr: replica.URL()},
			{Name: "dead", Addr: dead},
		},
		Web: agent.WebConfig{ListenAddress: "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))},
	}
	cfg.Buffer.Path = t.TempDir()
	for name, u := range map[string]string{"ok": ok.URL, "refusing": refusing.URL} {
		pu, err := url.Parse(u + "/api/v1/write")
		if err != nil {
			t.Fatal(err)
		}
		ep := remotewrite.NewEndpointConfig(pu)
		ep.Name = name
		ep.QueueConfig.BatchSendDeadline = model.Duration(100 * time.Millisecond)
		ep.QueueConfig.MinBackoff = model.Duration(50 * time.Millisecond)
		ep.QueueConfig.MaxBackoff = model.Duration(200 * time.Millisecond)
		cfg.RemoteWrite = append(cfg.RemoteWrite, ep)
	}
	if err := cfg.Finalize(); err != nil {
		t.Fatal(err)
	}
	// As cmd/redwire registers them: the process families redwire pushes
	// come from these.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, cfg, agent.Options{Logger: slog.New(slog.DiscardHandler), Registry: reg, Version: "test"})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("agent.Run did not return within 30s of cancel")
		}
	})

	metricsURL := "http://" + cfg.Web.ListenAddress + "/metrics"
	// Families that exist only once something happened: a request was
	// timed, a scrape failed, an endpoint refused us.
	conditional := []string{"redwire_remote_write_request_duration_seconds", "redwire_target_scrape_errors_total", "redwire_remote_write_paused"}
	harness.WaitFor(t, 60*time.Second, "every redwire family on /metrics to be pushed", func() (bool, error) {
		select {
		case err := <-done:
			t.Fatalf("agent.Run returned early: %v", err)
		default:
		}
		served, err := servedFamilies(metricsURL)
		if err != nil {
			return false, err
		}
		for _, f := range conditional {
			if !served[f] {
				return false, fmt.Errorf("/metrics has no %s yet", f)
			}
		}
		for f := range served {
			if selfPushed(f) && !rec.has(f, "redwire") {
				return false, fmt.Errorf("%s is on /metrics but not pushed with job=redwire yet", f)
			}
		}
		for _, f := range []string{"redis_replica_lag_bytes", "redis_master_link_up", "redis_up"} {
			if !rec.has(f, "redis") {
				return false, fmt.Errorf("%s not pushed with job=redis yet", f)
			}
		}
		return true, nil
	})
	return rec.snapshot()
}

// selfPushed mirrors the families redwire pushes of its own registry
// (agent's selfFamilies): its own, and a few process basics.
func selfPushed(name string) bool {
	switch name {
	case "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "go_goroutines":
		return true
	}
	return strings.HasPrefix(name, "redwire_")
}

// servedFamilies reads the family names of a /metrics page.
func servedFamilies(u string) (map[string]bool, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = true
		}
	}
	return out, sc.Err()
}
