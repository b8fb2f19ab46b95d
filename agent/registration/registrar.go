package registration

// The registrar: one session after another, each a lease kept alive and
// the agent's key under it. See doc.go for what registration is for.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/internal/pause"
)

const (
	// regMinBackoff and regMaxBackoff bound the wait between attempts
	// while etcd is unreachable: soon enough to re-register quickly after
	// an etcd restart, rare enough not to hammer it when it is gone.
	regMinBackoff = 500 * time.Millisecond
	regMaxBackoff = 15 * time.Second
	// regRevokeTimeout bounds the graceful deregistration, so a dead etcd
	// delays the agent's shutdown by at most this long.
	regRevokeTimeout = 2 * time.Second
)

// State is the value of the agent's key, as JSON: what a central
// inventory needs to find the agent and judge its health.
type State struct {
	// ListenURL is where the agent's /metrics and health endpoints are.
	ListenURL string `json:"listen_url"`
	Version   string `json:"version"`
	// AgentID is the key's last segment; the registrar sets it.
	AgentID string `json:"agent_id"`
	// Targets are the instances scraped; the registrar sorts them, so the
	// order they are listed in does not count as a change.
	Targets []string `json:"targets"`
	// Degraded is true while any endpoint is down and the agent buffers.
	Degraded     bool      `json:"degraded"`
	BacklogBytes int64     `json:"backlog_bytes"`
	StartedAt    time.Time `json:"started_at"`
}

// errLeaseLost ends a session whose lease etcd answered a keepalive for
// with TTL 0: it expired (no keepalive reached etcd for a whole
// lease_ttl), was revoked, or etcd restarted without it.
var errLeaseLost = errors.New("lease lost: etcd no longer knows it (expired or revoked)")

// Registrar keeps the agent's key in etcd. It is built by New and driven
// by one goroutine calling Run; Changed may be called from any goroutine.
//
// Invariant: up is 1 only while a session holds a granted lease that
// etcd's last keepalive answer said is alive, and the key was last
// written under it.
type Registrar struct {
	cfg   *EtcdConfig
	state func() State
	log   *slog.Logger
	key   string
	nudge chan struct{} // capacity 1: changes pending, coalesced
	up    prometheus.Gauge
	errs  prometheus.Counter

	// Owned by Run's goroutine.
	last     string // the JSON last written under the current lease
	logged   regLogState
	conflict bool // the key was last found under another lease
}

// regLogState is what the log last said, so each change is said once.
type regLogState int

const (
	regLogNone regLogState = iota
	regLogUp
	regLogDown
)

// New builds the registrar of cfg, which must be Enabled, have its
// defaults set and be valid (Config.SetDefaults, Config.Validate); it
// does not connect: Run does, so a dead etcd cannot fail the agent's
// start. state is called from Run's goroutine whenever the value is
// (re)computed; it must be safe to call concurrently with the agent.
// The metrics are registered on reg (nil: not registered).
func New(cfg *Config, state func() State, reg prometheus.Registerer, log *slog.Logger) *Registrar {
	if !cfg.Enabled() {
		// A programming error: the caller checks Enabled, and a
		// registrar without a backend would have nothing to keep.
		panic("registration.New: no backend configured")
	}
	r := &Registrar{
		cfg: cfg.Etcd, state: state, log: log.With("registration", "etcd"), key: cfg.Etcd.key(),
		nudge: make(chan struct{}, 1),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "redwire_registration_up",
			Help: "1 while the agent's key is registered in etcd under a live lease.",
		}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "redwire_registration_errors_total",
			Help: "Failed registration attempts and lost registrations (unreachable etcd, lost lease, refused request).",
		}),
	}
	if reg != nil {
		reg.MustRegister(r.up, r.errs)
	}
	return r
}

// Changed tells the registrar that the state may have changed; it
// rewrites the value soon if the JSON differs. It never blocks, so the
// agent may call it from any goroutine, as often as it likes: calls
// between two writes coalesce into one.
func (r *Registrar) Changed() {
	select {
	case r.nudge <- struct{}{}:
	default: // a nudge is pending already and will read the newest state
	}
}

// Run keeps the agent registered until ctx ends, then revokes the lease
// (which deletes the key) within regRevokeTimeout and returns. It never
// fails: while etcd cannot be reached it retries, and says so in its log
// and metrics. Call it once, from the goroutine that owns the registrar.
func (r *Registrar) Run(ctx context.Context) {
	defer r.up.Set(0)
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(regMinBackoff),
		backoff.WithMaxInterval(regMaxBackoff),
		backoff.WithMaxElapsedTime(0),
	) // with its default randomization: agents restarted together spread out
	for {
		err := r.session(ctx, bo.Reset)
		if ctx.Err() != nil {
			return
		}
		r.up.Set(0)
		r.errs.Inc()
		if r.logged != regLogDown {
			r.log.Warn("service registration failed; retrying in the background", "key", r.key, "endpoints", r.cfg.Endpoints, "err", err)
			r.logged = regLogDown
		} else {
			r.log.Debug("service registration failed again", "key", r.key, "err", err)
		}
		if !pause.For(ctx, bo.NextBackOff()) {
			return
		}
	}
}

// session is one registration: a gateway client, a lease kept alive,
// and the key under it. It returns nil when ctx ends (after revoking the
// lease), or the error that ended it; the caller starts a new session
// with a new client, so no connection or token outlives a failure.
//
// Every lease_ttl/3 it renews the lease and reads the key back. Any
// failure ends the session: the next one writes the key under a new
// lease, while the old lease still holds it for the rest of its TTL.
func (r *Registrar) session(ctx context.Context, registered func()) error {
	gw, err := r.dial(ctx)
	if err != nil {
		return err
	}
	defer gw.close()

	lease, err := gw.grant(ctx, int64(time.Duration(r.cfg.LeaseTTL)/time.Second))
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	// Whatever ends the session from here on, a shutdown deregisters: a
	// request cut short by ctx returns an error, not nil.
	defer func() {
		if ctx.Err() != nil {
			r.revoke(ctx, gw, lease)
		}
	}()
	r.last = ""
	if err := r.update(ctx, gw, lease, false); err != nil {
		return err
	}
	r.up.Set(1)
	registered()
	if r.logged != regLogUp {
		r.log.Info("registered in etcd", "key", r.key, "lease", fmt.Sprintf("%x", lease), "lease_ttl", r.cfg.LeaseTTL, "endpoint", gw.endpoint())
		r.logged = regLogUp
	}

	check := time.NewTicker(time.Duration(r.cfg.LeaseTTL) / 3)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.nudge:
			if err := r.update(ctx, gw, lease, false); err != nil {
				return err
			}
		case <-check.C:
			// The lease first: a key written under a lost lease would be
			// refused anyway.
			ttl, err := gw.keepAlive(ctx, lease)
			if err != nil {
				return fmt.Errorf("keep lease %x alive: %w", lease, err)
			}
			if ttl <= 0 {
				return fmt.Errorf("lease %x: %w", lease, errLeaseLost)
			}
			if err := r.update(ctx, gw, lease, true); err != nil {
				return err
			}
		}
	}
}

// dial creates a gateway client and, when a username is set,
// authenticates at once (as the etcd client did), so a wrong password is
// reported as such rather than as a refused grant.
func (r *Registrar) dial(ctx context.Context) (*etcdGateway, error) {
	gw, err := newEtcdGateway(r.cfg)
	if err != nil {
		return nil, err
	}
	if r.cfg.Username != "" {
		if err := gw.authenticate(ctx); err != nil {
			gw.close()
			return nil, err
		}
	}
	return gw, nil
}

// update writes the current state under lease if it differs from what was
// last written. With verify it also reads the key back, so a key deleted
// or overwritten in etcd (by an operator, another agent with the same id,
// a restore) is written again within a check interval.
func (r *Registrar) update(ctx context.Context, gw *etcdGateway, lease int64, verify bool) error {
	value, err := r.value()
	if err != nil {
		return err
	}
	if verify {
		kv, err := gw.get(ctx, r.key)
		if err != nil {
			return fmt.Errorf("read back %s: %w", r.key, err)
		}
		switch {
		case kv == nil:
			r.log.Info("registration key is gone from etcd; writing it again", "key", r.key)
			r.last = ""
		case int64(kv.Lease) != lease:
			if !r.conflict {
				r.log.Warn("registration key is held under another lease, by another agent with the same agent_id or a restored etcd; taking it back",
					"key", r.key, "lease", fmt.Sprintf("%x", int64(kv.Lease)))
				r.conflict = true
			}
			r.last = ""
		case string(kv.Value) != r.last:
			r.last = ""
		default:
			r.conflict = false
		}
	}
	if value == r.last {
		return nil
	}
	if err := gw.put(ctx, r.key, value, lease); err != nil {
		return fmt.Errorf("put %s: %w", r.key, err)
	}
	r.last = value
	return nil
}

// value is the JSON of the current state.
func (r *Registrar) value() (string, error) {
	s := r.state()
	s.AgentID = r.cfg.AgentID
	s.Targets = slices.Sorted(slices.Values(s.Targets))
	if s.Targets == nil {
		s.Targets = []string{} // [] rather than null for readers
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode state: %w", err)
	}
	return string(b), nil
}

// revoke ends the lease, which deletes the key with it in one step, and
// only the key still under this lease: a newer agent with the same id
// keeps its own. Bounded, since etcd may be the reason we are stopping.
func (r *Registrar) revoke(ctx context.Context, gw *etcdGateway, lease int64) {
	r.up.Set(0)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(regRevokeTimeout, time.Duration(r.cfg.DialTimeout)))
	defer cancel()
	if err := gw.revoke(rctx, lease); err != nil {
		r.log.Warn("could not deregister from etcd; the key expires with its lease", "key", r.key, "lease_ttl", r.cfg.LeaseTTL, "err", err)
		return
	}
	r.log.Info("deregistered from etcd", "key", r.key)
}
