package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/common/config"

	"github.com/redwire/redwire/sources/redis"
)

const (
	// Retry pace while no sentinel answers (and for a lost subscription).
	sentinelMinBackoff = 500 * time.Millisecond
	sentinelMaxBackoff = 30 * time.Second
)

// Sentinel follows one master name through its sentinels: it resolves the
// master (SENTINEL get-master-addr-by-name), its replicas and its peer
// sentinels, asking each sentinel in turn until one answers, every
// refresh interval; and it listens on every sentinel's Pub/Sub for
// +switch-master so a failover re-points the master target at once
// instead of at the next interval.
type Sentinel struct {
	cfg      SentinelConfig
	interval time.Duration
	m        *SentinelMetrics
	log      *slog.Logger
	nudge    chan string // "" = look again; else a +switch-master address

	mu      sync.Mutex
	master  string   // current master host:port; "" until resolved
	epoch   int64    // config epoch of master: older answers are stale
	peers   []string // sentinels learnt from SENTINEL sentinels
	sent    []redis.TargetConfig
	hasSent bool
}

// NewSentinel prepares a discoverer for one sentinels entry; it does not
// connect. defaultRefresh applies when the entry has no refresh_interval.
func NewSentinel(cfg SentinelConfig, defaultRefresh time.Duration, m *SentinelMetrics, log *slog.Logger) (*Sentinel, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sentinels[%s]: %w", cfg.MasterName, err)
	}
	if cfg.SentinelPasswordFile != "" {
		if _, err := os.Stat(cfg.SentinelPasswordFile); err != nil {
			return nil, fmt.Errorf("sentinels[%s]: sentinel_password_file: %w", cfg.MasterName, err)
		}
	}
	if _, err := config.NewTLSConfig(&cfg.TLS); err != nil && tlsScheme(cfg.scheme()) {
		return nil, fmt.Errorf("sentinels[%s]: tls: %w", cfg.MasterName, err)
	}
	interval := time.Duration(cfg.RefreshInterval)
	if interval <= 0 {
		interval = defaultRefresh
	}
	m.up.WithLabelValues(cfg.MasterName).Set(0)
	m.failovers.WithLabelValues(cfg.MasterName)
	return &Sentinel{
		cfg: cfg, interval: interval, m: m,
		log:   log.With("master_name", cfg.MasterName),
		nudge: make(chan string, 1),
	}, nil
}

// Source implements Discoverer.
func (s *Sentinel) Source() string { return "sentinel:" + s.cfg.MasterName }

// Refresh asks for a new resolution now; it never blocks.
func (s *Sentinel) Refresh() {
	select {
	case s.nudge <- "":
	default:
	}
}

// Master is where the master is now, "" if not resolved yet.
func (s *Sentinel) Master() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.master
}

// Run implements Discoverer.
func (s *Sentinel) Run(ctx context.Context, up chan<- Group) {
	// Subscribe to every sentinel known, the configured ones and the
	// peers they name: a failover is announced by all of them, and any
	// one that is reachable is enough.
	var wg sync.WaitGroup
	defer wg.Wait()
	subscribed := map[string]bool{}
	subscribeAll := func() {
		for _, a := range s.sentinelList() {
			if !subscribed[a] {
				subscribed[a] = true
				wg.Go(func() { s.subscribe(ctx, a) })
			}
		}
	}
	subscribeAll()

	bo := newBackoff()
	failing := false
	for {
		wait := s.interval
		if err := s.resolve(ctx, up); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.m.up.WithLabelValues(s.cfg.MasterName).Set(0)
			if !failing {
				s.log.Error("no sentinel could resolve the master; retrying with backoff, still scraping the last known servers",
					"sentinels", s.sentinelList(), "err", err)
				failing = true
			}
			wait = bo.NextBackOff()
		} else {
			s.m.up.WithLabelValues(s.cfg.MasterName).Set(1)
			subscribeAll()
			if failing {
				s.log.Info("sentinels answer again", "master", s.Master())
				failing = false
			}
			bo.Reset()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case addr := <-s.nudge:
			t.Stop()
			if addr != "" {
				s.switchMaster(ctx, up, addr)
			}
		case <-t.C:
		}
	}
}

// switchMaster applies a +switch-master announcement straight away: the
// new address is in the message, so the master target is re-pointed
// before asking for replicas (which the loop does next).
func (s *Sentinel) switchMaster(ctx context.Context, up chan<- Group, addr string) {
	s.mu.Lock()
	// A failover always raises the config epoch: answers from sentinels
	// that have not heard of this one yet carry a lower one.
	s.epoch++
	s.setMaster(addr)
	s.mu.Unlock()
	s.send(ctx, up)
}

// resolve asks every sentinel at once where the master, its replicas and
// the other sentinels are, believes the one with the highest config
// epoch, and sends the group if anything changed. Asking one sentinel is
// not enough: right after a failover a sentinel that has not heard of it
// yet still names the old master, with the old epoch.
func (s *Sentinel) resolve(ctx context.Context, up chan<- Group) error {
	list := s.sentinelList()
	answers := make([]answer, len(list))
	var wg sync.WaitGroup
	for i, a := range list {
		wg.Go(func() { answers[i] = s.ask(ctx, a) })
	}
	wg.Wait()
	var best *answer
	var errs []error
	for i := range answers {
		a := &answers[i]
		if a.err != nil {
			errs = append(errs, fmt.Errorf("sentinel %s: %w", a.from, a.err))
			continue
		}
		if best == nil || a.epoch > best.epoch {
			best = a
		}
	}
	if best == nil {
		return errors.Join(errs...)
	}
	s.mu.Lock()
	if best.epoch < s.epoch {
		// Every sentinel that answered lags behind a failover already
		// announced: keep the announced master until they catch up.
		s.mu.Unlock()
		return nil
	}
	s.epoch = best.epoch
	s.setMaster(best.master)
	s.peers = best.peers
	s.mu.Unlock()
	// Up before the group goes out: whoever acts on the group sees a
	// discovery that works.
	s.m.up.WithLabelValues(s.cfg.MasterName).Set(1)
	s.sendWith(ctx, up, best.replicas)
	return nil
}

// setMaster records the master's address and counts a failover when a
// known address changes; mu must be held.
func (s *Sentinel) setMaster(addr string) {
	if addr == s.master {
		return
	}
	if s.master != "" {
		s.m.failovers.WithLabelValues(s.cfg.MasterName).Inc()
		s.m.addressInfo.DeleteLabelValues(s.cfg.MasterName, s.master)
		s.log.Warn("master moved (failover)", "from", s.master, "to", addr)
	} else {
		s.log.Info("master resolved", "address", addr)
	}
	s.master = addr
	s.m.addressInfo.WithLabelValues(s.cfg.MasterName, addr).Set(1)
}

// sentinelList is every sentinel worth asking: the configured ones first,
// then peers they told us about (a configured one may be gone for good).
func (s *Sentinel) sentinelList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sentinelListLocked()
}

func (s *Sentinel) send(ctx context.Context, up chan<- Group) {
	s.mu.Lock()
	var replicas []string
	for _, t := range s.sent {
		if t.Labels[LabelSentinelRole] == "replica" {
			replicas = append(replicas, strings.TrimPrefix(t.Addr, s.cfg.scheme()+"://"))
		}
	}
	s.mu.Unlock()
	s.sendWith(ctx, up, replicas)
}

// sendWith builds the group from the current master and peers plus
// replicas, and sends it if it differs from the last one sent.
func (s *Sentinel) sendWith(ctx context.Context, up chan<- Group, replicas []string) {
	s.mu.Lock()
	var ts []redis.TargetConfig
	if s.cfg.monitors(MonitorMaster) && s.master != "" {
		ts = append(ts, s.cfg.serverTarget(s.cfg.MasterName, "master", s.master))
	}
	if s.cfg.monitors(MonitorReplicas) {
		for _, r := range replicas {
			if r != s.master { // just promoted; sentinels may list it a moment longer
				ts = append(ts, s.cfg.serverTarget("", "replica", r))
			}
		}
	}
	if s.cfg.monitors(MonitorSentinels) {
		seen := map[string]bool{}
		for _, a := range s.sentinelListLocked() {
			if !seen[a] {
				seen[a] = true
				ts = append(ts, s.cfg.sentinelTarget(a))
			}
		}
	}
	same := s.hasSent && slices.EqualFunc(ts, s.sent, func(a, b redis.TargetConfig) bool {
		return a.Name == b.Name && a.Addr == b.Addr && a.Labels[LabelSentinelRole] == b.Labels[LabelSentinelRole]
	})
	s.sent, s.hasSent = ts, true
	s.mu.Unlock()
	if same {
		return
	}
	select {
	case up <- Group{Source: s.Source(), Targets: ts, Refresh: s.Refresh}:
	case <-ctx.Done():
	}
}

// sentinelListLocked is sentinelList with mu held.
func (s *Sentinel) sentinelListLocked() []string {
	var out []string
	for _, a := range s.cfg.Addrs {
		u, _ := sentinelURL(a)
		out = append(out, u.Host)
	}
	for _, p := range s.peers {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func newBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = sentinelMinBackoff
	bo.MaxInterval = sentinelMaxBackoff
	bo.MaxElapsedTime = 0
	return bo
}
