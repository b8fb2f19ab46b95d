package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// TestProbeNoticesTheReturn: with a backoff of half an hour, a receiver
// that comes back is noticed by the probes of a down endpoint, not after
// the backoff: the backlog drains within the test's minute. The probes
// are empty requests, and every scrape of the outage arrives.
func TestProbeNoticesTheReturn(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	cfg := editedTestConfig(t, proxy.URL()+"/api/v1/write", func(c *Config) {
		q := &c.RemoteWrite[0].QueueConfig
		q.MinBackoff, q.MaxBackoff = model.Duration(30*time.Minute), model.Duration(time.Hour)
		c.Degraded.FailureThreshold = 1
		c.Degraded.ProbeInterval = model.Duration(200 * time.Millisecond)
		off := false
		c.SelfMetrics.Enabled = &off
	}, redis.TargetConfig{Addr: r.URL()})
	a := runAgent(t, cfg)
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q}`, r.Addr()), nil)

	prom.Stop()
	harness.WaitFor(t, 30*time.Second, "degraded mode", func() (bool, error) {
		return gathered(t, a.reg, "redwire_degraded", ep) == 1, nil
	})
	harness.WaitFor(t, 30*time.Second, "probes of the down receiver", func() (bool, error) {
		return gathered(t, a.reg, "redwire_remote_write_probes_total", ep) >= 3, nil
	})
	prom.Start()
	harness.WaitFor(t, time.Minute, "the backlog replayed long before the 30-minute backoff", func() (bool, error) {
		return gathered(t, a.reg, "redwire_degraded", ep) == 0 && gathered(t, a.reg, "redwire_buffer_batches", ep) == 0, nil
	})
	a.stop()

	probes := 0
	for _, req := range proxy.Requests() {
		if req.Write != nil && len(req.Write.Timeseries) == 0 && len(req.Write.Metadata) == 0 {
			probes++
		}
	}
	if probes == 0 {
		t.Error("no empty request reached the receiver: the return was not noticed by a probe")
	}
	if ok := gathered(t, a.reg, "redwire_remote_write_probes_total", map[string]string{"endpoint": ep["endpoint"], "result": "success"}); ok < 1 {
		t.Errorf("no probe counted as answered (%v)", ok)
	}
	taken := int(gathered(t, a.reg, "redwire_target_scrapes_total", map[string]string{"target": r.Addr()}))
	if got := delivered(t, prom, r.Addr()); got != taken {
		t.Errorf("receiver has %d redis_up samples, the agent took %d scrapes", got, taken)
	}
	assertNoRejections(t, prom)
}
