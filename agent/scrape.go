package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/redwire/redwire/sources/redis"
)

// scrapeLoop polls one target on its interval and hands every scrape to
// every endpoint's queue.
type scrapeLoop struct {
	target   *redis.Target
	interval time.Duration
	timeout  time.Duration
	senders  []*sender
	m        *metrics
	log      *slog.Logger

	up *bool // nil until the first scrape; logs only state changes
}

func (l *scrapeLoop) run(ctx context.Context) {
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	for {
		l.scrapeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (l *scrapeLoop) scrapeOnce(ctx context.Context) {
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, l.timeout)
	sc, err := l.target.Scrape(sctx, start)
	cancel()
	if ctx.Err() != nil && err != nil {
		return // cut short by shutdown: not a target failure
	}
	name := l.target.Name()
	l.m.scrapeDuration.WithLabelValues(name).Set(time.Since(start).Seconds())
	l.m.samplesScraped.WithLabelValues(name).Add(float64(len(sc.Samples)))
	l.setUp(err)

	batch := sc.Batch()
	for _, s := range l.senders {
		s.enqueue(batch)
	}
}

// setUp records the target's health and logs a line only when it changes,
// so an unreachable Redis yields one warning, not one per interval.
func (l *scrapeLoop) setUp(err error) {
	up := err == nil
	v := 0.0
	if up {
		v = 1
	}
	l.m.targetUp.WithLabelValues(l.target.Name()).Set(v)
	switch {
	case l.up != nil && *l.up == up:
	case up && l.up == nil:
		l.log.Debug("target up")
	case up:
		l.log.Info("target is back up")
	default:
		l.log.Warn("target down: scrape failed", "err", err)
	}
	l.up = &up
}
