package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// receiver is what the live_first tests need of a real receiver.
type receiver interface {
	WriteURL() string
	Stop()
	Start()
	Samples(ctx context.Context, selector string, window time.Duration) ([]harness.RangeSeries, error)
}

// liveFirstConfig is an outage config with replay.order live_first, no
// start jitter, and a backlog that drains slowly: requests of about one
// scrape, at a rate that takes seconds per scrape.
func liveFirstConfig(t *testing.T, writeURL string, r *harness.Redis) *Config {
	return editedTestConfig(t, writeURL, func(c *Config) {
		off := false
		c.SelfMetrics.Enabled = &off
		none := model.Duration(0)
		c.Replay.Order = ReplayLiveFirst
		c.Replay.StartJitter = &none
		c.Replay.MaxSamplesPerSecond = 50
		c.Replay.MaxSamplesPerSend = 100
		c.RemoteWrite[0].QueueConfig.MaxSamplesPerSend = 100
	}, redis.TargetConfig{Addr: r.URL()})
}

// points reads the samples of family{instance} in the receiver.
func points(t *testing.T, rcv receiver, family, instance string) []harness.Point {
	t.Helper()
	series, err := rcv.Samples(context.Background(), fmt.Sprintf(`%s{instance=%q}`, family, instance), outageWindow)
	if err != nil {
		t.Fatal(err)
	}
	var ps []harness.Point
	for _, s := range series {
		ps = append(ps, s.Points...)
	}
	return ps
}

// liveFirstOutage takes the receiver down until the agent has taken
// scrapes degraded scrapes on disk, brings it back, and returns when.
func liveFirstOutage(t *testing.T, a *testAgent, rcv receiver, cfg *Config, target string, scrapes int) time.Time {
	t.Helper()
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	harness.WaitFor(t, 30*time.Second, "a first scrape delivered", func() (bool, error) {
		return len(points(t, rcv, "redis_up", target)) > 0, nil
	})
	rcv.Stop()
	harness.WaitFor(t, 30*time.Second, "degraded mode", func() (bool, error) {
		return gathered(t, a.reg, "redwire_degraded", ep) == 1, nil
	})
	sc := map[string]string{"target": target}
	before := gathered(t, a.reg, "redwire_target_scrapes_total", sc)
	harness.WaitFor(t, time.Duration(scrapes)*time.Duration(cfg.Degraded.Interval)+time.Minute, "degraded scrapes", func() (bool, error) {
		return gathered(t, a.reg, "redwire_target_scrapes_total", sc)-before >= float64(scrapes), nil
	})
	back := time.Now()
	rcv.Start()
	return back
}

// drainedAndStopped waits for the backlog to drain, stops the agent
// (which flushes memory) and checks that the receiver has every scrape
// the agent took exactly once, and that nothing was dropped.
func drainedAndStopped(t *testing.T, a *testAgent, rcv receiver, cfg *Config, target string) {
	t.Helper()
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	harness.WaitFor(t, 3*time.Minute, "backlog replayed and normal mode", func() (bool, error) {
		return gathered(t, a.reg, "redwire_degraded", ep) == 0 && gathered(t, a.reg, "redwire_buffer_batches", ep) == 0, nil
	})
	a.stop()
	taken := int(gathered(t, a.reg, "redwire_target_scrapes_total", map[string]string{"target": target}))
	ps := points(t, rcv, "redis_up", target)
	seen := map[time.Time]int{}
	for _, p := range ps {
		seen[p.T]++
	}
	for ts, n := range seen {
		if n > 1 {
			t.Errorf("redis_up at %v is in the receiver %d times", ts, n)
		}
	}
	if len(ps) != taken {
		t.Errorf("receiver has %d redis_up samples, agent took %d scrapes", len(ps), taken)
	}
	for _, reason := range []string{"rejected", "buffer_full", "too_old", "disk_full"} {
		if v := gathered(t, a.reg, "redwire_samples_dropped_total", map[string]string{"reason": reason}); v != 0 {
			t.Errorf("dropped %v samples (%s)", v, reason)
		}
	}
}

// TestLiveFirstFreshSamplesWhileTheBacklogDrains: with replay.order
// live_first and a receiver that takes out-of-order samples (real
// VictoriaMetrics), a scrape taken after the receiver's return reaches it
// while the backlog of the outage is still on disk, draining at its rate
// limit; at the end every scrape is there exactly once.
func TestLiveFirstFreshSamplesWhileTheBacklogDrains(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	vm := harness.StartVictoriaMetrics(t)
	cfg := liveFirstConfig(t, vm.WriteURL(), r)
	a := runAgent(t, cfg)
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}

	back := liveFirstOutage(t, a, vm, cfg, r.Addr(), 6)
	harness.WaitFor(t, 2*time.Minute, "a scrape taken after the receiver's return in it", func() (bool, error) {
		for _, p := range points(t, vm, "redis_up", r.Addr()) {
			if p.T.After(back) {
				return true, nil
			}
		}
		return false, nil
	})
	if n := gathered(t, a.reg, "redwire_buffer_samples", ep); n == 0 {
		t.Error("the backlog was drained before a fresh scrape arrived: live_first sent nothing first")
	}
	drainedAndStopped(t, a, vm, cfg, r.Addr())
	if n := a.logs.Count("receiver takes out-of-order samples"); n != 1 {
		t.Errorf("%d log lines saying the receiver takes out-of-order samples, want 1", n)
	}
}

// TestLiveFirstFallsBackToFIFOWithoutAWindow: a receiver without an
// out-of-order window (Prometheus as it comes) refuses the check, and the
// endpoint replays as fifo, saying so once and naming the setting: no
// sample of the backlog is refused, and none lost. The check's second
// sample is the only one the receiver refuses as out of order.
func TestLiveFirstFallsBackToFIFOWithoutAWindow(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	cfg := liveFirstConfig(t, prom.WriteURL(), r)
	// In fifo, scrapes join the backlog: it drains only faster than they come.
	cfg.Replay.MaxSamplesPerSecond = 0
	a := runAgent(t, cfg)

	liveFirstOutage(t, a, prom, cfg, r.Addr(), 4)
	drainedAndStopped(t, a, prom, cfg, r.Addr())
	if n := a.logs.Count("replay.order live_first falls back to fifo"); n != 1 {
		t.Errorf("%d log lines about the fallback to fifo, want 1", n)
	}
	if v, err := prom.Metric(context.Background(), "prometheus_tsdb_out_of_order_samples_total"); err != nil || v != 1 {
		t.Errorf("receiver refused %v samples as out of order (%v), want 1: the check's", v, err)
	}
	if v, err := prom.Metric(context.Background(), "prometheus_tsdb_out_of_bound_samples_total"); err != nil || v != 0 {
		t.Errorf("receiver refused %v samples as out of bounds (%v), want 0", v, err)
	}
}

// TestLiveFirstWithAPrometheus3Window: Prometheus 3 with an out-of-order
// window takes fresh scrapes while the backlog drains behind them, as
// VictoriaMetrics does, and refuses nothing: the check passes, live_first
// stays on, and every scrape of the outage is there once.
func TestLiveFirstWithAPrometheus3Window(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheusWith(t, harness.PrometheusOptions{Version3: true, OutOfOrderWindow: time.Hour})
	cfg := liveFirstConfig(t, prom.WriteURL(), r)
	a := runAgent(t, cfg)
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}

	back := liveFirstOutage(t, a, prom, cfg, r.Addr(), 6)
	harness.WaitFor(t, 2*time.Minute, "a scrape taken after the receiver's return in it", func() (bool, error) {
		for _, p := range points(t, prom, "redis_up", r.Addr()) {
			if p.T.After(back) {
				return true, nil
			}
		}
		return false, nil
	})
	if n := gathered(t, a.reg, "redwire_buffer_samples", ep); n == 0 {
		t.Error("the backlog was drained before a fresh scrape arrived: live_first sent nothing first")
	}
	drainedAndStopped(t, a, prom, cfg, r.Addr())
	if n := a.logs.Count("replay.order live_first falls back to fifo"); n != 0 {
		t.Errorf("fell back to fifo against a receiver with an out-of-order window")
	}
	if v, err := prom.Metric(context.Background(), "prometheus_tsdb_out_of_bound_samples_total"); err != nil || v != 0 {
		t.Errorf("receiver refused %v samples as out of bounds (%v), want 0", v, err)
	}
}
