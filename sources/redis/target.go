// Package redis collects samples from one Redis server per Target.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/labels"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/redwire/redwire/sample"
)

// Target polls one Redis server. Its single pooled connection is reused
// across scrapes and re-dialled when it breaks.
type Target struct {
	name   string
	base   labels.Labels
	client *goredis.Client

	mu       sync.Mutex // serialises scrapes; a slow one must not overlap the next
	labels   sample.LabelCache
	infoAll  bool // false once the server refused INFO ALL
	softFail int  // consecutive failures before redis_up turns 0

	// health guards the soft state apart from mu, which a scrape holds
	// until its deadline: Up, ConsecutiveFailures, LastError and
	// LastSuccess serve the HTTP API and must answer while the server is
	// slow.
	health      sync.Mutex
	failures    int       // consecutive failed scrapes so far
	everUp      bool      // a scrape has succeeded since start
	lastErr     error     // the last scrape's; nil if it succeeded
	lastSuccess time.Time // the stamp of the last successful scrape

	collectors []collector
	optional   optionalCommands
}

// ConnBufferSize sizes each connection's read and write buffers. go-redis
// defaults to 32 KiB each, 64 KiB per target held for the agent's life;
// the commands sent are a few dozen bytes and the largest common reply,
// INFO ALL, is under 10 KB. A bulk reply larger than the buffer is read
// straight into its own slice, so a small buffer only costs a read call
// more for big replies (CLUSTER NODES of a large cluster), not a failure.
const ConnBufferSize = 4 << 10

// DefaultSoftFailThreshold is how many consecutive failed scrapes it takes
// for redis_up to turn 0: a failover briefly refuses connections, and one
// refused scrape should not page anyone.
const DefaultSoftFailThreshold = 3

// NewTarget prepares a target; it does not connect. Samples carry
// instance and job labels (job defaults to "redis"), the target's labels,
// and the external labels where a target label does not already set them.
func NewTarget(cfg TargetConfig, external map[string]string) (*Target, error) {
	softFail := cfg.SoftFailThreshold
	if softFail <= 0 {
		softFail = DefaultSoftFailThreshold
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("target %s: %w", cfg.Instance(), err)
	}
	ep, _ := cfg.endpoint()
	opts := &goredis.Options{
		Network:  ep.network,
		Addr:     ep.addr,
		DB:       ep.db,
		Protocol: 2, // RESP2 works on every Redis and every managed service
		// One connection per target, no client-side retries: a failed
		// scrape must show as failed, and the next scrape is the retry.
		PoolSize:        1,
		MaxIdleConns:    1,
		ReadBufferSize:  ConnBufferSize,
		WriteBufferSize: ConnBufferSize,
		MaxRetries:      -1,
		DialerRetries:   1,
		DisableIdentity: true, // CLIENT SETINFO would add errors to errorstats on Redis < 7.2
		// Deadlines come from the scrape context alone: go-redis's default
		// 3 s read timeout would otherwise cut a scrape_timeout above it
		// short. Every call here carries a context with a deadline.
		ContextTimeoutEnabled:    true,
		ReadTimeout:              -1,
		WriteTimeout:             -1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		CredentialsProviderContext: func(context.Context) (string, string, error) {
			return cfg.credentials(ep)
		},
	}
	opts.Dialer = Dialer(nil)
	if ep.tls {
		// Fail at start on unreadable files; then rebuild the TLS config
		// from the files on every dial, so a rotated CA, certificate or key
		// is picked up at the next reconnect without a restart.
		if _, err := config.NewTLSConfig(&cfg.TLS); err != nil {
			return nil, fmt.Errorf("target %s: tls: %w", cfg.Instance(), err)
		}
		opts.Dialer = Dialer(&cfg.TLS)
	}

	b := labels.NewBuilder(labels.EmptyLabels())
	for k, v := range external {
		b.Set(k, v)
	}
	b.Set("job", "redis")
	b.Set("instance", cfg.Instance())
	for k, v := range cfg.Labels {
		b.Set(k, v)
	}
	return &Target{
		name:     cfg.Instance(),
		base:     b.Labels(),
		client:   goredis.NewClient(opts),
		infoAll:  true,
		softFail: softFail,
		collectors: []collector{
			&topology{},
			replicationLag{},
			&configInfo{},
			newSlowlog(cfg.SlowlogCommands),
			latencyMonitor{},
			clusterInfo{},
			sentinel{},
		},
	}, nil
}

// Name is the target's instance label.
func (t *Target) Name() string { return t.name }

// Scrape polls the server once. It always returns a scrape: on failure it
// holds redis_up, the raw redwire_target_scrape_success 0 and the scrape
// duration, and the error (a *ScrapeError naming the phase) says what
// failed.
//
// redis_up is soft: it stays 1 until softFail consecutive scrapes have
// failed, so a failover shorter than that raises no alert. A target that
// has never answered since start is down at once: there is nothing to
// ride over, and a wrong address should show immediately.
func (t *Target) Scrape(ctx context.Context, now time.Time) (*sample.Scrape, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sc := t.labels.NewScrape(now, t.base)
	err := t.collect(ctx, sc)
	success := 1.0
	t.health.Lock()
	if err != nil {
		success = 0
		t.failures++
		err = &ScrapeError{Target: t.name, Phase: phaseOf(err), Err: err}
	} else {
		t.failures, t.everUp, t.lastSuccess = 0, true, now
	}
	t.lastErr = err
	up := t.up()
	t.health.Unlock()
	sc.Gauge("redis_up", "Whether Redis answers: 0 only after soft_fail_threshold consecutive failed scrapes (or before the first success).", boolFloat(up))
	sc.Gauge("redwire_target_scrape_success", "Whether this very scrape succeeded (raw, without the soft-failure window of redis_up).", success)
	sc.Gauge("redis_exporter_last_scrape_duration_seconds", "How long the last scrape of this target took.",
		time.Since(now).Seconds())
	return sc, err
}

// up is the soft state; health must be held.
func (t *Target) up() bool { return t.everUp && t.failures < t.softFail }

// Up reports the soft state after the last scrape, as redis_up shows it.
// It does not wait for a scrape in flight.
func (t *Target) Up() bool {
	t.health.Lock()
	defer t.health.Unlock()
	return t.up()
}

// ConsecutiveFailures is the number of failed scrapes since the last
// success. It does not wait for a scrape in flight.
func (t *Target) ConsecutiveFailures() int {
	t.health.Lock()
	defer t.health.Unlock()
	return t.failures
}

// LastError is the error of the last scrape, nil if it succeeded. It
// does not wait for a scrape in flight.
func (t *Target) LastError() error {
	t.health.Lock()
	defer t.health.Unlock()
	return t.lastErr
}

// LastSuccess is when the last successful scrape was taken (its samples'
// stamp); zero before the first. It does not wait for a scrape in flight.
func (t *Target) LastSuccess() time.Time {
	t.health.Lock()
	defer t.health.Unlock()
	return t.lastSuccess
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (t *Target) collect(ctx context.Context, sc *sample.Scrape) error {
	start := time.Now()
	raw, err := t.info(ctx)
	if err != nil {
		return err
	}
	// How long Redis took to answer INFO, network included: a server
	// whose event loop is busy (big keys, slow scripts) shows here first.
	// A scrape that had to reconnect includes the dial.
	sc.Gauge("redis_info_round_trip_seconds", "Round trip of the INFO command, network included. A redwire extra.",
		time.Since(start).Seconds())
	info, err := ParseInfo(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", errParse, err)
	}
	EmitInfo(sc, info)
	sess := &session{client: t.client, info: info, optional: &t.optional}
	for _, c := range t.collectors {
		c.collect(ctx, sess, sc)
	}
	return nil
}

// info runs INFO ALL, or plain INFO on servers that refuse ALL (Redis < 2.8
// and some proxies), remembering the answer so the refusal costs one round
// trip only once.
func (t *Target) info(ctx context.Context) (string, error) {
	if t.infoAll {
		raw, err := t.client.Info(ctx, "all").Result()
		if err == nil {
			return raw, nil
		}
		if !isRefused(err) {
			return "", fmt.Errorf("INFO ALL: %w", err)
		}
		t.infoAll = false
	}
	raw, err := t.client.Info(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("INFO: %w", err)
	}
	return raw, nil
}

// isRefused reports whether err is the server refusing a command or
// argument, as opposed to a connection or auth failure.
func isRefused(err error) bool {
	var re goredis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "ERR") && !strings.Contains(msg, "AUTH") && !strings.Contains(msg, "NOAUTH")
}

// Close releases the connection.
func (t *Target) Close() error { return t.client.Close() }

// Retarget points the target at another address while keeping what makes
// it the same logical target: its name, labels and soft-failure state. It
// is how the logical master of a Sentinel follows a failover without a gap
// in its series and without a redis_up 0 for a switch shorter than the
// soft-failure window. What was learnt about the old server (refused
// commands, slow log position, topology baseline) is forgotten: the new
// server is another process, and its first scrape is a new baseline
// rather than a restart. cfg must have the same instance as the target.
func (t *Target) Retarget(cfg TargetConfig, external map[string]string) error {
	if cfg.Instance() != t.name {
		return fmt.Errorf("target %s: retarget to instance %s: only the address may change", t.name, cfg.Instance())
	}
	fresh, err := NewTarget(cfg, external)
	if err != nil {
		return err
	}
	t.mu.Lock()
	old := t.client
	t.client, t.base, t.collectors = fresh.client, fresh.base, fresh.collectors
	t.infoAll, t.optional = true, optionalCommands{}
	t.mu.Unlock()
	return old.Close()
}
