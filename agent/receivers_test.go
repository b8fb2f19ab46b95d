package agent

import (
	"context"
	"reflect"
	"testing"

	"github.com/redwire/redwire/internal/harness"
)

// The receivers that are not Debian packages (make deps builds them):
// each takes every scrape through an outage, as Prometheus 2.42 does in
// TestOutageDeliversEverySample. These tests back the rows of the
// README's receivers table.

// TestReceiversPrometheus3Outage: Prometheus 3.x is down for a while;
// the backlog replays into it on the same TSDB and nothing is missing.
func TestReceiversPrometheus3Outage(t *testing.T) {
	t.Parallel()
	prom := harness.StartPrometheus3(t)
	testReceiverOutage(t, prom, nil)
	assertNoRejections(t, prom)
}

// TestReceiversThanosOutage: the same with Thanos Receive, the agent
// naming its tenant with the THANOS-TENANT header, as a site sharing a
// Receive with others would.
func TestReceiversThanosOutage(t *testing.T) {
	t.Parallel()
	const tenant = "edge"
	th := harness.StartThanosReceive(t)
	testReceiverOutage(t, th, map[string]string{harness.ThanosTenantHeader: tenant})
	got, err := th.Tenants(context.Background(), `{__name__=~"redis_.+"}`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{tenant}; !reflect.DeepEqual(got, want) {
		t.Errorf("the agent's series are in tenants %q, want %q", got, want)
	}
	for _, m := range []string{"prometheus_tsdb_out_of_order_samples_total", "prometheus_tsdb_out_of_bound_samples_total"} {
		if v, err := th.Metric(context.Background(), m+`{tenant="`+tenant+`"}`); err != nil || v != 0 {
			t.Errorf("receiver %s = %v (%v), want 0", m, v, err)
		}
	}
}

// testReceiverOutage runs an agent against recv (with headers on its
// endpoint), stops recv until the agent is degraded and has taken five
// scrapes on disk, starts it again, and wants every scrape the agent took
// in recv once the backlog is replayed.
func testReceiverOutage(t *testing.T, recv harness.Receiver, headers map[string]string) {
	t.Helper()
	r := harness.StartRedis(t)
	cfg := outageConfig(t, recv.WriteURL(), r)
	cfg.RemoteWrite[0].Headers = headers
	a := runAgent(t, cfg)
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	target := map[string]string{"target": r.Addr()}

	queryOne(t, recv, `redis_up`, nil)
	beginOutage(t, a, recv, cfg, r.Addr(), 5)
	if gathered(t, a.reg, "redwire_buffer_samples", ep) == 0 {
		t.Fatal("nothing was buffered on disk during the outage")
	}
	endOutage(t, a, recv, cfg)
	if gathered(t, a.reg, "redwire_replay_samples_total", ep) == 0 {
		t.Error("redwire_replay_samples_total = 0 after an outage")
	}

	a.stop() // graceful: flushes what is in memory
	taken := int(gathered(t, a.reg, "redwire_target_scrapes_total", target))
	if got := delivered(t, recv, r.Addr()); got != taken {
		t.Errorf("receiver has %d redis_up samples, agent took %d scrapes", got, taken)
	}
	for _, reason := range []string{"rejected", "buffer_full", "too_old", "disk_full"} {
		if v := gathered(t, a.reg, "redwire_samples_dropped_total", map[string]string{"reason": reason}); v != 0 {
			t.Errorf("dropped %v samples (%s)", v, reason)
		}
	}
}
