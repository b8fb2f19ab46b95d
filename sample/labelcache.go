package sample

import (
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// LabelCache keeps one target's label sets from scrape to scrape. A
// target emits the same series every scrape, so with a cache a scrape
// looks its label sets up instead of building (sorting, copying) ~300 of
// them, and all the scrapes waiting in a queue share one copy of each.
// Sets not emitted for a scrape are dropped once they are as many as the
// live ones, which bounds the cache by twice the target's series.
//
// A LabelCache serves one target's scrapes, one at a time; the zero value
// is ready.
type LabelCache struct {
	base labels.Labels
	sets map[string]*cachedLabels // key: family, then the kv pairs, 0xff-separated
	gen  uint32                   // the current scrape's
	live int                      // sets used by the current scrape
	key  []byte                   // scratch
	// The size of the last scrape, to size the next one's slices.
	lastSamples, lastFamilies int
}

type cachedLabels struct {
	ls  labels.Labels
	gen uint32 // of the last scrape that used it
}

// NewScrape starts a scrape taken at t, as NewScrape does, whose label
// sets come from the cache. A different base empties the cache.
func (c *LabelCache) NewScrape(t time.Time, base labels.Labels) *Scrape {
	if c.sets == nil || !labels.Equal(c.base, base) {
		c.base, c.sets = base, make(map[string]*cachedLabels)
	}
	c.gen++
	c.live = 0
	sc := &Scrape{
		T:        t.UnixMilli(),
		Samples:  make([]Sample, 0, c.lastSamples),
		Metadata: make([]Metadata, 0, c.lastFamilies),
		base:     base,
		families: make(map[string]int, c.lastFamilies),
		b:        labels.NewBuilder(labels.EmptyLabels()),
		cache:    c,
	}
	return sc
}

// get returns the label set of family name with kv if the cache has it;
// if not, put must follow with the set built.
func (c *LabelCache) get(name string, kv []string) (labels.Labels, bool) {
	c.key = append(c.key[:0], name...)
	for _, s := range kv {
		c.key = append(append(c.key, 0xff), s...)
	}
	e, ok := c.sets[string(c.key)] // no allocation for the lookup
	if !ok {
		return labels.EmptyLabels(), false
	}
	if e.gen != c.gen {
		e.gen = c.gen
		c.live++
	}
	return e.ls, true
}

// put adds the set get missed.
func (c *LabelCache) put(ls labels.Labels) {
	c.sets[string(c.key)] = &cachedLabels{ls: ls, gen: c.gen}
	c.live++
}

// end ends sc, the current scrape: it drops the sets sc did not use once
// they are as many as those it did, and notes sc's size.
func (c *LabelCache) end(sc *Scrape) {
	c.lastSamples, c.lastFamilies = len(sc.Samples), len(sc.Metadata)
	if len(c.sets) <= 2*c.live {
		return
	}
	for k, e := range c.sets {
		if e.gen != c.gen {
			delete(c.sets, k)
		}
	}
}
