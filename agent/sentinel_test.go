package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/discovery"
)

// logTime is the time= of the first log line containing every part.
func logTime(t *testing.T, logs *syncBuffer, parts ...string) (time.Time, bool) {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if !all {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		ts, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			t.Fatalf("log line without a time: %q", line)
		}
		return ts, true
	}
	return time.Time{}, false
}

// TestSentinelFailoverIsFollowed kills the master of a real Sentinel
// group (2 replicas, 3 sentinels) under a running agent and checks what an
// operator would: the logical master's series carry on at the promoted
// replica, redis_up never reports 0 for a failover shorter than the
// soft-failure window, replica lag is measured on the new master, the
// failover is counted once, and the promoted replica's own replica target
// ends cleanly (stale markers) rather than lingering.
func TestSentinelFailoverIsFollowed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master, 2 replicas, 3 sentinels and Prometheus")
	}
	t.Parallel()
	sg := harness.StartSentinelGroup(t, "mymaster", 2, 3)
	prom := harness.StartPrometheus(t)
	var sentinels []string
	for _, s := range sg.Sentinels {
		sentinels = append(sentinels, s.Addr())
	}
	cfg := editedTestConfig(t, prom.WriteURL(), func(c *Config) {
		c.Sentinels = []discovery.SentinelConfig{{
			MasterName: "mymaster", Addrs: sentinels,
			// Ten 1 s scrapes: a sentinel failover (1 s down-after, then
			// an election) completes well within.
			SoftFailThreshold: 10,
		}}
	})
	a := runAgent(t, cfg)
	ctx := context.Background()

	queryOne(t, prom, `redis_up{instance="mymaster",redis_sentinel_role="master",redis_sentinel_master_name="mymaster"}`, nil)
	for _, r := range sg.Replicas {
		queryOne(t, prom, fmt.Sprintf(`redis_replica_lag_bytes{instance="mymaster",replica=%q}`, r.Addr()), nil)
		queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q,redis_sentinel_role="replica"}`, r.Addr()), nil)
	}
	for _, s := range sg.Sentinels {
		queryOne(t, prom, fmt.Sprintf(`redis_sentinel_masters{instance=%q,redis_sentinel_role="sentinel"}`, s.Addr()), nil)
	}

	killed := time.Now()
	sg.Master.Kill()
	var promoted string
	harness.WaitFor(t, 60*time.Second, "the sentinels to promote a replica", func() (bool, error) {
		addr, err := sg.MasterAddr(ctx)
		promoted = addr
		return err == nil && addr != "" && addr != sg.Master.Addr(), err
	})
	harness.WaitFor(t, 30*time.Second, "the agent to re-point the master target", func() (bool, error) {
		return a.logs.Count("target re-pointed", "instance=mymaster", "to=redis://"+promoted) == 1, nil
	})
	repointed, _ := logTime(t, a.logs, "target re-pointed", "instance=mymaster")
	// The re-point may come from the event or from a poll that asked a
	// sentinel first; either way the event must arrive.
	harness.WaitFor(t, 30*time.Second, "+switch-master from a sentinel", func() (bool, error) {
		return a.logs.Count("+switch-master received") > 0, nil
	})
	switched, _ := logTime(t, a.logs, "+switch-master received")
	t.Logf("master killed → +switch-master: %v; re-pointed %v after the first +switch-master",
		switched.Sub(killed).Round(time.Millisecond), repointed.Sub(switched).Round(time.Millisecond))
	if !repointed.After(killed) {
		t.Fatalf("re-pointed at %v, before the master was killed at %v", repointed, killed)
	}

	// Lag resumes on the new master: the remaining replica, as seen from
	// the promoted one, with samples taken after the re-point.
	var other string
	for _, r := range sg.Replicas {
		if r.Addr() != promoted {
			other = r.Addr()
		}
	}
	harness.WaitFor(t, 60*time.Second, "replica lag measured on the new master", func() (bool, error) {
		series, err := prom.Samples(ctx, fmt.Sprintf(`redis_replica_lag_bytes{instance="mymaster",replica=%q}`, other), outageWindow)
		if err != nil || len(series) != 1 {
			return false, err
		}
		pts := series[0].Points
		return pts[len(pts)-1].T.After(repointed), nil
	})
	harness.WaitFor(t, 30*time.Second, "a successful scrape of the new master", func() (bool, error) {
		v := agentMetric(t, cfg, `redwire_target_consecutive_failures{target="mymaster"}`)
		return v == 0, nil
	})

	// redis_up of the logical master was never 0.
	ups, err := prom.Samples(ctx, `redis_up{instance="mymaster"}`, outageWindow)
	if err != nil || len(ups) != 1 {
		t.Fatalf("redis_up{instance=mymaster}: %d series, %v (series must be continuous: one)", len(ups), err)
	}
	for _, p := range ups[0].Points {
		if p.V != 1 {
			t.Errorf("redis_up{instance=mymaster} = %v at %v, during a failover within the soft-failure window", p.V, p.T)
		}
	}
	raw, err := prom.Samples(ctx, `redwire_target_scrape_success{instance="mymaster"}`, outageWindow)
	if err == nil && len(raw) == 1 {
		failed := 0
		for _, p := range raw[0].Points {
			if p.V == 0 {
				failed++
			}
		}
		t.Logf("scrapes of the logical master that failed during the failover: %d", failed)
	}
	if v := agentMetric(t, cfg, `redwire_sentinel_failovers_total{master_name="mymaster"}`); v != 1 {
		t.Errorf("redwire_sentinel_failovers_total = %v, want 1", v)
	}
	if v := agentMetric(t, cfg, fmt.Sprintf(`redwire_sentinel_master_address_info{address=%q,master_name="mymaster"}`, promoted)); v != 1 {
		t.Errorf("redwire_sentinel_master_address_info{address=%q} = %v, want 1", promoted, v)
	}

	// The promoted server is no longer a replica: its replica target is
	// gone, and its series end with stale markers, so an instant query
	// finds nothing instead of the last value for five minutes.
	harness.WaitFor(t, 30*time.Second, "the promoted replica's replica series to end", func() (bool, error) {
		vec, err := prom.Query(ctx, fmt.Sprintf(`redis_up{instance=%q}`, promoted))
		return err == nil && len(vec) == 0, err
	})
	assertNoRejections(t, prom)

	a.stop() // graceful: every scrape taken is sent, the counters final
	assertNoGap(t, a, prom, "mymaster", time.Duration(cfg.Global.ScrapeInterval), killed, repointed)
}

// assertNoGap checks that the logical master instance was scraped once
// per interval from before from until after to, with no scrape missing
// (a failed one still carries redis_up), and that the receiver holds one
// redis_up sample per scrape the agent counted for it. a has stopped.
func assertNoGap(t *testing.T, a *testAgent, prom *harness.Prometheus, instance string, interval time.Duration, from, to time.Time) {
	t.Helper()
	ups, err := prom.Samples(context.Background(), fmt.Sprintf(`redis_up{instance=%q}`, instance), outageWindow)
	if err != nil || len(ups) != 1 {
		t.Fatalf("redis_up{instance=%q}: %d series, %v; want one", instance, len(ups), err)
	}
	pts := ups[0].Points
	target := map[string]string{"target": instance}
	if taken := gathered(t, a.reg, "redwire_target_scrapes_total", target); float64(len(pts)) != taken {
		t.Errorf("receiver has %d redis_up samples of %s; the agent counted %v scrapes of it", len(pts), instance, taken)
	}
	if n := gathered(t, a.reg, "redwire_target_scrapes_skipped_total", target); n != 0 {
		t.Errorf("%v scrapes of %s skipped", n, instance)
	}
	if first, last := pts[0].T, pts[len(pts)-1].T; !first.Before(from) || !last.After(to) {
		t.Fatalf("redis_up of %s runs from %s to %s; want it to cover %s to %s", instance, timeOfDay(first), timeOfDay(last), timeOfDay(from), timeOfDay(to))
	}
	// A missed scrape leaves two intervals between samples; a late one
	// less than half of one.
	inWindow := 0
	for i, p := range pts {
		if !p.T.Before(from) && !p.T.After(to) {
			inWindow++
		}
		if i == 0 {
			continue
		}
		if gap := p.T.Sub(pts[i-1].T); gap > interval*3/2 {
			t.Errorf("no redis_up sample of %s for %v, from %s to %s (master killed at %s, re-pointed at %s)",
				instance, gap, timeOfDay(pts[i-1].T), timeOfDay(p.T), timeOfDay(from), timeOfDay(to))
		}
	}
	t.Logf("%d redis_up samples of %s in the %v from the kill to the re-point, at a %v interval",
		inWindow, instance, to.Sub(from).Round(time.Millisecond), interval)
}

// timeOfDay is t as a wall-clock time of day, to the millisecond.
func timeOfDay(t time.Time) string { return t.UTC().Format("15:04:05.000") }
