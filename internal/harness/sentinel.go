package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// SentinelDownAfter is the down-after-milliseconds StartSentinel sets: a
// second, so tests that stop a monitored server see it flagged s_down
// quickly.
const SentinelDownAfter = 1000

// StartSentinel starts redis-sentinel on a free loopback port, monitoring
// the master at masterAddr ("127.0.0.1:PORT") under the name master with a
// quorum of 1, and returns once it answers PING. It is a *Redis: Addr,
// URL, Client, Stop, Kill and Start work as for a server. WithPassword
// sets the sentinel's own requirepass; WithArgs appends command-line
// arguments after the config file.
//
// The sentinel learns the master's replicas from the master's INFO, once
// at connection and then every 10 seconds: start it after the replicas
// have connected (or wait up to that long for them to appear).
func StartSentinel(t testing.TB, master, masterAddr string, opts ...RedisOption) *Redis {
	t.Helper()
	return StartSentinelOn(t, FreePort(t), master, masterAddr, opts...)
}

// StartSentinelOn is StartSentinel on a given port, for tests that point
// the agent at a sentinel before it exists. Should the port be taken by
// then, the sentinel moves to a free one and the test sees it fail.
func StartSentinelOn(t testing.TB, port int, master, masterAddr string, opts ...RedisOption) *Redis {
	t.Helper()
	r := &Redis{srv: newServer(t, "redis-sentinel", "redis-sentinel")}
	for _, o := range opts {
		o(&r.cfg)
	}
	sc := &sentinelConfig{path: filepath.Join(r.srv.dir, "sentinel.conf"), master: master, masterAddr: masterAddr, extra: r.cfg.sentinel}
	r.srv.args = func(port int) []string {
		if err := sc.write(port, r.srv.dir); err != nil {
			t.Fatalf("redis-sentinel: %v", err)
		}
		args := []string{sc.path}
		if r.cfg.password != "" {
			args = append(args, "--requirepass", r.cfg.password)
		}
		return append(args, r.cfg.args...)
	}
	r.srv.probe = r.probe // a sentinel answers PING and INFO server like a server
	r.srv.start(port)
	r.client = redis.NewClient(r.options())
	t.Cleanup(func() { r.client.Close() })
	return r
}

// sentinelConfig is the config file a sentinel needs: it refuses to start
// without one it can rewrite, and it rewrites it with what it learns
// (replicas, peers, epochs).
type sentinelConfig struct {
	path, master, masterAddr string
	extra                    []string // lines after the monitor line
	port                     int      // the port the file was written for; 0 before the first write
}

// write (re)writes the file when the port changes: on the first start and
// when a port clash moves a first start to a fresh port. A restart on the
// same port keeps the file, and with it what the sentinel had learnt, as
// a real restart would.
func (c *sentinelConfig) write(port int, dir string) error {
	if c.port == port {
		return nil
	}
	host, mport, err := net.SplitHostPort(c.masterAddr)
	if err != nil {
		return fmt.Errorf("master address %q: %w", c.masterAddr, err)
	}
	conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
		"sentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s %d\n",
		port, strconv.Quote(dir), c.master, host, mport, c.master, SentinelDownAfter)
	for _, l := range c.extra {
		conf += l + "\n"
	}
	if err := os.WriteFile(c.path, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write config %s: %w", c.path, err)
	}
	c.port = port
	return nil
}

// WithSentinelConfig adds a line to the config file of a sentinel, after
// its monitor line: "sentinel failover-timeout mymaster 2000".
func WithSentinelConfig(line string) RedisOption {
	return func(c *redisConfig) { c.sentinel = append(c.sentinel, line) }
}

// SentinelGroup is a master, its replicas and the sentinels watching them.
type SentinelGroup struct {
	Name      string
	Master    *Redis
	Replicas  []*Redis
	Sentinels []*Redis
}

// StartSentinelGroup starts a master, replicas replicas of it and
// sentinels sentinels monitoring it under name, and returns once every
// replica is in sync and every sentinel knows all replicas and all other
// sentinels: the state a failover test needs to start from.
func StartSentinelGroup(t testing.TB, name string, replicas, sentinels int) *SentinelGroup {
	t.Helper()
	g := &SentinelGroup{Name: name, Master: StartRedis(t)}
	host, port, _ := net.SplitHostPort(g.Master.Addr())
	for range replicas {
		g.Replicas = append(g.Replicas, StartRedis(t, WithArgs("--replicaof", host, port)))
	}
	WaitFor(t, startTimeout, fmt.Sprintf("%d replicas online on the master", replicas), func() (bool, error) {
		info, err := g.Master.Client().Info(context.Background(), "replication").Result()
		if err != nil {
			return false, err
		}
		return strings.Count(info, "state=online") == replicas, nil
	})
	for range sentinels {
		// With every sentinel able to call odown alone (quorum 1), two
		// may start an election at once and split the vote; the retry
		// waits failover-timeout (3 minutes by default). Two seconds
		// keeps a failover test about failovers, not about that wait.
		g.Sentinels = append(g.Sentinels, StartSentinel(t, name, g.Master.Addr(),
			WithSentinelConfig(fmt.Sprintf("sentinel failover-timeout %s 2000", name))))
	}
	WaitFor(t, startTimeout, "every sentinel knows every replica and peer", func() (bool, error) {
		for _, s := range g.Sentinels {
			c := redis.NewSentinelClient(s.options())
			m, err := c.Master(context.Background(), name).Result()
			c.Close()
			if err != nil {
				return false, err
			}
			if m["num-slaves"] != strconv.Itoa(replicas) || m["num-other-sentinels"] != strconv.Itoa(sentinels-1) {
				return false, fmt.Errorf("sentinel %s: %s replicas, %s other sentinels", s.Addr(), m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return true, nil
	})
	return g
}

// MasterAddr asks the first sentinel that answers where the master is.
func (g *SentinelGroup) MasterAddr(ctx context.Context) (string, error) {
	var err error
	for _, s := range g.Sentinels {
		c := redis.NewSentinelClient(s.options())
		var hp []string
		hp, err = c.GetMasterAddrByName(ctx, g.Name).Result()
		c.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
	}
	return "", err
}
