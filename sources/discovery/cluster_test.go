package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// clusterWait bounds every wait on a real cluster: gossip and failover
// take seconds, never this long.
const clusterWait = 30 * time.Second

// clusterNeverRefresh is a refresh interval no test reaches: tests move
// discovery on with Refresh, so the nudge path is what they exercise.
const clusterNeverRefresh = time.Hour

// clusterRun is a Cluster started by startClusterDiscovery.
type clusterRun struct {
	*Cluster
	up  chan Group
	reg *prometheus.Registry
	log *harness.LogBuffer
}

// startClusterDiscovery runs a discoverer for cfg until the test ends,
// and waits for Run to return then. Groups queue in up (buffered, so a
// group sent is in up once Nodes shows the view it came from).
func startClusterDiscovery(t *testing.T, cfg ClusterConfig) *clusterRun {
	t.Helper()
	r := &clusterRun{up: make(chan Group, 64), reg: prometheus.NewRegistry(), log: &harness.LogBuffer{}}
	c, err := NewCluster(cfg, clusterNeverRefresh, r.reg, slog.New(slog.NewTextHandler(r.log, nil)))
	if err != nil {
		t.Fatalf("NewCluster: %v", err)
	}
	r.Cluster = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, r.up)
	}()
	t.Cleanup(func() {
		cancel()
		harness.WaitFor(t, clusterWait, "Run to return after cancel", func() (bool, error) {
			select {
			case <-done:
				return true, nil
			default:
				return false, nil
			}
		})
	})
	return r
}

// nextGroup nudges discovery until a group arrives that check accepts;
// groups it rejects are dropped.
func (r *clusterRun) nextGroup(t *testing.T, what string, check func(Group) error) Group {
	t.Helper()
	var got Group
	harness.WaitFor(t, clusterWait, what, func() (bool, error) {
		r.Refresh()
		select {
		case g := <-r.up:
			if err := check(g); err != nil {
				return false, err
			}
			got = g
			return true, nil
		default:
			return false, errors.New("no group yet")
		}
	})
	return got
}

// noGroup fails the test if a group is queued.
func (r *clusterRun) noGroup(t *testing.T, when string) {
	t.Helper()
	select {
	case g := <-r.up:
		t.Errorf("%s: unexpected group %v", when, clusterAddrs(g))
	default:
	}
}

// metric is the value of the series name{labels} on the registry; found
// is false when there is no such series.
func (r *clusterRun) metric(t *testing.T, name string, labels ...string) (v float64, found bool) {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func clusterAddrs(g Group) []string {
	var out []string
	for _, t := range g.Targets {
		out = append(out, t.Addr)
	}
	return out
}

// clusterHasAddrs is a group check: exactly these node URLs.
func clusterHasAddrs(want []string) func(Group) error {
	want = slices.Sorted(slices.Values(want))
	return func(g Group) error {
		if got := clusterAddrs(g); !slices.Equal(got, want) {
			return fmt.Errorf("group has %v, want %v", got, want)
		}
		return nil
	}
}

func clusterNodeURLs(nodes ...*harness.Redis) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, "redis://:pw@"+n.Addr())
	}
	return out
}

// clusterNodeAt is the node of the view with address addr.
func clusterNodeAt(nodes []redis.ClusterNode, addr string) (redis.ClusterNode, bool) {
	for _, n := range nodes {
		if n.Addr == addr {
			return n, true
		}
	}
	return redis.ClusterNode{}, false
}

// TestClusterDiscovery follows one cluster of 3 masters and 3 replicas
// through a failover, a node joining, a node leaving and every node going
// down. The first seed never answers, so each round also shows the next
// seed being tried; the second is a replica, and it goes down before the
// rest.
func TestClusterDiscovery(t *testing.T) {
	pw := harness.WithPassword("pw")
	nodes := harness.StartRedisClusterWithReplicas(t, 3, 1, pw)
	seed := nodes[5]
	dead := fmt.Sprintf("redis://:pw@127.0.0.1:%d", harness.FreePort(t))
	d := startClusterDiscovery(t, ClusterConfig{
		Name:              "prod",
		Seeds:             []string{dead, seed.URL()},
		Labels:            map[string]string{"team": "cache"},
		SoftFailThreshold: 2,
	})

	// The first group: every node, with the seeds' userinfo and the
	// cluster's settings and labels.
	g := d.nextGroup(t, "the first group", clusterHasAddrs(clusterNodeURLs(nodes...)))
	if g.Source != "cluster:prod" || g.Refresh == nil {
		t.Errorf("group source %q, refresh set %v", g.Source, g.Refresh != nil)
	}
	for _, tc := range g.Targets {
		if tc.Name != "" || tc.SoftFailThreshold != 2 || len(tc.Labels) != 2 ||
			tc.Labels["redis_cluster"] != "prod" || tc.Labels["team"] != "cache" {
			t.Errorf("target %+v", tc)
		}
	}
	// The targets work as they are: the password reaches the node.
	target, err := redis.NewTarget(g.Targets[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	ctx, cancel := context.WithTimeout(t.Context(), clusterWait)
	defer cancel()
	if _, err := target.Scrape(ctx, time.Now()); err != nil {
		t.Errorf("scrape of discovered %s: %v", target.Name(), err)
	}
	clusterRoles(t, d, 3, 3)
	if v, ok := d.metric(t, "redwire_cluster_last_discovery_success_timestamp_seconds", "cluster", "prod"); !ok || v <= 0 {
		t.Errorf("last success timestamp %v (found %v)", v, ok)
	}

	// A replica takes over from its master: same addresses, so no group,
	// but the view and the role counts follow.
	replica := nodes[3]
	before, _ := clusterNodeAt(d.Nodes(), replica.Addr())
	var oldMaster redis.ClusterNode
	for _, n := range d.Nodes() {
		if n.ID == before.MasterID {
			oldMaster = n
		}
	}
	if !before.Replica || oldMaster.Addr == "" {
		t.Fatalf("%s before failover: %+v, master %+v", replica.Addr(), before, oldMaster)
	}
	if err := replica.Client().Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatalf("CLUSTER FAILOVER on %s: %v", replica.Addr(), err)
	}
	harness.WaitFor(t, clusterWait, "the discoverer to see the failover", func() (bool, error) {
		d.Refresh()
		view := d.Nodes()
		promoted, _ := clusterNodeAt(view, replica.Addr())
		demoted, _ := clusterNodeAt(view, oldMaster.Addr)
		if !promoted.Master || !demoted.Replica || demoted.MasterID != promoted.ID {
			return false, fmt.Errorf("%s is %v, %s is %v", replica.Addr(), promoted.Flags, oldMaster.Addr, demoted.Flags)
		}
		return true, nil
	})
	d.noGroup(t, "after a failover")
	clusterRoles(t, d, 3, 3)

	// A node joins: a group with it.
	added := harness.AddClusterNode(t, nodes, pw)
	d.nextGroup(t, "a group with the added node", clusterHasAddrs(clusterNodeURLs(append(slices.Clone(nodes), added)...)))
	clusterRoles(t, d, 4, 3)

	// It leaves: stopped, then forgotten by every other node.
	id, err := added.Client().ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	added.Stop()
	for _, n := range nodes {
		if err := n.Client().ClusterForget(ctx, id).Err(); err != nil {
			t.Fatalf("CLUSTER FORGET %s on %s: %v", id, n.Addr(), err)
		}
	}
	d.nextGroup(t, "a group without the removed node", clusterHasAddrs(clusterNodeURLs(nodes...)))
	clusterRoles(t, d, 3, 3)

	// No seed answers: the nodes found earlier do. A round that was under
	// way at the stop may still have asked the seed; the one after it
	// cannot have.
	seed.Stop()
	last, _ := d.metric(t, "redwire_cluster_last_discovery_success_timestamp_seconds", "cluster", "prod")
	for round := 1; round <= 2; round++ {
		harness.WaitFor(t, clusterWait, fmt.Sprintf("success %d without a seed", round), func() (bool, error) {
			d.Refresh()
			ts, _ := d.metric(t, "redwire_cluster_last_discovery_success_timestamp_seconds", "cluster", "prod")
			if ts <= last {
				return false, fmt.Errorf("last success still at %v", ts)
			}
			last = ts
			return true, nil
		})
	}

	// Every node goes down: errors counted, logged once with the seeds
	// (password redacted), no group, the last view kept.
	if v, _ := d.metric(t, "redwire_cluster_discovery_errors_total", "cluster", "prod"); v != 0 {
		t.Errorf("%v discovery errors while a node answered, want 0", v)
	}
	for _, n := range nodes {
		n.Stop()
	}
	harness.WaitFor(t, clusterWait, "discovery to fail twice", func() (bool, error) {
		d.Refresh()
		v, _ := d.metric(t, "redwire_cluster_discovery_errors_total", "cluster", "prod")
		return v >= 2, fmt.Errorf("%v errors", v)
	})
	d.noGroup(t, "with every node down")
	// A round under way while the nodes stopped one by one may have
	// caught a replica taking over from a stopped master, so the kept
	// view need not be 3 and 3; the metrics must agree with it.
	kept := d.Nodes()
	if n := len(kept); n != 6 {
		t.Errorf("view of %d nodes kept, want the last good one of 6", n)
	}
	var masters, replicas int
	for _, n := range kept {
		switch {
		case n.HasFlag("handshake"):
		case n.Master:
			masters++
		case n.Replica:
			replicas++
		}
	}
	clusterRoles(t, d, masters, replicas)
	logs := d.log.String()
	if n := strings.Count(logs, "no node of the cluster answers"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, "cluster=prod") || !strings.Contains(logs, "redis://:xxxxx@"+seed.Addr()) ||
		strings.Contains(logs, ":pw@") {
		t.Errorf("outage log should name the cluster and the redacted seeds:\n%s", logs)
	}
}

// clusterRoles waits until redwire_cluster_nodes shows masters and
// replicas: gossip may lag behind a change on the node the discoverer
// asks.
func clusterRoles(t *testing.T, d *clusterRun, masters, replicas int) {
	t.Helper()
	harness.WaitFor(t, clusterWait, fmt.Sprintf("%d masters and %d replicas", masters, replicas), func() (bool, error) {
		d.Refresh()
		m, _ := d.metric(t, "redwire_cluster_nodes", "cluster", "prod", "role", "master")
		r, _ := d.metric(t, "redwire_cluster_nodes", "cluster", "prod", "role", "replica")
		if m != float64(masters) || r != float64(replicas) {
			return false, fmt.Errorf("metrics show %v masters, %v replicas", m, r)
		}
		return true, nil
	})
}

// TestClusterUnreachableSeeds: a cluster none of whose seeds answers is
// valid config; discovery counts errors, logs once, and sends no group.
// Two clusters share one registry.
func TestClusterUnreachableSeeds(t *testing.T) {
	cfg := ClusterConfig{Name: "gone", Seeds: []string{
		"rediss://user:secret@127.0.0.1:" + strconv.Itoa(harness.FreePort(t)),
		"rediss://user:secret@127.0.0.1:" + strconv.Itoa(harness.FreePort(t)),
	}, TLS: config.TLSConfig{InsecureSkipVerify: true}}
	d := startClusterDiscovery(t, cfg)
	other := cfg
	other.Name = "other"
	if _, err := NewCluster(other, time.Second, d.reg, nil); err != nil {
		t.Errorf("second cluster on the same registry: %v", err)
	}
	harness.WaitFor(t, clusterWait, "three failed rounds", func() (bool, error) {
		v, _ := d.metric(t, "redwire_cluster_discovery_errors_total", "cluster", "gone")
		return v >= 3, fmt.Errorf("%v errors", v)
	})
	d.noGroup(t, "with no seed answering")
	if n := d.Nodes(); n != nil {
		t.Errorf("Nodes() = %v before any answer", n)
	}
	if _, ok := d.metric(t, "redwire_cluster_nodes", "cluster", "gone"); ok {
		t.Error("redwire_cluster_nodes set before any answer")
	}
	if v, ok := d.metric(t, "redwire_cluster_discovery_errors_total", "cluster", "other"); !ok || v != 0 {
		t.Errorf("errors of the idle cluster: %v (found %v), want a 0 series", v, ok)
	}
	logs := d.log.String()
	if n := strings.Count(logs, "no node of the cluster answers"); n != 1 || strings.Contains(logs, "secret") {
		t.Errorf("want one outage line without the password:\n%s", logs)
	}
}

// TestClusterTargets: which lines of a view become targets, and how.
func TestClusterTargets(t *testing.T) {
	c, err := NewCluster(ClusterConfig{
		Name: "eu", Seeds: []string{"valkeys://u:p@10.0.0.1:7000"}, PasswordFile: "/run/pw",
		Labels: map[string]string{"env": "prod"},
	}, time.Second, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := redis.ParseClusterNodes(`a 10.0.0.2:7000@17000 master - 0 0 1 connected 0-8191
b 10.0.0.1:7000@17000 myself,master - 0 0 2 connected 8192-16383
c 10.0.0.3:7000@17000 slave,fail a 0 0 1 disconnected
d 10.0.0.3:7000@17000 slave a 0 0 1 connected
e ::1:7001@17001 slave b 0 0 2 connected
f 10.0.0.4:7000@17000 handshake - 0 0 0 connected
g :0@0 master,noaddr - 0 0 3 disconnected
h :7002@17002 master - 0 0 3 connected
i 10.0.0.5:7000@17000 master,fail - 0 0 4 disconnected
`)
	if err != nil {
		t.Fatal(err)
	}
	got := c.targets(nodes)
	want := []string{"valkeys://u:p@10.0.0.1:7000", "valkeys://u:p@10.0.0.2:7000", "valkeys://u:p@10.0.0.3:7000", "valkeys://u:p@10.0.0.5:7000", "valkeys://u:p@[::1]:7001"}
	if addrs := clusterAddrs(Group{Targets: got}); !slices.Equal(addrs, want) {
		t.Errorf("targets %v, want %v", addrs, want)
	}
	for _, tc := range got {
		if tc.PasswordFile != "/run/pw" || tc.Labels["env"] != "prod" || tc.Labels["redis_cluster"] != "eu" {
			t.Errorf("target %+v", tc)
		}
		if err := tc.Validate(); err != nil {
			t.Errorf("target %s: %v", tc.Addr, err)
		}
	}
	got[0].Labels["env"] = "changed"
	if got[1].Labels["env"] != "prod" {
		t.Error("targets share one labels map")
	}
	if err := usableView(nodes[6:7]); err == nil {
		t.Error("a view in which no node owns a slot was accepted")
	}
}
