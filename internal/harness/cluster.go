package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	if masters < 3 {
		t.Fatalf("StartRedisCluster: %d masters; redis-cli --cluster create needs at least 3", masters)
	}
	cli := lookBinary(t, "redis-cli", "redis-tools")
	nodes := make([]*Redis, masters)
	for i := range nodes {
		conf := filepath.Join(t.TempDir(), "nodes.conf")
		args := WithArgs("--cluster-enabled", "yes", "--cluster-config-file", conf,
			"--cluster-port", strconv.Itoa(FreePort(t)))
		nodes[i] = StartRedis(t, append(append([]RedisOption{}, opts...), args)...)
	}

	cmdArgs := []string{"--cluster", "create"}
	for _, n := range nodes {
		cmdArgs = append(cmdArgs, n.Addr())
	}
	cmdArgs = append(cmdArgs, "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, cmdArgs...)
	cmd.Env = os.Environ()
	if pw := nodes[0].cfg.password; pw != "" {
		// Through the environment: -a would print a warning and show the
		// password in the process list.
		cmd.Env = append(cmd.Env, "REDISCLI_AUTH="+pw)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", commandLine(cli, cmdArgs), err, tail(string(out)))
	}

	WaitFor(t, startTimeout, fmt.Sprintf("cluster_state:ok and %d known nodes on every node", masters), func() (bool, error) {
		for _, n := range nodes {
			if err := clusterSettled(context.Background(), n, masters); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	return nodes
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
