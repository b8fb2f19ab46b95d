package agent

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/pause"
	"github.com/redwire/redwire/sample"
	"github.com/redwire/redwire/sources/redis"
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
	sink             func(sample.Batch) // takes every batch: the agent queues it for each endpoint
	slots            *scrapePool        // shared by all loops: global.max_concurrent_scrapes
	m                *metrics
	log              *slog.Logger

	state int // stateUnknown until the first scrape; logs only changes

	// refresh, if set, asks the target's discovery source to look again
	// after a failed scrape (a cluster node gone, a master moved).
	refresh func()
	// last are the series of the last scrape, to end them with stale
	// markers if the target is removed.
	last []labels.Labels

	// now is the wall clock that stamps the samples; nil means time.Now.
	// Pacing and scrape durations use the monotonic clock whatever now
	// says, so a stepped wall clock never stalls or hurries the loop.
	now func() time.Time
	// discard counts samples given up on before any buffer saw them
	// against every endpoint, so taken = sent + dropped + pending holds
	// for each; nil counts them nowhere (loops built by hand in tests).
	discard func(samples []sample.Sample, reason string)
	// taken, if set, hears of every scrape handed to the sink: its
	// target (the instance label) and time, for agent_down ranges.
	taken func(target string, t int64, interval time.Duration)
	// thinned, if set, hears of every scrape taken at the degraded pace
	// or with degraded.metrics' filter: GapThinned ranges.
	thinned func(target string, t int64, every time.Duration)
	// sentT is the timestamp (ms) of the last scrape handed to the sink;
	// 0 before the first. Invariant: every scrape handed on is stamped
	// strictly after it. A wall clock stepped back (NTP, VM restore) would
	// otherwise send samples the receiver refuses as out of order, losing
	// the good samples batched with them. Checked by admit.
	sentT int64
	// droppedScrapes and droppedSamples count what admit dropped since
	// the clock went back; both 0 while in order. They log the start and
	// the end of a step once, not once per scrape.
	droppedScrapes, droppedSamples int
}

func (l *scrapeLoop) run(ctx context.Context) {
	// A target that never misses a slot shows 0, not a gap.
	l.m.scrapesSkipped.WithLabelValues(l.target.Name())
	// Spread targets over the interval so many of them do not fire at
	// once; the offset is stable per target, so its samples stay evenly
	// spaced across restarts.
	if !pause.For(ctx, offset(l.target.Name(), l.interval)) {
		return
	}
	var scraped time.Time // when the last scrape began; zero: never
	for {
		last, stamp := l.clock()
		degraded, changed := l.modes.degraded()
		// A slot in the pool bounds concurrent scrapes. A target whose last
		// scrape failed waits in the failing lane, so dead targets, which
		// hold their slot for the whole scrape timeout, queue only behind
		// each other. A slot that is not free before the next scrape is due
		// skips this one: late scrapes would only pile up behind it.
		failures := l.failures()
		if !l.acquire(ctx, failures, scraped, last.Add(l.pace(degraded))) {
			if ctx.Err() != nil {
				return
			}
			l.m.scrapesSkipped.WithLabelValues(l.target.Name()).Inc()
			continue
		}
		scraped = last
		l.scrapeOnce(ctx, last, stamp, degraded)
		l.slots.release(failures)
		// Wait for the next slot; a change of mode re-plans it, so the
		// agent returns to the normal pace as soon as the link is back.
		for {
			t := time.NewTimer(time.Until(last.Add(l.pace(degraded))))
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

// pace is the time between two scrapes of the loop in the given mode.
func (l *scrapeLoop) pace(degraded bool) time.Duration {
	if degraded {
		return l.degradedInterval
	}
	return l.interval
}

// acquire takes a slot in the pool for a target with that many
// consecutive failures, last scraped at since, giving up at due, when the
// next scrape is due.
func (l *scrapeLoop) acquire(ctx context.Context, failures int, since, due time.Time) bool {
	actx, cancel := context.WithDeadline(ctx, due)
	defer cancel()
	return l.slots.acquire(actx, failures, since)
}

// failures is how many scrapes of the target failed in a row, as far as
// the loop knows: the target's own count if it keeps one.
func (l *scrapeLoop) failures() int {
	if h, ok := l.target.(health); ok {
		return h.ConsecutiveFailures()
	}
	if l.state == stateFailing || l.state == stateDown {
		return 1
	}
	return 0
}

// clock reads the monotonic clock that paces the loop and the wall clock
// that stamps its samples: one and the same reading unless a wall clock
// was injected.
func (l *scrapeLoop) clock() (mono, wall time.Time) {
	mono = time.Now()
	if l.now == nil {
		return mono, mono
	}
	return mono, l.now()
}

// scrapeOnce scrapes the target, stamping its samples with stamp, and
// hands them to the sink; start (monotonic) times the scrape.
func (l *scrapeLoop) scrapeOnce(ctx context.Context, start, stamp time.Time, degraded bool) {
	sctx, cancel := context.WithTimeout(ctx, l.timeout)
	sc, err := l.target.Scrape(sctx, stamp)
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
	if err != nil && l.refresh != nil {
		l.refresh()
	}
	// The target is scraped even while its samples are dropped: its
	// health, soft-failure window and logs carry on as usual.
	if !l.admit(sc.T, len(sc.Samples)) {
		if l.discard != nil {
			l.discard(sc.Samples, buffer.DropOutOfOrder)
		}
		// Taken and dropped at once: counted after the drop, as a
		// buffered scrape is counted after its buffers took it.
		l.m.samplesScraped.WithLabelValues(name).Add(float64(len(sc.Samples)))
		return
	}
	batch := sc.Batch()
	l.last = l.last[:0]
	for _, s := range batch.Samples {
		l.last = append(l.last, s.Labels)
	}
	l.sink(batch)
	if len(batch.Samples) > 0 {
		target := batch.Samples[0].Labels.Get(sample.TargetLabel)
		if l.taken != nil {
			l.taken(target, sc.T, l.interval)
		}
		if degraded && l.thinned != nil && (l.degradedInterval > l.interval || l.keep != nil) {
			l.thinned(target, sc.T, max(l.interval, l.degradedInterval))
		}
	}
	// Counted once buffered: in degraded mode that means committed to
	// disk, so a scrape counted here survives a kill -9.
	l.m.samplesScraped.WithLabelValues(name).Add(float64(len(sc.Samples)))
	l.m.scrapes.WithLabelValues(name).Inc()
}

// admit reports whether a scrape stamped t (ms; every sample of a Scrape
// carries its T) may be handed to the sink, and if so records t as the
// last sent. A scrape at or before the last sent one is refused whole:
// per series it would go back in time. It logs when the loop starts
// refusing and when the wall clock has caught up, not every scrape.
func (l *scrapeLoop) admit(t int64, samples int) bool {
	if t > l.sentT {
		if l.droppedScrapes > 0 {
			l.log.Info("wall clock caught up with the last sent scrape: sending scrapes again",
				"dropped_scrapes", l.droppedScrapes, "dropped_samples", l.droppedSamples,
				"last_sent", time.UnixMilli(l.sentT).UTC())
			l.droppedScrapes, l.droppedSamples = 0, 0
		}
		l.sentT = t
		return true
	}
	if l.droppedScrapes == 0 {
		l.log.Warn("wall clock went back: dropping scrapes until it passes the last sent one, which the receiver would refuse as out of order",
			"behind", time.Duration(l.sentT-t)*time.Millisecond, "last_sent", time.UnixMilli(l.sentT).UTC())
	}
	l.droppedScrapes++
	l.droppedSamples += samples
	return false
}

// discard counts samples of a scrape that no buffer took as dropped for
// reason on every endpoint: the counterpart of deliver for a scrape given
// up on before it.
func (a *agentRun) discard(samples []sample.Sample, reason string) {
	if len(samples) == 0 {
		return
	}
	d := buffer.Dropped{Reason: reason, Samples: len(samples), Spans: sample.AddSpans(nil, samples)}
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, o := range a.outputs {
		a.m.countDropped(o.name, []buffer.Dropped{d})
	}
}

// offset is a stable point in [0, interval) for a target.
func offset(name string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(name))
	return time.Duration(h.Sum64() % uint64(interval))
}

// filter keeps the samples and metadata of families matching keep.
func filter(sc *sample.Scrape, keep *relabel.Regexp) {
	kept := sc.Samples[:0]
	for _, s := range sc.Samples {
		if keep.MatchString(s.Labels.Get(model.MetricNameLabel)) {
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

// health is what a Redis target reports beyond its scrape: the soft
// up/down state and how many scrapes failed in a row.
type health interface {
	Up() bool
	ConsecutiveFailures() int
}

// Target states for logging: one line per change, not per scrape.
const (
	stateUnknown = iota
	stateUp
	stateFailing // scrapes fail, but within the soft-failure window
	stateDown
)

// setUp records the target's health and logs a line only when its state
// changes, so an unreachable Redis yields one warning, not one per
// interval.
func (l *scrapeLoop) setUp(err error) {
	name := l.target.Name()
	var se *redis.ScrapeError
	if errors.As(err, &se) {
		l.m.scrapeErrors.WithLabelValues(name, se.Phase).Inc()
	}
	if err == nil {
		l.m.lastSuccess.WithLabelValues(name).SetToCurrentTime()
	}
	up, failures := err == nil, 0
	if h, ok := l.target.(health); ok {
		up, failures = h.Up(), h.ConsecutiveFailures()
		l.m.consecutiveFailures.WithLabelValues(name).Set(float64(failures))
	}
	l.m.targetUp.WithLabelValues(name).Set(boolFloat(up))

	state := stateUp
	switch {
	case !up:
		state = stateDown
	case err != nil:
		state = stateFailing
	}
	if state == l.state {
		return
	}
	switch {
	case state == stateUp && l.state == stateUnknown:
		l.log.Debug("target up")
	case state == stateUp:
		l.log.Info("target is back up")
	case state == stateFailing:
		l.log.Info("target scrape failed; redis_up stays 1 within the soft-failure window", "consecutive_failures", failures, "err", err)
	default:
		l.log.Warn("target down: scrape failed", "consecutive_failures", failures, "err", err)
	}
	l.state = state
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
