package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/sources/redis"
)

const (
	// attemptTimeout bounds one CLUSTER NODES attempt, dial included, so
	// a wedged node delays discovery by this much and no more.
	attemptTimeout = 5 * time.Second
	// retryInitial and maxRetryWait bound the backoff while no node
	// answers; it never waits longer than the refresh interval either.
	retryInitial = 500 * time.Millisecond
	maxRetryWait = time.Minute
)

// Cluster discovers the nodes of one Redis Cluster by reading CLUSTER
// NODES from a seed, or from a node found earlier when no seed answers.
type Cluster struct {
	cfg     ClusterConfig
	source  string
	refresh time.Duration
	scheme  string        // of the seeds, for every node's Addr
	user    *url.Userinfo // of the seeds, likewise
	log     *slog.Logger
	m       clusterMetrics
	nudge   chan struct{} // capacity 1: a pending Refresh

	// Owned by Run.
	known []string // host:port of the last good view's targets

	mu    sync.Mutex
	nodes []redis.ClusterNode // last good CLUSTER NODES
}

// NewCluster prepares discovery for cfg; it does not connect. The cluster
// is read every cfg.RefreshInterval, or every defaultRefresh when that is
// 0. Its metrics are registered on reg (shared by every cluster: each one
// has its own cluster label, so names must be unique).
func NewCluster(cfg ClusterConfig, defaultRefresh time.Duration, reg prometheus.Registerer, log *slog.Logger) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	refresh := time.Duration(cfg.RefreshInterval)
	if refresh == 0 {
		refresh = defaultRefresh
	}
	if refresh <= 0 {
		return nil, &ClusterConfigError{Cluster: cfg.Name, Field: "refresh_interval", Err: fmt.Errorf("%v: must be positive", refresh)}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newClusterMetrics(reg, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cfg.Name, err)
	}
	u, _ := url.Parse(cfg.Seeds[0]) // Validate parsed it
	return &Cluster{
		cfg:     cfg,
		source:  "cluster:" + cfg.Name,
		refresh: refresh,
		scheme:  u.Scheme,
		user:    u.User,
		log:     log.With("cluster", cfg.Name),
		m:       m,
		nudge:   make(chan struct{}, 1),
	}, nil
}

// Refresh asks Run to read CLUSTER NODES now rather than at the next
// interval. It never blocks; nudges while one is pending merge, and while
// no node answers they wait for the backoff, since then every target's
// scrape fails and each would nudge.
func (c *Cluster) Refresh() {
	select {
	case c.nudge <- struct{}{}:
	default:
	}
}

// Nodes is the last CLUSTER NODES reply that was accepted, nil before the
// first. A group that changed the targets has been sent by the time Nodes
// shows the reply it came from.
func (c *Cluster) Nodes() []redis.ClusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// Run sends the cluster's group at the first answer and whenever the set
// of node addresses changes, until ctx is done. When no node answers it
// logs that once, retries with backoff, and sends nothing: the last good
// group stays. Run must not be called twice at once.
func (c *Cluster) Run(ctx context.Context, up chan<- Group) {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(min(retryInitial, c.refresh)),
		backoff.WithMaxInterval(min(maxRetryWait, c.refresh)),
		backoff.WithMaxElapsedTime(0),
	)
	var sent []string // Addrs of the last group sent, sorted
	first, failing := true, false
	for {
		// This attempt answers any nudge made before it.
		select {
		case <-c.nudge:
		default:
		}
		nodes, err := c.discover(ctx)
		wait := c.refresh
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			c.m.errors.Inc()
			if !failing {
				c.log.Error("no node of the cluster answers CLUSTER NODES; keeping the last targets",
					"seeds", c.cfg.redactedSeeds(), "err", err)
				failing = true
			}
			wait = bo.NextBackOff()
		default:
			if failing {
				c.log.Info("the cluster answers CLUSTER NODES again")
				failing = false
			}
			bo.Reset()
			targets := c.targets(nodes)
			addrs := make([]string, len(targets))
			for i, t := range targets {
				addrs[i] = t.Addr
			}
			if first || !slices.Equal(addrs, sent) {
				select {
				case up <- Group{Source: c.source, Targets: targets, Refresh: c.Refresh}:
				case <-ctx.Done():
					return
				}
				if !first {
					c.log.Info("cluster nodes changed", "targets", len(targets))
				}
				first, sent = false, addrs
			}
			c.accept(nodes, targets)
		}
		if !c.sleep(ctx, wait, !failing) {
			return
		}
	}
}

// sleep waits d, or less if nudgeable and Refresh is called; it reports
// false once ctx is done.
func (c *Cluster) sleep(ctx context.Context, d time.Duration, nudgeable bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	var nudge <-chan struct{}
	if nudgeable {
		nudge = c.nudge
	}
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
	case <-nudge:
	}
	return true
}

// discover asks the seeds, then the nodes of the last good view, in turn,
// for CLUSTER NODES; the first acceptable answer wins. The error joins
// every attempt's, each naming the address asked.
func (c *Cluster) discover(ctx context.Context) ([]redis.ClusterNode, error) {
	candidates := slices.Clone(c.cfg.Seeds)
	seen := map[string]bool{}
	for _, s := range c.cfg.Seeds {
		t := redis.TargetConfig{Addr: s}
		seen[t.Instance()] = true
	}
	for _, hp := range c.known {
		if !seen[hp] {
			candidates = append(candidates, c.nodeURL(hp))
		}
	}
	var errs []error
	for _, addr := range candidates {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		nodes, err := redis.ClusterNodes(actx, redis.TargetConfig{
			Addr: addr, Username: c.cfg.Username, Password: c.cfg.Password,
			PasswordFile: c.cfg.PasswordFile, TLS: c.cfg.TLS,
		})
		cancel()
		if err == nil {
			if err = usableView(nodes); err != nil {
				err = fmt.Errorf("%s: %w", redis.RedactAddr(addr), err)
			}
		}
		if err == nil {
			return nodes, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.log.Debug("CLUSTER NODES failed", "err", err)
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// usableView rejects the answer of a node that is in no cluster (fresh,
// or reset): it knows only itself, and taking its word would drop every
// other target.
func usableView(nodes []redis.ClusterNode) error {
	for _, n := range nodes {
		if n.Slots > 0 {
			return nil
		}
	}
	return errors.New("no node owns a hash slot: not (yet) part of a configured cluster")
}

// targets turns a view into one target per node with a client address,
// sorted by Addr. Failed nodes stay (their redis_up turning 0 is the
// signal); nodes in handshake are not members yet, and nodes without an
// address a URL can carry cannot be reached. A node that rejoined under a
// new ID while its old entry lingers appears twice with one address; it
// is one target.
//
// Invariant: targets differ only in Addr, so comparing the sorted Addrs
// compares the groups.
func (c *Cluster) targets(nodes []redis.ClusterNode) []redis.TargetConfig {
	var out []redis.TargetConfig
	seen := map[string]bool{}
	for _, n := range nodes {
		if !nodeHasHost(n.Addr) || n.HasFlag("handshake") || n.HasFlag("noaddr") || seen[n.Addr] {
			continue
		}
		seen[n.Addr] = true
		labels := map[string]string{ClusterLabel: c.cfg.Name} // Validate keeps it out of cfg.Labels
		maps.Copy(labels, c.cfg.Labels)
		t := redis.TargetConfig{
			Addr:              c.nodeURL(n.Addr),
			Username:          c.cfg.Username,
			Password:          c.cfg.Password,
			PasswordFile:      c.cfg.PasswordFile,
			TLS:               c.cfg.TLS,
			Labels:            labels,
			SoftFailThreshold: c.cfg.SoftFailThreshold,
		}
		// A host no URL can carry ("/", "?" in it) is no node to scrape.
		if t.Validate() != nil || t.Instance() != n.Addr {
			continue
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b redis.TargetConfig) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// nodeHasHost reports whether addr is host:port with a host.
func nodeHasHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && host != ""
}

// nodeURL is the seeds' scheme and userinfo with the node's host:port.
func (c *Cluster) nodeURL(hostPort string) string {
	return (&url.URL{Scheme: c.scheme, User: c.user, Host: hostPort}).String()
}

// accept records a good view: Nodes, the fallback candidates, metrics.
func (c *Cluster) accept(nodes []redis.ClusterNode, targets []redis.TargetConfig) {
	c.known = c.known[:0]
	for _, t := range targets {
		c.known = append(c.known, t.Instance())
	}
	var masters, replicas int
	for _, n := range nodes {
		switch {
		case n.HasFlag("handshake"):
		case n.Master:
			masters++
		case n.Replica:
			replicas++
		}
	}
	c.m.nodes.WithLabelValues(c.cfg.Name, "master").Set(float64(masters))
	c.m.nodes.WithLabelValues(c.cfg.Name, "replica").Set(float64(replicas))
	c.m.lastSuccess.WithLabelValues(c.cfg.Name).SetToCurrentTime()
	c.mu.Lock()
	c.nodes = nodes
	c.mu.Unlock()
}

// Source implements Discoverer.
func (c *Cluster) Source() string { return c.source }
