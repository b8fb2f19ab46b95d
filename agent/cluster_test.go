package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/discovery"
)

// TestClusterIsFollowed runs the agent on a real 3-master, 3-replica
// Redis Cluster known only by one seed, and checks in the receiver that
// every node is scraped, that a CLUSTER FAILOVER shows as swapped roles on
// the same series, that a node added to the cluster is scraped, and that
// one removed from it stops being scraped with its series ended by stale
// markers.
func TestClusterIsFollowed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 7 cluster nodes and Prometheus")
	}
	t.Parallel()
	nodes := harness.StartRedisClusterWithReplicas(t, 3, 1)
	prom := harness.StartPrometheus(t)
	cfg := editedTestConfig(t, prom.WriteURL(), func(c *Config) {
		c.Clusters = []discovery.ClusterConfig{{Name: "prod", Seeds: []string{nodes[0].URL()}}}
	})
	runAgent(t, cfg)
	ctx := context.Background()

	for _, n := range nodes {
		queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q,redis_cluster="prod"} == 1`, n.Addr()), nil)
	}
	replica := nodes[3] // masters first, then replicas
	queryOne(t, prom, fmt.Sprintf(`redis_instance_info{instance=%q,role="slave"}`, replica.Addr()), nil)

	if err := replica.Client().Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatalf("CLUSTER FAILOVER on %s: %v", replica.Addr(), err)
	}
	queryOne(t, prom, fmt.Sprintf(`redis_instance_info{instance=%q,role="master"}`, replica.Addr()), nil)
	queryOne(t, prom, fmt.Sprintf(`redis_cluster_node_slots{instance=%q} > 0`, replica.Addr()), nil)

	added := harness.AddClusterNode(t, nodes)
	queryOne(t, prom, fmt.Sprintf(`redis_up{instance=%q,redis_cluster="prod"} == 1`, added.Addr()), nil)

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
	// Without stale markers the last value would answer for five minutes.
	harness.WaitFor(t, 60*time.Second, "the removed node's series to end", func() (bool, error) {
		vec, err := prom.Query(ctx, fmt.Sprintf(`redis_up{instance=%q}`, added.Addr()))
		return err == nil && len(vec) == 0, err
	})
	if v := agentMetric(t, cfg, fmt.Sprintf(`redwire_target_up{target=%q}`, added.Addr())); v != -1 {
		t.Errorf("the removed node is still on /metrics: redwire_target_up = %v", v)
	}
	assertNoRejections(t, prom)
}
