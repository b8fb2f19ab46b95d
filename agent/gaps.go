package agent

import (
	"slices"
	"sync"
	"time"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/sample"
)

// maxGaps bounds each endpoint's list of lost ranges: the newest are
// kept, and redwire_lost_seconds_total still counts the rest.
const maxGaps = 256

// gapLog is one endpoint's lost ranges, newest first. Losses of one
// target for one reason that follow each other (a buffer dropping its
// oldest records one by one) make one range. The list is saved to the
// endpoint's buffer file when it changed (saveGaps), so a restart keeps
// it; a crash loses at most the changes of one interval, never samples.
type gapLog struct {
	mu    sync.Mutex
	gaps  []buffer.Gap // newest first, by To
	dirty bool
	// failing is true while saving fails (a full disk): logged once.
	failing bool
	// interval is the scrape interval: a lost scrape stands for one, and
	// ranges closer than join are one range.
	interval, join time.Duration
}

func newGapLog(interval, degradedInterval time.Duration, saved []buffer.Gap) *gapLog {
	g := &gapLog{interval: interval, join: 2 * max(interval, degradedInterval)}
	g.gaps = slices.Clone(saved)
	slices.SortStableFunc(g.gaps, func(a, b buffer.Gap) int { return b.To.Compare(a.To) })
	return g
}

// lost records spans lost for reason and returns the seconds each
// target lost anew: a range counts its length plus one interval (its
// last scrape's), and a range extended counts only what it grew by.
func (g *gapLog) lost(reason string, spans []sample.Span) map[string]float64 {
	if g == nil || len(spans) == 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	secs := make(map[string]float64, len(spans))
	for _, sp := range spans {
		from, to := time.UnixMilli(sp.From).UTC(), time.UnixMilli(sp.To).UTC()
		secs[sp.Target] += g.add(buffer.Gap{Target: sp.Target, From: from, To: to, Samples: int64(sp.Samples), Reason: reason}, g.interval).Seconds()
	}
	return secs
}

// down records that target was not scraped between its last scrape of
// the previous run and its first of this one, and returns the seconds
// that lost: the scrapes that were due in between.
func (g *gapLog) down(target string, from, to time.Time) float64 {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.add(buffer.Gap{Target: target, From: from.UTC(), To: to.UTC(), Reason: buffer.GapAgentDown}, -g.interval).Seconds()
}

// thinned records that target was scraped at t (ms) at the degraded
// pace, every every: one range per stretch of degraded mode.
func (g *gapLog) thinned(target string, t int64, every time.Duration) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	at := time.UnixMilli(t).UTC()
	g.add(buffer.Gap{Target: target, From: at, To: at, Reason: buffer.GapThinned, KeptEverySeconds: every.Seconds()}, 0)
}

// storeThinned records ranges the buffer thinned to one scrape per
// target every every: listed, never counted as lost.
func (g *gapLog) storeThinned(spans []sample.Span, every time.Duration) {
	if g == nil || len(spans) == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, sp := range spans {
		g.add(buffer.Gap{Target: sp.Target, From: time.UnixMilli(sp.From).UTC(), To: time.UnixMilli(sp.To).UTC(),
			Reason: buffer.GapThinned, KeptEverySeconds: every.Seconds()}, 0)
	}
}

// add merges gap into the list and returns the time it adds to it; last
// is what the range's length misses (a lost scrape's own interval), or
// gives back (the scrape that ends an agent_down range was taken). mu
// must be held.
func (g *gapLog) add(gap buffer.Gap, last time.Duration) time.Duration {
	g.dirty = true
	for i := range g.gaps {
		if gap.Reason == buffer.GapAgentDown {
			break // each stop is its own range
		}
		old := &g.gaps[i]
		if old.Target != gap.Target || old.Reason != gap.Reason || old.KeptEverySeconds != gap.KeptEverySeconds {
			continue // a thinned range of another resolution is another range
		}
		if gap.From.After(old.To.Add(g.join)) || gap.To.Before(old.From.Add(-g.join)) {
			break // only the newest range of a target and reason grows
		}
		grown := max(0, gap.To.Sub(old.To)) + max(0, old.From.Sub(gap.From))
		if gap.From.Before(old.From) {
			old.From = gap.From
		}
		if gap.To.After(old.To) {
			old.To = gap.To
			g.resort(i)
		}
		old.Samples += gap.Samples
		return grown
	}
	i, _ := slices.BinarySearchFunc(g.gaps, gap, func(a, b buffer.Gap) int { return b.To.Compare(a.To) })
	g.gaps = slices.Insert(g.gaps, i, gap)
	if len(g.gaps) > maxGaps {
		g.gaps = g.gaps[:maxGaps]
	}
	return max(0, gap.To.Sub(gap.From)+last)
}

// resort moves the range at i, whose end grew, to its place.
func (g *gapLog) resort(i int) {
	for ; i > 0 && g.gaps[i].To.After(g.gaps[i-1].To); i-- {
		g.gaps[i], g.gaps[i-1] = g.gaps[i-1], g.gaps[i]
	}
}

// list is a copy of the ranges, newest first.
func (g *gapLog) list() []buffer.Gap {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.gaps)
}

// changed returns the ranges if they changed since the last call.
func (g *gapLog) changed() ([]buffer.Gap, bool) {
	if g == nil {
		return nil, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.dirty {
		return nil, false
	}
	g.dirty = false
	return slices.Clone(g.gaps), true
}

// saved records how saving what changed returned went, and reports
// whether that is news: a failure after a success, to be logged once.
func (g *gapLog) saved(err error) (news bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	news = (err != nil) != g.failing
	g.failing = err != nil
	if err != nil {
		g.dirty = true // still to save
	}
	return news && err != nil
}
