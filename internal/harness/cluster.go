package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// StartRedisCluster starts masters redis-servers in cluster mode, joins
// them into one Redis Cluster with `redis-cli --cluster create` (the 16384
// slots split evenly, no replicas), and returns once every node reports
// cluster_state:ok and knows all the others. opts apply to every node.
//
// Each node gets its own cluster config file in a temp dir and an explicit
// --cluster-port: the default bus port, port+10000, lies beyond 65535 for
// a good part of the ephemeral range FreePort draws from. Like the main
// port, the bus port is only known free a moment before redis-server binds
// it.
func StartRedisCluster(t testing.TB, masters int, opts ...RedisOption) []*Redis {
	t.Helper()
	return StartRedisClusterWithReplicas(t, masters, 0, opts...)
}

// StartRedisClusterWithReplicas is StartRedisCluster with
// replicasPerMaster replicas for each master (`redis-cli --cluster create
// --cluster-replicas`). It returns the masters first, then the replicas:
// redis-cli picks the roles, so the harness asks every node afterwards.
// It returns once every node reports cluster_state:ok and knows all the
// others, every node's CLUSTER NODES shows every replica as one, and every
// replica's link to its master is up, so a test can fail over at once.
//
// With WithPassword the replicas get --masterauth too, or they could not
// sync.
func StartRedisClusterWithReplicas(t testing.TB, masters, replicasPerMaster int, opts ...RedisOption) []*Redis {
	t.Helper()
	if masters < 3 {
		t.Fatalf("StartRedisCluster: %d masters; redis-cli --cluster create needs at least 3", masters)
	}
	if replicasPerMaster < 0 {
		t.Fatalf("StartRedisClusterWithReplicas: %d replicas per master", replicasPerMaster)
	}
	total := masters * (1 + replicasPerMaster)
	nodes := make([]*Redis, total)
	for i := range nodes {
		nodes[i] = startClusterNode(t, opts)
	}

	cmdArgs := []string{"--cluster", "create"}
	for _, n := range nodes {
		cmdArgs = append(cmdArgs, n.Addr())
	}
	if replicasPerMaster > 0 {
		cmdArgs = append(cmdArgs, "--cluster-replicas", strconv.Itoa(replicasPerMaster))
	}
	runRedisCLI(t, nodes[0], append(cmdArgs, "--cluster-yes")...)

	replicas := masters * replicasPerMaster
	WaitFor(t, startTimeout, fmt.Sprintf("cluster_state:ok, %d known nodes and %d replicas on every node", total, replicas), func() (bool, error) {
		for _, n := range nodes {
			if err := clusterSettled(context.Background(), n, total); err != nil {
				return false, err
			}
			if err := clusterReplicasSeen(context.Background(), n, replicas); err != nil {
				return false, err
			}
		}
		return true, nil
	})

	var ms, rs []*Redis
	for _, n := range nodes {
		if isReplica(t, n) {
			rs = append(rs, n)
		} else {
			ms = append(ms, n)
		}
	}
	if len(ms) != masters {
		t.Fatalf("redis-cli made %d masters of %d nodes, want %d", len(ms), total, masters)
	}
	WaitFor(t, startTimeout, "master_link_status:up on every replica", func() (bool, error) {
		for _, r := range rs {
			if err := replicaLinkUp(context.Background(), r); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	return append(ms, rs...)
}

// AddClusterNode starts a cluster-mode redis-server, introduces it to the
// running cluster with CLUSTER MEET (sent to cluster[0]) and returns once
// every node, the new one included, knows all the others and reports
// cluster_state:ok. The new node is a master without slots. Pass the opts
// the cluster was started with (WithPassword).
func AddClusterNode(t testing.TB, cluster []*Redis, opts ...RedisOption) *Redis {
	t.Helper()
	if len(cluster) == 0 {
		t.Fatal("AddClusterNode: no cluster to add to")
	}
	bus := FreePort(t)
	n := startClusterNodeOnBus(t, bus, opts)
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	// The bus port is explicit (see StartRedisCluster), so MEET must name
	// it rather than let Redis assume port+10000.
	if err := cluster[0].Client().Do(ctx, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(n.srv.port), strconv.Itoa(bus)).Err(); err != nil {
		t.Fatalf("CLUSTER MEET %s on %s: %v", n.Addr(), cluster[0].Addr(), err)
	}
	all := append(append([]*Redis{}, cluster...), n)
	WaitFor(t, startTimeout, fmt.Sprintf("cluster_state:ok and %d known nodes on every node", len(all)), func() (bool, error) {
		for _, r := range all {
			if err := clusterSettled(context.Background(), r, len(all)); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	return n
}

// startClusterNode starts one cluster-mode redis-server that is in no
// cluster yet.
func startClusterNode(t testing.TB, opts []RedisOption) *Redis {
	t.Helper()
	return startClusterNodeOnBus(t, FreePort(t), opts)
}

func startClusterNodeOnBus(t testing.TB, bus int, opts []RedisOption) *Redis {
	t.Helper()
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	conf := filepath.Join(t.TempDir(), "nodes.conf")
	args := []string{"--cluster-enabled", "yes", "--cluster-config-file", conf, "--cluster-port", strconv.Itoa(bus)}
	if cfg.password != "" {
		args = append(args, "--masterauth", cfg.password)
	}
	return StartRedis(t, append(append([]RedisOption{}, opts...), WithArgs(args...))...)
}

// runRedisCLI runs redis-cli with args against auth's password and fails
// the test, showing the output, if it fails.
func runRedisCLI(t testing.TB, auth *Redis, args ...string) {
	t.Helper()
	cli := lookBinary(t, "redis-cli", "redis-tools")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Env = os.Environ()
	if pw := auth.cfg.password; pw != "" {
		// Through the environment: -a would print a warning and show the
		// password in the process list.
		cmd.Env = append(cmd.Env, "REDISCLI_AUTH="+pw)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", commandLine(cli, args), err, tail(string(out)))
	}
}

// clusterSettled is nil once n's CLUSTER INFO says the cluster is ok and n
// knows want nodes: redis-cli returns when the configuration is
// consistent, but gossip may still be introducing nodes to each other.
func clusterSettled(ctx context.Context, n *Redis, want int) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	text, err := n.Client().ClusterInfo(ctx).Result()
	if err != nil {
		return fmt.Errorf("CLUSTER INFO on %s: %w", n.Addr(), err)
	}
	state, err := infoField(text, "cluster_state")
	if err != nil {
		return fmt.Errorf("CLUSTER INFO on %s: %w", n.Addr(), err)
	}
	known, err := infoField(text, "cluster_known_nodes")
	if err != nil {
		return fmt.Errorf("CLUSTER INFO on %s: %w", n.Addr(), err)
	}
	if state != "ok" || known != strconv.Itoa(want) {
		return fmt.Errorf("%s: cluster_state %s, %s known nodes", n.Addr(), state, known)
	}
	return nil
}

// clusterReplicasSeen is nil once n's CLUSTER NODES flags want nodes as
// replicas: a node learns of another's role by gossip, after it knows the
// node.
func clusterReplicasSeen(ctx context.Context, n *Redis, want int) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	text, err := n.Client().ClusterNodes(ctx).Result()
	if err != nil {
		return fmt.Errorf("CLUSTER NODES on %s: %w", n.Addr(), err)
	}
	seen := 0
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		for _, flag := range strings.Split(f[2], ",") {
			if flag == "slave" || flag == "replica" {
				seen++
			}
		}
	}
	if seen != want {
		return fmt.Errorf("%s: CLUSTER NODES shows %d replicas, want %d", n.Addr(), seen, want)
	}
	return nil
}

// isReplica asks n's INFO replication for its role.
func isReplica(t testing.TB, n *Redis) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	text, err := n.Client().Info(ctx, "replication").Result()
	if err != nil {
		t.Fatalf("INFO replication on %s: %v", n.Addr(), err)
	}
	role, err := infoField(text, "role")
	if err != nil {
		t.Fatalf("INFO replication on %s: %v", n.Addr(), err)
	}
	return role == "slave"
}

// replicaLinkUp is nil once the replica n is in sync with its master.
func replicaLinkUp(ctx context.Context, n *Redis) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	text, err := n.Client().Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("INFO replication on %s: %w", n.Addr(), err)
	}
	link, err := infoField(text, "master_link_status")
	if err != nil {
		return fmt.Errorf("INFO replication on %s: %w", n.Addr(), err)
	}
	if link != "up" {
		return fmt.Errorf("%s: master_link_status %s", n.Addr(), link)
	}
	return nil
}
