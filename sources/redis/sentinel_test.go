package redis

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// sentinelScrape scrapes tg once. Until the sentinel collector is in
// NewTarget's list, it then runs it as Target.collect would, after
// EmitInfo, on the target's connection and refusal memory.
func sentinelScrape(t *testing.T, tg *Target) *sample.Scrape {
	t.Helper()
	sc := collectorScrape(t, tg)
	for _, c := range tg.collectors {
		if _, wired := c.(sentinel); wired {
			return sc
		}
	}
	raw, err := tg.client.Info(t.Context(), "all").Result()
	if err != nil {
		t.Fatal(err)
	}
	info, err := ParseInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	sentinel{}.collect(t.Context(), &session{client: tg.client, info: info, optional: &tg.optional}, sc)
	return sc
}

// sentinelLabels are the labels of each family redis_exporter has, besides
// job and instance.
var sentinelLabels = map[string][]string{
	"redis_sentinel_masters":                                nil,
	"redis_sentinel_tilt":                                   nil,
	"redis_sentinel_running_scripts":                        nil,
	"redis_sentinel_scripts_queue_length":                   nil,
	"redis_sentinel_simulate_failure_flags":                 nil,
	"redis_sentinel_master_status":                          {"master_address", "master_name", "master_status"},
	"redis_sentinel_master_slaves":                          {"master_address", "master_name"},
	"redis_sentinel_master_sentinels":                       {"master_address", "master_name"},
	"redis_sentinel_master_ok_slaves":                       {"master_address", "master_name"},
	"redis_sentinel_master_ok_sentinels":                    {"master_address", "master_name"},
	"redis_sentinel_master_ckquorum_status":                 {"master_name", "message"},
	"redis_sentinel_master_setting_ckquorum":                {"master_address", "master_name"},
	"redis_sentinel_master_setting_failover_timeout":        {"master_address", "master_name"},
	"redis_sentinel_master_setting_parallel_syncs":          {"master_address", "master_name"},
	"redis_sentinel_master_setting_down_after_milliseconds": {"master_address", "master_name"},
	"redis_sentinel_master_config_epoch":                    {"master_address", "master_name"},
	"redis_sentinel_master_last_ok_ping_reply_seconds":      {"master_address", "master_name"},
}

// checkSentinelFamilies fails unless sc holds every family of
// sentinelLabels, as a gauge with exactly its labels, and no other
// redis_sentinel_ family.
func checkSentinelFamilies(t *testing.T, sc *sample.Scrape) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range sc.Samples {
		name := s.Labels.Get(model.MetricNameLabel)
		if !strings.HasPrefix(name, "redis_sentinel_") {
			continue
		}
		want, known := sentinelLabels[name]
		if !known {
			// EmitInfo's generic redis_<field> for fields redis_exporter
			// skips (sentinel_tilt_since_seconds) are fine; others are not.
			if !slices.Contains(sc.Metadata, sample.Metadata{Family: name, Type: sample.Gauge, Help: infoHelpGeneric}) {
				t.Errorf("unexpected family %s", name)
			}
			continue
		}
		seen[name] = true
		var got []string
		s.Labels.Range(func(l labels.Label) {
			if l.Name != model.MetricNameLabel && l.Name != "job" && l.Name != "instance" {
				got = append(got, l.Name)
			}
		})
		if !slices.Equal(got, want) {
			t.Errorf("%s has labels %v, want %v", name, got, want)
		}
	}
	for name := range sentinelLabels {
		if !seen[name] {
			t.Errorf("no %s", name)
		} else if typ, _ := typeOf(sc, name); typ != sample.Gauge {
			t.Errorf("%s has type %v, want gauge", name, typ)
		}
	}
}

// TestSentinelCollector: a real sentinel watching a master with one
// replica reports it as redis_exporter does, exactly; a master whose
// quorum cannot be reached reads 0 with the sentinel's reason; a regular
// server gets no SENTINEL command and no redis_sentinel_ family.
func TestSentinelCollector(t *testing.T) {
	master := harness.StartRedis(t, harness.WithArgs("--repl-diskless-sync-delay", "0"))
	host, port, _ := net.SplitHostPort(master.Addr())
	harness.StartRedis(t, harness.WithArgs("--replicaof", host, port))
	ctx := t.Context()
	// The sentinel reads the replicas from the master's INFO as it
	// connects, then only every 10s: start it once the replica is there.
	harness.WaitFor(t, 15*time.Second, "the replica to be online", func() (bool, error) {
		raw, err := master.Client().Info(ctx, "replication").Result()
		if err != nil {
			return false, err
		}
		return strings.Contains(raw, "state=online"), fmt.Errorf("INFO replication: %q", raw)
	})
	s := harness.StartSentinel(t, "mymaster", master.Addr())
	harness.WaitFor(t, 20*time.Second, "the sentinel to see the replica up", func() (bool, error) {
		reply, err := s.Client().Do(ctx, "SENTINEL", "SLAVES", "mymaster").Result()
		if err != nil {
			return false, err
		}
		entries, _ := reply.([]any)
		return len(entries) == 1 && respStrings(entries[0])["flags"] == "slave", fmt.Errorf("SENTINEL SLAVES: %v", reply)
	})

	tg := collectorTarget(t, s.URL())
	sc := sentinelScrape(t, tg)
	checkSentinelFamilies(t, sc)
	m := []string{"master_name", "mymaster", "master_address", master.Addr()}
	for _, w := range []want{
		w("redis_sentinel_masters", 1),
		w("redis_sentinel_tilt", 0),
		w("redis_sentinel_running_scripts", 0),
		w("redis_sentinel_scripts_queue_length", 0),
		w("redis_sentinel_simulate_failure_flags", 0),
		w("redis_sentinel_master_status", 1, append(slices.Clone(m), "master_status", "ok")...),
		w("redis_sentinel_master_slaves", 1, m...),
		w("redis_sentinel_master_ok_slaves", 1, m...),
		w("redis_sentinel_master_sentinels", 1, m...),
		w("redis_sentinel_master_ok_sentinels", 1, m...),
		w("redis_sentinel_master_ckquorum_status", 1, "master_name", "mymaster",
			"message", "OK 1 usable Sentinels. Quorum and failover authorization can be reached"),
		w("redis_sentinel_master_setting_ckquorum", 1, m...),
		w("redis_sentinel_master_setting_down_after_milliseconds", harness.SentinelDownAfter, m...),
		w("redis_sentinel_master_setting_failover_timeout", 180000, m...), // Redis's default
		w("redis_sentinel_master_setting_parallel_syncs", 1, m...),
		w("redis_sentinel_master_config_epoch", 0, m...),
	} {
		if v, ok := find(sc, w.name, w.kv...); !ok || v != w.v {
			t.Errorf("%s%v = %v (found once: %v), want %v", w.name, w.kv, v, ok, w.v)
		}
	}
	if v, ok := find(sc, "redis_sentinel_master_last_ok_ping_reply_seconds", m...); !ok || v < 0 || v > 5 {
		t.Errorf("redis_sentinel_master_last_ok_ping_reply_seconds = %v (found once: %v), want 0..5", v, ok)
	}

	// Quorum 2 with one sentinel: CKQUORUM answers with an error reply,
	// which is the answer, not a refusal.
	if err := s.Client().Do(ctx, "SENTINEL", "MONITOR", "other", host, port, "2").Err(); err != nil {
		t.Fatal(err)
	}
	sc = sentinelScrape(t, tg)
	if v, ok := find(sc, "redis_sentinel_masters"); !ok || v != 2 {
		t.Errorf("redis_sentinel_masters = %v (found once: %v), want 2", v, ok)
	}
	msg := byLabel(t, sc, "redis_sentinel_master_ckquorum_status", "message")
	if len(msg) != 2 {
		t.Fatalf("ckquorum series %v, want one per master", msg)
	}
	for text, v := range msg {
		if strings.HasPrefix(text, "NOQUORUM 1 usable Sentinels") != (v == 0) {
			t.Errorf("ckquorum{message=%q} = %v", text, v)
		}
	}
	if v, ok := find(sc, "redis_sentinel_master_ckquorum_status", "master_name", "other"); !ok || v != 0 {
		t.Errorf("ckquorum{master_name=other} = %v (found once: %v), want 0", v, ok)
	}
	if tg.optional.refused["SENTINEL CKQUORUM"] {
		t.Error("NOQUORUM was taken for a refusal of SENTINEL CKQUORUM")
	}

	// A regular server: not even asked (a SENTINEL command there would be
	// refused, and remembered).
	plain := collectorTarget(t, master.URL())
	sc = sentinelScrape(t, plain)
	for _, s := range sc.Samples {
		if name := s.Labels.Get(model.MetricNameLabel); strings.HasPrefix(name, "redis_sentinel_") {
			t.Errorf("regular server: %s", s.Labels)
		}
	}
	if len(plain.optional.refused) > 0 {
		for name := range plain.optional.refused {
			if strings.HasPrefix(name, "SENTINEL") {
				t.Errorf("regular server was sent %s", name)
			}
		}
	}
}

// TestSentinelReplies: RESP2 flat arrays and RESP3 maps read the same; a
// peer or replica counts as up unless flagged s_down or o_down, and not
// without flags; INFO master lines are read by key, not position.
func TestSentinelReplies(t *testing.T) {
	resp2 := []any{
		[]any{"name", "a", "flags", "slave"},
		[]any{"name", "b", "flags", "s_down,slave,disconnected"},
		[]any{"name", "c"},
		[]any{"name", "d", "flags", "o_down,sentinel"},
		[]any{"name", "e", "flags", "slave,disconnected"},
	}
	resp3 := make([]any, len(resp2))
	for i, e := range resp2 {
		m := map[any]any{}
		for j := 0; j < len(e.([]any)); j += 2 {
			m[e.([]any)[j]] = e.([]any)[j+1]
		}
		resp3[i] = m
	}
	if n2, n3 := countUp(resp2), countUp(resp3); n2 != 2 || n3 != 2 {
		t.Errorf("countUp = %d (RESP2), %d (RESP3), want 2", n2, n3)
	}
	if got := respStrings(map[any]any{"port": int64(26379), "x": []any{}}); got["port"] != "26379" || len(got) != 1 {
		t.Errorf("respStrings = %v", got)
	}

	info, err := ParseInfo("# Server\nredis_mode:sentinel\n# Sentinel\nsentinel_masters:2\n" +
		"master0:sentinels=3,slaves=2,address=10.0.0.1:6379,status=sdown,name=a\n" +
		"master1:name=b,status=ok,address=10.0.0.2:6379,slaves=x\n" +
		"master2:name=a,status=ok,address=10.0.0.9:6379,slaves=0,sentinels=1\n")
	if err != nil {
		t.Fatal(err)
	}
	if !isSentinel(info) {
		t.Fatal("isSentinel = false")
	}
	sc := sample.NewScrape(time.Now(), labels.EmptyLabels())
	emitSentinelInfo(sc, info)
	a := []string{"master_name", "a", "master_address", "10.0.0.1:6379"}
	for _, w := range []want{
		w("redis_sentinel_masters", 2),
		w("redis_sentinel_master_status", 0, append(slices.Clone(a), "master_status", "sdown")...),
		w("redis_sentinel_master_slaves", 2, a...),
		w("redis_sentinel_master_sentinels", 3, a...),
		w("redis_sentinel_master_status", 1, "master_name", "b", "master_status", "ok"),
	} {
		if v, ok := find(sc, w.name, w.kv...); !ok || v != w.v {
			t.Errorf("%s%v = %v (found once: %v), want %v", w.name, w.kv, v, ok, w.v)
		}
	}
	// b's unreadable count is left out; a's second line is a duplicate.
	if got := byLabel(t, sc, "redis_sentinel_master_slaves", "master_name"); len(got) != 1 {
		t.Errorf("redis_sentinel_master_slaves %v, want a's only", got)
	}
	if plain, _ := ParseInfo("# Server\nredis_mode:standalone\n"); isSentinel(plain) {
		t.Error("isSentinel(standalone) = true")
	}
}
