package redis

import (
	"context"
	"maps"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sample"
)

// clusterScrape does what Target.collect does, with the cluster collector
// only: INFO ALL, EmitInfo, then the collector on a session over a
// connection configured like a Target's (RESP2 unless protocol says). own
// are the families the collector added, with their types.
func clusterScrape(t *testing.T, r *harness.Redis, protocol int, opt *optionalCommands) (sc *sample.Scrape, own map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	client := goredis.NewClient(&goredis.Options{
		Addr: r.Addr(), Protocol: protocol, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer client.Close()
	raw, err := client.Info(ctx, "all").Result()
	if err != nil {
		t.Fatalf("INFO ALL on %s: %v", r.Addr(), err)
	}
	info, err := ParseInfo(raw)
	if err != nil {
		t.Fatalf("ParseInfo: %v", err)
	}
	sc = sample.NewScrape(time.Now(), labels.FromStrings("instance", r.Addr(), "job", "redis"))
	EmitInfo(sc, info)
	before := len(sc.Metadata)
	clusterInfo{}.collect(ctx, &session{client: client, info: info, optional: opt}, sc)
	checkScrape(t, sc)
	own = map[string]string{}
	for _, m := range sc.Metadata[before:] {
		own[m.Family] = strings.ToLower(m.Type.String())
	}
	return sc, own
}

// clusterFamilies is every redis_cluster_* family in sc with its type.
func clusterFamilies(sc *sample.Scrape) map[string]string {
	out := map[string]string{}
	for _, m := range sc.Metadata {
		if strings.HasPrefix(m.Family, "redis_cluster_") {
			out[m.Family] = strings.ToLower(m.Type.String())
		}
	}
	return out
}

// TestClusterThreeMasters: on every node of a real 3-master cluster the
// CLUSTER INFO families carry the exact state, the node slot counts add up
// to the key space, and every redis_cluster_* family of the real
// redis_exporter exists with the same type and labels.
func TestClusterThreeMasters(t *testing.T) {
	nodes := harness.StartRedisCluster(t, 3)
	exact := map[string]float64{
		"redis_cluster_enabled":        1, // from INFO, once
		"redis_cluster_state":          1,
		"redis_cluster_slots_assigned": 16384,
		"redis_cluster_slots_ok":       16384,
		"redis_cluster_slots_pfail":    0,
		"redis_cluster_slots_fail":     0,
		"redis_cluster_known_nodes":    3,
		"redis_cluster_size":           3,
	}
	present := []string{
		"redis_cluster_current_epoch", "redis_cluster_my_epoch",
		"redis_cluster_messages_sent_total", "redis_cluster_messages_received_total",
		"redis_cluster_stats_messages_ping_sent", "redis_cluster_stats_messages_pong_received",
	}
	sum := 0.0
	for _, n := range nodes {
		sc, _ := clusterScrape(t, n, 2, &optionalCommands{})
		for fam, want := range exact {
			if v, ok := find(sc, fam); !ok || v != want {
				t.Errorf("%s: %s = %v (found %v), want %v", n.Addr(), fam, v, ok, want)
			}
		}
		for _, fam := range present {
			if _, ok := find(sc, fam); !ok {
				t.Errorf("%s: no %s", n.Addr(), fam)
			}
		}
		for fam, typ := range clusterFamilies(sc) {
			if typ != "gauge" {
				t.Errorf("%s: %s is a %s, want a gauge as in redis_exporter", n.Addr(), fam, typ)
			}
		}
		slots, ok := find(sc, "redis_cluster_node_slots")
		if !ok || slots < 5461 || slots > 5462 {
			t.Errorf("%s: redis_cluster_node_slots = %v (found %v), want a third of 16384", n.Addr(), slots, ok)
		}
		sum += slots
	}
	if sum != 16384 {
		t.Errorf("redis_cluster_node_slots add up to %v over the masters, want 16384", sum)
	}

	// RESP3 replies (verbatim strings) give the same families.
	_, f2 := clusterScrape(t, nodes[0], 2, &optionalCommands{})
	_, f3 := clusterScrape(t, nodes[0], 3, &optionalCommands{})
	if !maps.Equal(f2, f3) {
		t.Errorf("RESP2 families %v, RESP3 families %v", f2, f3)
	}

	bin, err := exec.LookPath(exporterBin)
	if err != nil {
		t.Fatalf("%s not found in PATH: apt-get install prometheus-redis-exporter", exporterBin)
	}
	ref := exporterFamilies(t, bin, nodes[0].URL())
	// After the exporter's scrape: a message type it saw has been counted
	// already and stays listed.
	sc, _ := clusterScrape(t, nodes[0], 2, &optionalCommands{})
	got := clusterFamilies(sc)
	if _, ok := ref["redis_cluster_state"]; !ok {
		t.Fatalf("redis_exporter shows no redis_cluster_state: %v", ref)
	}
	for fam, f := range ref {
		if !strings.HasPrefix(fam, "redis_cluster_") {
			continue
		}
		if typ, ok := got[fam]; !ok || typ != f.typ || len(f.labels) != 0 {
			t.Errorf("redis_exporter has %s (%s), redwire has type %q (found %v)", fam, f, typ, ok)
		}
	}
}

// TestClusterLoneNode: a cluster-enabled node that owns no slots reports
// the failed state and 0 slots; with CLUSTER renamed away the collector
// adds nothing, and after the first refusal sends nothing.
func TestClusterLoneNode(t *testing.T) {
	r := harness.StartRedis(t, harness.WithArgs("--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(t.TempDir(), "nodes.conf"), "--cluster-port", strconv.Itoa(harness.FreePort(t))))
	sc, _ := clusterScrape(t, r, 2, &optionalCommands{})
	// cluster_size stays 1 on a node that never saw a slot (Redis 7.0).
	for fam, want := range map[string]float64{
		"redis_cluster_state": 0, "redis_cluster_slots_assigned": 0,
		"redis_cluster_known_nodes": 1, "redis_cluster_node_slots": 0,
	} {
		if v, ok := find(sc, fam); !ok || v != want {
			t.Errorf("%s = %v (found %v), want %v", fam, v, ok, want)
		}
	}

	hidden := harness.StartRedis(t, harness.WithArgs("--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(t.TempDir(), "nodes.conf"), "--cluster-port", strconv.Itoa(harness.FreePort(t)),
		"--rename-command", "CLUSTER", ""))
	opt := &optionalCommands{}
	// The harness client's own handshake adds errors on a 7.0 server
	// (CLIENT SETINFO); they are in errs before the first scrape.
	errs := serverStat(t, hidden, "errorstats", "errorstat_ERR", "count")
	for i, want := range []float64{2, 0} { // CLUSTER INFO and NODES once each, then nothing
		sc, own := clusterScrape(t, hidden, 2, opt)
		if len(own) != 0 {
			t.Errorf("scrape %d with CLUSTER refused: collector added %v", i+1, own)
		}
		if _, ok := find(sc, "redis_cluster_enabled"); !ok {
			t.Errorf("scrape %d: no redis_cluster_enabled from INFO", i+1)
		}
		now := serverStat(t, hidden, "errorstats", "errorstat_ERR", "count")
		if now-errs != want {
			t.Errorf("scrape %d: %v ERR replies, want %v", i+1, now-errs, want)
		}
		errs = now
	}
}

// TestClusterDisabled: on a Redis without cluster mode the collector sends
// no command and adds no sample.
func TestClusterDisabled(t *testing.T) {
	r := harness.StartRedis(t)
	if _, own := clusterScrape(t, r, 2, &optionalCommands{}); len(own) != 0 {
		t.Errorf("collector added %v on a non-cluster server", own)
	}
	stats, err := r.Client().Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stats, "cmdstat_cluster") {
		t.Errorf("CLUSTER sent to a non-cluster server:\n%s", stats)
	}
}

func TestClusterInfoParse(t *testing.T) {
	// Reordered, with fields a later release may add, a header, a
	// non-numeric value and a repeated field.
	text := "cluster_size:3\r\n# Cluster\r\ncluster_state:fail\r\ncluster_stats_messages_sent:10\r\n" +
		"cluster_future-field:7\r\ntotal_cluster_links_buffer_limit_exceeded:2\r\ncluster_mode:weird\r\n" +
		"noise\r\ncluster_size:4\r\n"
	sc := sample.NewScrape(time.Now(), labels.EmptyLabels())
	sc.Gauge("redis_cluster_size", "taken by an earlier emitter", 9)
	taken := map[string]bool{"redis_cluster_size": true}
	for _, f := range parseClusterInfo(text) {
		if !taken[f.name] {
			taken[f.name] = true
			sc.Gauge(f.name, clusterHelp(f.name), f.v)
		}
	}
	checkScrape(t, sc)
	for fam, want := range map[string]float64{
		"redis_cluster_size": 9, "redis_cluster_state": 0, "redis_cluster_messages_sent_total": 10,
		"redis_cluster_future_field": 7, "redis_cluster_total_cluster_links_buffer_limit_exceeded": 2,
	} {
		if v, ok := find(sc, fam); !ok || v != want {
			t.Errorf("%s = %v (found %v), want %v", fam, v, ok, want)
		}
	}
	if _, ok := find(sc, "redis_cluster_mode"); ok {
		t.Error("non-numeric cluster_mode emitted")
	}
}

func TestClusterNodeSlots(t *testing.T) {
	const (
		other = "e1 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922\n"
		id    = "e0 127.0.0.1:7001@17001 "
	)
	for _, tc := range []struct {
		line  string
		want  int
		found bool
	}{
		{id + "myself,master - 0 0 1 connected 0-5460", 5461, true},
		{id + "myself,master - 0 0 1 connected 0-10 20 [21->-e1] [30-<-e1] 5-12", 14, true},
		{id + "myself,slave e1 0 0 1 connected", 0, true},
		{id + "master,myself - 0 0 1 connected 16383", 1, true},
		{id + "myself,master - 0 0 1 connected 0-16384", 0, false},
		{id + "myself,master - 0 0 1 connected 10-5", 0, false},
		{id + "myself,master - 0 0 1 connected x", 0, false},
		{id + "notmyself,master - 0 0 1 connected 0-5", 0, false},
	} {
		n, found := mySlots(other + tc.line + "\n")
		if n != tc.want || found != tc.found {
			t.Errorf("%q: %d, %v; want %d, %v", tc.line, n, found, tc.want, tc.found)
		}
	}
}
