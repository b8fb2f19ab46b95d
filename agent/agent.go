// Package agent wires sources, buffer and remotewrite together and owns the
// agent's modes: normal (memory → receiver), degraded (receiver down:
// buffer to disk, sample less) and replay (drain the disk backlog
// oldest-first). It also serves the agent's own state over HTTP.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/remotewrite"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/discovery"
	"github.com/redwire/redwire/sources/redis"
)

// DefaultShutdownTimeout bounds how long a graceful stop spends sending
// what is queued; whatever is left then is committed to disk.
const DefaultShutdownTimeout = 10 * time.Second

// targetsFileRefresh re-reads the targets file even without a change
// event, for filesystems where inotify says nothing (NFS, bind mounts).
const targetsFileRefresh = time.Minute

// localBuffer names the buffer of buffer-only mode (no endpoint).
const localBuffer = "local"

// Options are what Run needs besides the config.
type Options struct {
	Logger *slog.Logger
	// Registry receives the agent's metrics and is what /metrics serves.
	// Callers add Go/process/build collectors as they see fit.
	Registry *prometheus.Registry
	// Version goes into the remote-write User-Agent.
	Version string
	// ShutdownTimeout bounds the final flush; 0 means the default.
	ShutdownTimeout time.Duration
}

// Run runs the agent until ctx is cancelled, then stops scraping, sends
// what it can within the shutdown timeout, commits the rest to disk and
// returns. It returns early only if the agent cannot start (bad target,
// buffer locked by another agent, port in use, …).
func Run(ctx context.Context, cfg *Config, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	log, m := opts.Logger, newMetrics(opts.Registry)
	a := &run{cfg: cfg, log: log, m: m, modes: newModes()}
	defer a.close()
	if err := a.open(opts.Version); err != nil {
		return err
	}
	web, err := startWeb(cfg.Web, opts.Registry, log)
	if err != nil {
		return err
	}

	// Endpoints outlive the scrape loops: they get their own context,
	// cancelled only when the shutdown flush deadline has passed.
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()
	var sending sync.WaitGroup
	for _, e := range a.endpoints {
		sending.Go(func() { e.run(sendCtx) })
	}
	var maintaining sync.WaitGroup
	maintaining.Go(func() { a.maintain(ctx) })

	sources, err := a.discoverers(opts.Registry)
	if err != nil {
		return err
	}
	newLoop, self := a.loops(opts.Registry)
	tm := newTargetManager(&cfg.Global, newLoop, m, log)
	var scraping sync.WaitGroup
	scraping.Go(func() { tm.run(ctx, cfg.Targets, sources) })
	if self != nil {
		scraping.Go(func() { self.run(ctx) })
	}
	log.Info("redwire started", "targets", len(cfg.Targets), "sentinels", len(cfg.Sentinels), "clusters", len(cfg.Clusters),
		"targets_file", cfg.TargetsFile, "endpoints", len(a.endpoints),
		"scrape_interval", cfg.Global.ScrapeInterval, "buffer", cfg.Buffer.Path,
		"buffer_mode", cfg.Buffer.Mode, "listen_address", web.addr())
	web.setReady()

	<-ctx.Done()
	log.Info("shutting down: sending what is queued", "timeout", opts.ShutdownTimeout)
	scraping.Wait()
	maintaining.Wait()
	for _, b := range a.buffers {
		b.Drain()
	}
	flushed := make(chan struct{})
	go func() { sending.Wait(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(opts.ShutdownTimeout):
		log.Warn("shutdown timeout reached: committing what is left to the disk buffer")
		cancelSend()
		<-flushed
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := web.stop(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("web server: %w", err)
	}
	return nil
}

// run is one run of the agent: what Run opened and must close.
type run struct {
	cfg   *Config
	log   *slog.Logger
	m     *metrics
	modes *modes

	buffers   []*buffer.Buffer
	bufNames  []string
	endpoints []*endpoint
}

func (a *run) open(version string) error {
	// Fail at start on a target that cannot be set up (unreadable TLS
	// files); the target manager creates them for real.
	for _, tc := range a.cfg.Targets {
		t, err := redis.NewTarget(tc, a.cfg.Global.ExternalLabels)
		if err != nil {
			return err
		}
		t.Close()
	}
	if err := os.MkdirAll(a.cfg.Buffer.Path, 0o700); err != nil {
		return fmt.Errorf("buffer.path: %w", err)
	}
	for _, ec := range a.cfg.RemoteWrite {
		name := ec.Label()
		c, err := remotewrite.NewClient(ec, version)
		if err != nil {
			return err
		}
		q := ec.QueueConfig
		buf, err := a.openBuffer(name, buffer.Options{
			Capacity: q.Capacity, MaxBatch: q.MaxSamplesPerSend,
			Deadline: time.Duration(q.BatchSendDeadline), Always: a.cfg.Buffer.Mode == buffer.ModeAlways,
		})
		if err != nil {
			return err
		}
		a.endpoints = append(a.endpoints, &endpoint{
			name: name, client: c, buf: buf,
			threshold: a.cfg.Degraded.FailureThreshold,
			minWait:   time.Duration(q.MinBackoff), maxWait: time.Duration(q.MaxBackoff),
			replayRate: a.cfg.Replay.MaxSamplesPerSecond,
			modes:      a.modes, m: a.m, log: a.log.With("endpoint", name),
		})
		a.m.initEndpoint(name)
	}
	if len(a.endpoints) == 0 {
		// Buffer-only mode: everything goes to disk and stays there until
		// it is exported or an endpoint is configured.
		buf, err := a.openBuffer(localBuffer, buffer.Options{Capacity: 1, MaxBatch: 1, Always: true})
		if err != nil {
			return err
		}
		a.m.initEndpoint(localBuffer)
		a.log.Warn("no remote_write endpoint configured: buffer-only mode, samples are kept in the local buffer", "path", a.cfg.Buffer.Path)
		_ = buf
	}
	return nil
}

// openBuffer opens an endpoint's store, moving a corrupt file aside.
func (a *run) openBuffer(name string, opts buffer.Options) (*buffer.Buffer, error) {
	path := filepath.Join(a.cfg.Buffer.Path, storeFileName(name))
	store, info, err := buffer.OpenStore(path, buffer.StoreOptions{
		MaxBytes: int64(a.cfg.Buffer.MaxBytes),
		MaxAge:   time.Duration(a.cfg.Buffer.MaxAge),
	})
	if err != nil {
		return nil, fmt.Errorf("buffer of endpoint %s: %w", name, err)
	}
	if info.MovedAside != "" {
		a.m.corruptions.WithLabelValues(name).Inc()
		a.log.Error("BUFFER FILE WAS CORRUPT: moved aside and started a fresh one; the old file is kept for inspection",
			"endpoint", name, "moved_to", info.MovedAside, "err", info.Err)
	}
	if st := store.Stats(); st.Batches > 0 {
		a.log.Info("found a backlog from an earlier run: replaying it first", "endpoint", name,
			"samples", st.Samples, "oldest", time.UnixMilli(st.OldestT).UTC())
	}
	b := buffer.New(store, opts)
	a.buffers = append(a.buffers, b)
	a.bufNames = append(a.bufNames, name)
	a.m.buffers.add(name, b)
	return b, nil
}

// unsafeFileChars are replaced in endpoint names used as file names.
var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// storeFileName is stable for an endpoint's name, so a restart finds its
// backlog. Give endpoints a name to keep the backlog across URL changes.
func storeFileName(endpoint string) string {
	return unsafeFileChars.ReplaceAllString(endpoint, "_") + ".bbolt"
}

// loops returns how to build the scrape loop of a target, and the loop
// of the agent's own metrics (nil if self_metrics is off).
func (a *run) loops(reg *prometheus.Registry) (newLoop func(scraper) *scrapeLoop, self *scrapeLoop) {
	var sinks []func(sample.Batch)
	for i, b := range a.buffers {
		name := a.bufNames[i]
		sinks = append(sinks, func(batch sample.Batch) {
			a.m.samplesQueued.WithLabelValues(name).Add(float64(batch.Len()))
			dropped, err := b.Append(batch)
			for _, d := range dropped {
				if d.Samples > 0 {
					a.m.samplesDropped.WithLabelValues(name, d.Reason).Add(float64(d.Samples))
				}
			}
			if err != nil {
				a.log.Error("buffering a batch failed; kept in memory", "endpoint", name, "err", err)
			}
		})
	}
	g := a.cfg.Global
	slots := newScrapePool(g.MaxConcurrentScrapes)
	build := func(s scraper, keep bool) *scrapeLoop {
		l := &scrapeLoop{
			target: s, interval: time.Duration(g.ScrapeInterval),
			degradedInterval: time.Duration(a.cfg.Degraded.Interval),
			timeout:          time.Duration(g.ScrapeTimeout),
			modes:            a.modes, sinks: sinks, slots: slots, m: a.m,
			log: a.log.With("target", s.Name()),
		}
		if keep {
			l.keep = a.cfg.Degraded.Metrics
		}
		return l
	}
	if a.cfg.SelfMetrics.On() {
		host, _ := os.Hostname()
		self = build(newSelfScraper(reg, host, g.ExternalLabels), false)
	}
	return func(s scraper) *scrapeLoop { return build(s, true) }, self
}

// discoverers are the sources of targets beyond the static ones.
func (a *run) discoverers(reg prometheus.Registerer) ([]discovery.Discoverer, error) {
	interval := time.Duration(a.cfg.Global.ScrapeInterval)
	var ds []discovery.Discoverer
	if f := a.cfg.TargetsFile; f != "" {
		// Refuse a broken file at start, as for the config itself; later
		// a broken version is logged and the last good one kept.
		if _, err := discovery.ReadTargetsFile(f); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("targets_file: %w", err)
		}
		ds = append(ds, discovery.NewFile(f, targetsFileRefresh, a.log))
	}
	if len(a.cfg.Sentinels) > 0 {
		sm := discovery.NewSentinelMetrics(reg)
		for _, sc := range a.cfg.Sentinels {
			d, err := discovery.NewSentinel(sc, interval, sm, a.log.With("source", "sentinel"))
			if err != nil {
				return nil, err
			}
			ds = append(ds, d)
		}
	}
	for _, cc := range a.cfg.Clusters {
		d, err := discovery.NewCluster(cc, interval, reg, a.log.With("source", "cluster"))
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// maintain applies buffer.max_age even while nothing is appended.
func (a *run) maintain(ctx context.Context) {
	t := time.NewTicker(time.Duration(a.cfg.Global.ScrapeInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, b := range a.buffers {
			d, err := b.Store().Expire()
			if err != nil {
				a.log.Warn("expiring old buffered data failed", "endpoint", a.bufNames[i], "err", err)
			}
			if d.Samples > 0 {
				a.m.samplesDropped.WithLabelValues(a.bufNames[i], d.Reason).Add(float64(d.Samples))
			}
		}
	}
}

// close commits memory to disk and releases everything; safe after a
// partial open.
func (a *run) close() {
	for i, b := range a.buffers {
		dropped, err := b.Close()
		for _, d := range dropped {
			if d.Samples > 0 {
				a.m.samplesDropped.WithLabelValues(a.bufNames[i], d.Reason).Add(float64(d.Samples))
			}
		}
		if err != nil {
			a.log.Error("closing the buffer failed", "endpoint", a.bufNames[i], "err", err)
		}
	}
}
