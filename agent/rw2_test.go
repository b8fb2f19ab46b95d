package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sources/redis"
)

// rw2Wait bounds each wait of these tests: a few scrapes at 1 s, and a
// Prometheus to catch up.
const rw2Wait = 60 * time.Second

// runRW2 polls r and writes to prom with protobuf_message 2.0 until
// every target was scraped scrapes times, then stops the agent, so its
// counts stand still. Self metrics are off: only Redis samples, counts
// stay exact.
func runRW2(t *testing.T, r *harness.Redis, prom *harness.Prometheus, scrapes float64) (*testAgent, map[string]string) {
	t.Helper()
	cfg := editedTestConfig(t, prom.WriteURL(), func(c *Config) {
		c.RemoteWrite[0].ProtobufMessage = remotewrite.MessageV2
		off := false
		c.SelfMetrics.Enabled = &off
	}, redis.TargetConfig{Addr: r.URL()})
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	a := runAgent(t, cfg)
	harness.WaitFor(t, rw2Wait, fmt.Sprintf("%v scrapes sent", scrapes), func() (bool, error) {
		n := byTarget(t, a.reg, "redwire_target_scrapes_total")[r.Addr()]
		acc := sampleAccount(t, a.reg, ep)
		return n >= scrapes && acc.pending == 0, fmt.Errorf("%v scrapes, %v", n, acc)
	})
	a.stop()
	acc := sampleAccount(t, a.reg, ep)
	if !acc.balanced() || acc.dropped != 0 || acc.pending != 0 || acc.sent == 0 {
		t.Errorf("after stop: %v; want taken = sent, nothing dropped or pending", acc)
	}
	harness.WaitFor(t, rw2Wait, "every sample sent in Prometheus", func() (bool, error) {
		n, err := storedSamples(prom, `{job="redis"}`)
		if err != nil {
			return false, err
		}
		return n == int(acc.sent), fmt.Errorf("%d samples in Prometheus, %v sent", n, acc.sent)
	})
	if got, want := delivered(t, prom, r.Addr()), byTarget(t, a.reg, "redwire_target_scrapes_total")[r.Addr()]; float64(got) != want {
		t.Errorf("%d redis_up samples in Prometheus, %v scrapes taken", got, want)
	}
	return a, ep
}

// protocolShown is redwire_remote_write_protocol for each message.
func protocolShown(t *testing.T, a *testAgent, ep map[string]string) map[remotewrite.Message]float64 {
	t.Helper()
	out := map[remotewrite.Message]float64{}
	for _, m := range []remotewrite.Message{remotewrite.MessageV1, remotewrite.MessageV2} {
		out[m] = gathered(t, a.reg, "redwire_remote_write_protocol", map[string]string{"endpoint": ep["endpoint"], "message": string(m)})
	}
	return out
}

// TestRW2DeliversEverySampleToPrometheus3: with protobuf_message
// io.prometheus.write.v2.Request, a real Prometheus 3.x holds every
// sample of a real Redis that the agent counts sent, and the endpoint
// keeps speaking 2.0.
func TestRW2DeliversEverySampleToPrometheus3(t *testing.T) {
	r := harness.StartRedis(t)
	fill(t, r, 0, 321)
	prom := harness.StartPrometheus3(t)
	a, ep := runRW2(t, r, prom, 3)
	if v := gathered(t, a.reg, "redwire_remote_write_requests_total", map[string]string{"endpoint": ep["endpoint"], "result": "unsupported_message"}); v != 0 {
		t.Errorf("%v requests answered as by a 1.x receiver, want none", v)
	}
	if p := protocolShown(t, a, ep); p[remotewrite.MessageV2] != 1 || p[remotewrite.MessageV1] != 0 {
		t.Errorf("redwire_remote_write_protocol = %v, want 2.0 alone", p)
	}
	if strings.Contains(a.logs.String(), "does not take remote write 2.0") {
		t.Errorf("fell back from a 2.0 receiver")
	}
	queryOne(t, prom, `redis_db_keys{db="db0"}`, func(s harness.Series) bool { return s.Value == 321 })
}

// TestRW2FallbackToRW1WithPrometheus2: Prometheus 2.42 takes 1.0 only,
// and answers a 2.0 request 204 without the Written headers, having
// written nothing. The agent falls back once, says so once, and every
// sample counted sent is in Prometheus: the first batch was sent again
// as 1.0, not lost, and not counted twice.
func TestRW2FallbackToRW1WithPrometheus2(t *testing.T) {
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	a, ep := runRW2(t, r, prom, 3)
	if v := gathered(t, a.reg, "redwire_remote_write_requests_total", map[string]string{"endpoint": ep["endpoint"], "result": "unsupported_message"}); v != 1 {
		t.Errorf("%v requests answered as by a 1.x receiver, want exactly one", v)
	}
	if n := strings.Count(a.logs.String(), "does not take remote write 2.0"); n != 1 {
		t.Errorf("the fall back was logged %d times, want once", n)
	}
	if p := protocolShown(t, a, ep); p[remotewrite.MessageV1] != 1 || p[remotewrite.MessageV2] != 0 {
		t.Errorf("redwire_remote_write_protocol = %v, want 1.0 alone", p)
	}
}
