// Package agent wires sources, buffer and remotewrite together and owns the
// agent's lifecycle: it scrapes every target on its interval, queues the
// samples for every endpoint, sends them, and serves its own state over
// HTTP.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/sources/redis"
)

// DefaultShutdownTimeout bounds how long a graceful stop spends flushing
// queues to the receivers.
const DefaultShutdownTimeout = 10 * time.Second

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

// Run runs the agent until ctx is cancelled, then stops scraping, flushes
// the queues within the shutdown timeout and returns. It returns early
// only if the agent cannot start (bad target, port in use, …).
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

	targets := make([]*redis.Target, 0, len(cfg.Targets))
	defer func() {
		for _, t := range targets {
			t.Close()
		}
	}()
	for _, tc := range cfg.Targets {
		t, err := redis.NewTarget(tc, cfg.Global.ExternalLabels)
		if err != nil {
			return err
		}
		targets = append(targets, t)
	}

	senders := make([]*sender, 0, len(cfg.RemoteWrite))
	for _, ec := range cfg.RemoteWrite {
		s, err := newSender(ec, opts.Version, m, log)
		if err != nil {
			return err
		}
		senders = append(senders, s)
	}
	if len(senders) == 0 {
		log.Warn("no remote_write endpoint configured: buffer-only mode, samples are scraped and kept locally, nothing is sent")
	}

	web, err := startWeb(cfg.Web, opts.Registry, log)
	if err != nil {
		return err
	}

	// Senders outlive the scrape loops: they get their own context, which
	// is cancelled only when the shutdown flush deadline has passed.
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()
	var sending sync.WaitGroup
	for _, s := range senders {
		sending.Go(func() { s.run(sendCtx) })
	}

	var scraping sync.WaitGroup
	for _, t := range targets {
		l := &scrapeLoop{
			target:   t,
			interval: time.Duration(cfg.Global.ScrapeInterval),
			timeout:  time.Duration(cfg.Global.ScrapeTimeout),
			senders:  senders,
			m:        m,
			log:      log.With("target", t.Name()),
		}
		scraping.Go(func() { l.run(ctx) })
	}
	log.Info("redwire started", "targets", len(targets), "endpoints", len(senders),
		"scrape_interval", cfg.Global.ScrapeInterval, "listen_address", web.addr())
	web.setReady()

	<-ctx.Done()
	log.Info("shutting down: flushing queues", "timeout", opts.ShutdownTimeout)
	scraping.Wait()
	for _, s := range senders {
		s.queue.Close()
	}
	flushed := make(chan struct{})
	go func() { sending.Wait(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(opts.ShutdownTimeout):
		log.Warn("shutdown timeout reached before every queue was flushed")
		cancelSend()
		<-flushed
	}
	for _, s := range senders {
		s.dropRemaining("shutdown")
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := web.stop(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("web server: %w", err)
	}
	return nil
}
