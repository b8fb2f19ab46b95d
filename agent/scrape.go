package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/redwire/redwire/sample"
)

// scraper is what a scrape loop polls: a Redis target, or the agent itself.
type scraper interface {
	Name() string
	Scrape(ctx context.Context, now time.Time) (*sample.Scrape, error)
}

// scrapeLoop polls one scraper and hands every scrape to every buffer.
// While any endpoint is down it polls every degradedInterval instead of
// every interval and, if keep is set, keeps only matching families.
type scrapeLoop struct {
	target           scraper
	interval         time.Duration
	degradedInterval time.Duration
	timeout          time.Duration
	keep             *relabel.Regexp // nil: keep everything, also when degraded
	modes            *modes
	sinks            []func(sample.Batch)
	m                *metrics
	log              *slog.Logger

	up *bool // nil until the first scrape; logs only state changes
}

func (l *scrapeLoop) run(ctx context.Context) {
	for {
		last := time.Now()
		degraded, changed := l.modes.degraded()
		l.scrapeOnce(ctx, last, degraded)
		// Wait for the next slot; a change of mode re-plans it, so the
		// agent returns to the normal pace as soon as the link is back.
		for {
			next := l.interval
			if degraded {
				next = l.degradedInterval
			}
			t := time.NewTimer(time.Until(last.Add(next)))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-changed:
				t.Stop()
				degraded, changed = l.modes.degraded()
				continue
			case <-t.C:
			}
			break
		}
	}
}

func (l *scrapeLoop) scrapeOnce(ctx context.Context, start time.Time, degraded bool) {
	sctx, cancel := context.WithTimeout(ctx, l.timeout)
	sc, err := l.target.Scrape(sctx, start)
	cancel()
	if ctx.Err() != nil && err != nil {
		return // cut short by shutdown: not a target failure
	}
	name := l.target.Name()
	l.m.scrapeDuration.WithLabelValues(name).Set(time.Since(start).Seconds())
	l.setUp(err)
	if degraded && l.keep != nil {
		filter(sc, l.keep)
	}
	batch := sc.Batch()
	for _, sink := range l.sinks {
		sink(batch)
	}
	// Counted once buffered: in degraded mode that means committed to
	// disk, so a scrape counted here survives a kill -9.
	l.m.samplesScraped.WithLabelValues(name).Add(float64(len(sc.Samples)))
	l.m.scrapes.WithLabelValues(name).Inc()
}

// filter keeps the samples and metadata of families matching keep.
func filter(sc *sample.Scrape, keep *relabel.Regexp) {
	kept := sc.Samples[:0]
	for _, s := range sc.Samples {
		if keep.MatchString(s.Labels.Get(labels.MetricName)) {
			kept = append(kept, s)
		}
	}
	sc.Samples = kept
	md := sc.Metadata[:0]
	for _, m := range sc.Metadata {
		if keep.MatchString(m.Family) {
			md = append(md, m)
		}
	}
	sc.Metadata = md
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
