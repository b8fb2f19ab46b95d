package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// The outage tests prove the product's promise: every sample the agent
// reports as taken reaches the receiver, in order, after the receiver was
// down — also when the agent is killed mid-outage. "Taken" is
// redwire_target_scrapes_total, which counts a scrape only once its
// samples are buffered (in degraded mode: committed to disk), and every
// scrape carries exactly one redis_up sample, so the receiver must hold
// exactly as many redis_up samples as the agent counted scrapes.

// outageWindow is long enough to cover every sample a test takes.
const outageWindow = 30 * time.Minute

// gathered reads one counter or gauge from a registry: the sum over
// series whose labels include want.
func gathered(t testing.TB, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// delivered counts the redis_up samples of instance in the receiver.
func delivered(t *testing.T, recv harness.Receiver, instance string) int {
	t.Helper()
	return samplesOf(t, recv, "redis_up", instance)
}

// samplesOf counts the samples of family{instance} in the receiver.
func samplesOf(t *testing.T, recv harness.Receiver, family, instance string) int {
	t.Helper()
	series, err := recv.Samples(context.Background(), fmt.Sprintf(`%s{instance=%q}`, family, instance), outageWindow)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range series {
		n += len(s.Points)
	}
	return n
}

// assertNoRejections checks the receiver refused nothing: out-of-order or
// out-of-bounds samples would mean the agent broke per-series order.
func assertNoRejections(t *testing.T, prom *harness.Prometheus) {
	t.Helper()
	for _, m := range []string{"prometheus_tsdb_out_of_order_samples_total", "prometheus_tsdb_out_of_bound_samples_total"} {
		if v, err := prom.Metric(context.Background(), m); err != nil || v != 0 {
			t.Errorf("receiver %s = %v (%v), want 0", m, v, err)
		}
	}
}

// beginOutage stops the receiver and waits until the agent is degraded and
// has taken n scrapes since: an outage measured in the agent's own
// degraded scrapes rather than in wall-clock sleeps.
func beginOutage(t *testing.T, a *testAgent, recv harness.Receiver, cfg *Config, target string, n int) {
	t.Helper()
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	recv.Stop()
	harness.WaitFor(t, 30*time.Second, "degraded mode", func() (bool, error) {
		return gathered(t, a.reg, "redwire_degraded", ep) == 1, nil
	})
	scrapes := map[string]string{"target": target}
	before := gathered(t, a.reg, "redwire_target_scrapes_total", scrapes)
	harness.WaitFor(t, time.Duration(n)*time.Duration(cfg.Degraded.Interval)+time.Minute, "degraded scrapes", func() (bool, error) {
		return gathered(t, a.reg, "redwire_target_scrapes_total", scrapes)-before >= float64(n), nil
	})
}

// endOutage starts the receiver again and waits until the backlog is
// replayed and the agent is back to normal.
func endOutage(t *testing.T, a *testAgent, recv harness.Receiver, cfg *Config) {
	t.Helper()
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	recv.Start()
	harness.WaitFor(t, 2*time.Minute, "backlog replayed and normal mode", func() (bool, error) {
		return gathered(t, a.reg, "redwire_degraded", ep) == 0 && gathered(t, a.reg, "redwire_buffer_batches", ep) == 0, nil
	})
}

func outageConfig(t *testing.T, writeURL string, r *harness.Redis) *Config {
	cfg := testConfig(t, writeURL, redis.TargetConfig{Addr: r.URL()})
	off := false
	cfg.SelfMetrics.Enabled = &off
	return cfg
}

// TestOutageDeliversEverySample: the receiver is down for a minute; the
// agent degrades, buffers to disk, replays oldest-first when the receiver
// is back on the same TSDB, and returns to normal.
func TestOutageDeliversEverySample(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := outageConfig(t, prom.WriteURL(), r)
	a := runAgent(t, cfg)
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	target := map[string]string{"target": r.Addr()}

	queryOne(t, prom, `redis_up`, nil)
	beginOutage(t, a, prom, cfg, r.Addr(), 15) // a minute at the 4 s degraded interval
	if gathered(t, a.reg, "redwire_buffer_samples", ep) == 0 {
		t.Fatal("nothing was buffered on disk during the outage")
	}
	endOutage(t, a, prom, cfg)
	if gathered(t, a.reg, "redwire_replay_samples_total", ep) == 0 {
		t.Error("redwire_replay_samples_total = 0 after an outage")
	}

	a.stop() // graceful: flushes what is in memory
	taken := int(gathered(t, a.reg, "redwire_target_scrapes_total", target))
	if got := delivered(t, prom, r.Addr()); got != taken {
		t.Errorf("receiver has %d redis_up samples, agent took %d scrapes", got, taken)
	}
	for _, reason := range []string{"rejected", "buffer_full", "too_old", "disk_full"} {
		if v := gathered(t, a.reg, "redwire_samples_dropped_total", map[string]string{"reason": reason}); v != 0 {
			t.Errorf("dropped %v samples (%s)", v, reason)
		}
	}
	assertNoRejections(t, prom)
	for _, line := range []string{"endpoint down", "endpoint answers again", "backlog replayed"} {
		if n := a.logs.Count(line); n != 1 {
			t.Errorf("%d log lines %q, want 1", n, line)
		}
	}
}

// TestOutageEdgeLosesNothing: the receiver dies while a batch is in flight
// (a proxy delays every request, so one almost always is), and the agent
// is stopped before the receiver comes back. When the endpoint was
// declared down, that batch must have gone to disk with the rest: the
// sender's own copy of it ends with the agent, and only the disk carries
// it over. A second agent on the same buffer replays it, so the receiver
// has every scrape of both runs: no gap at the start of the outage.
func TestOutageEdgeLosesNothing(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	proxy.Delay(500 * time.Millisecond)
	cfg := outageConfig(t, proxy.URL()+"/api/v1/write", r)
	// The receiver stays down through the stop: the final flush cannot
	// send anything, so it need not try for long.
	shortFlush := func(o *Options) { o.ShutdownTimeout = time.Second }
	a := runAgent(t, cfg, shortFlush)
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	target := map[string]string{"target": r.Addr()}

	harness.WaitFor(t, 30*time.Second, "delayed requests forwarded", func() (bool, error) {
		n := 0
		for _, req := range proxy.Requests() {
			if req.Forwarded && req.Status == 204 {
				n++
			}
		}
		return n >= 3, nil
	})
	prom.Kill()
	harness.WaitFor(t, 30*time.Second, "degraded mode", func() (bool, error) {
		return gathered(t, a.reg, "redwire_degraded", ep) == 1, nil
	})
	a.stop() // graceful, the receiver still down: what was taken is on disk or lost
	takenBefore := int(gathered(t, a.reg, "redwire_target_scrapes_total", target))

	prom.Start()
	proxy.Delay(0)
	a = runAgent(t, cfg)
	if n := a.logs.Count("found a backlog"); n != 1 {
		t.Fatalf("%d log lines \"found a backlog\" after a stop during the outage, want 1", n)
	}
	harness.WaitFor(t, 2*time.Minute, "backlog replayed and a scrape taken after it", func() (bool, error) {
		return gathered(t, a.reg, "redwire_buffer_batches", ep) == 0 && gathered(t, a.reg, "redwire_replay_samples_total", ep) > 0 &&
			gathered(t, a.reg, "redwire_target_scrapes_total", target) > 0, nil
	})
	a.stop()
	takenAfter := int(gathered(t, a.reg, "redwire_target_scrapes_total", target))
	if got := delivered(t, prom, r.Addr()); got != takenBefore+takenAfter {
		t.Errorf("receiver has %d redis_up samples; the agent took %d scrapes before the stop and %d after the restart",
			got, takenBefore, takenAfter)
	}
	assertNoRejections(t, prom)
}

// TestOutageSurvivesKill9: the agent is SIGKILLed in the middle of an
// outage and restarted; everything taken before the kill and after the
// restart is delivered.
func TestOutageSurvivesKill9(t *testing.T) {
	t.Parallel()
	bin := buildRedwire(t)
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	dir := t.TempDir()
	agent := startProcess(t, bin, dir, prom.WriteURL(), r.URL())

	queryOne(t, prom, `redis_up`, nil)
	prom.Stop()
	harness.WaitFor(t, 30*time.Second, "degraded mode", func() (bool, error) {
		return agent.metric(t, "redwire_degraded") == 1, nil
	})
	harness.WaitFor(t, 60*time.Second, "degraded scrapes on disk", func() (bool, error) {
		return agent.metric(t, "redwire_buffer_batches") >= 5, nil
	})
	takenBefore := agent.metric(t, "redwire_target_scrapes_total")
	agent.kill()

	agent = startProcess(t, bin, dir, prom.WriteURL(), r.URL())
	harness.WaitFor(t, 30*time.Second, "backlog found after the restart", func() (bool, error) {
		return agent.logContains("found a backlog"), nil
	})
	prom.Start()
	harness.WaitFor(t, 2*time.Minute, "backlog replayed", func() (bool, error) {
		return agent.metric(t, "redwire_buffer_batches") == 0 && agent.metric(t, "redwire_degraded") == 0 &&
			agent.metric(t, "redwire_replay_samples_total") > 0, nil
	})
	takenAfter := agent.metric(t, "redwire_target_scrapes_total")
	agent.terminate()

	// At most one scrape may fall between each counter read and the signal
	// that followed it; none may be missing.
	got, want := delivered(t, prom, r.Addr()), int(takenBefore+takenAfter)
	if got < want || got > want+2 {
		t.Errorf("receiver has %d redis_up samples; agent took %d before the kill and %d after the restart",
			got, int(takenBefore), int(takenAfter))
	}
	assertNoRejections(t, prom)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildRedwire compiles the real binary once per test run.
func buildRedwire(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "redwire-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "redwire")
		out, err := exec.Command("go", "build", "-race", "-o", builtBin, "../cmd/redwire").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// agentProcess is redwire running as its own process.
type agentProcess struct {
	cmd  *exec.Cmd
	addr string
	log  *syncBuffer
	done chan struct{}
}

func startProcess(t *testing.T, bin, dir, writeURL, redisURL string, extra ...string) *agentProcess {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	return launchProcess(t, bin, addr, append([]string{"--redis.addr=" + redisURL, "--remote-write.url=" + writeURL,
		"--scrape.interval=1s", "--buffer.path=" + dir, "--web.listen-address=" + addr,
		"--buffer.crash_journal=" + dir + ".journal", // as tmpfs would: it outlives the process
		"--remote-write.queue_config.batch_send_deadline=100ms",
		"--remote-write.queue_config.min_backoff=50ms", "--remote-write.queue_config.max_backoff=200ms",
		"--no-self_metrics.enabled"}, extra...)...)
}

// launchProcess runs bin with args, its web server on addr, and waits
// until it serves /metrics.
func launchProcess(t *testing.T, bin, addr string, args ...string) *agentProcess {
	t.Helper()
	p := &agentProcess{addr: addr, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.log.Write([]byte(sc.Text() + "\n"))
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.terminate()
		if t.Failed() {
			t.Logf("redwire process log:\n%s", p.log.String())
		}
	})
	harness.WaitFor(t, 30*time.Second, "redwire process ready", func() (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("redwire exited:\n%s", p.log.String())
		default:
		}
		return p.metric(t, "redwire_target_scrapes_total") >= 0, nil
	})
	return p
}

// metric sums a metric family on the process' /metrics; -1 if absent.
func (p *agentProcess) metric(t *testing.T, name string) float64 {
	t.Helper()
	cfg := &Config{Web: WebConfig{ListenAddress: p.addr}}
	sum, found := 0.0, false
	for _, line := range strings.Split(metricsText(t, cfg), "\n") {
		series, val, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(val, &v); err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

func (p *agentProcess) logContains(s string) bool { return strings.Contains(p.log.String(), s) }

func (p *agentProcess) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *agentProcess) terminate() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
}
