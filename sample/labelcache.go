package sample

import (
	"encoding/binary"
	"hash/maphash"
	"time"

	"github.com/prometheus/common/model"
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
	// Keyed by a hash of the family and the kv pairs (each preceded by
	// its length), not by those strings themselves: a key string and an
	// entry allocation per series were a third of the agent's live heap.
	// A hash collision is caught by matches and costs a rebuild.
	sets map[uint64]cachedLabels
	seed maphash.Seed
	gen  uint32 // the current scrape's
	live int    // sets used by the current scrape
	key  []byte // scratch
	hash uint64 // of the last get
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
		c.base, c.sets = base, make(map[uint64]cachedLabels)
		c.seed = maphash.MakeSeed()
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
	k := append(binary.AppendUvarint(c.key[:0], uint64(len(name))), name...)
	for _, s := range kv {
		k = append(binary.AppendUvarint(k, uint64(len(s))), s...)
	}
	c.key = k
	c.hash = maphash.Bytes(c.seed, k)
	e, ok := c.sets[c.hash]
	if !ok || !c.matches(e.ls, name, kv) {
		return labels.EmptyLabels(), false
	}
	if e.gen != c.gen {
		e.gen = c.gen
		c.sets[c.hash] = e
		c.live++
	}
	return e.ls, true
}

// matches tells a hash collision from a hit: ls must be the family's and
// carry every pair of kv that the base labels do not rename.
func (c *LabelCache) matches(ls labels.Labels, name string, kv []string) bool {
	n := c.base.Len() + 1
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue // an empty value sets no label
		}
		n++
		if !c.base.Has(kv[i]) && ls.Get(kv[i]) != kv[i+1] {
			return false
		}
	}
	return ls.Len() == n && ls.Get(model.MetricNameLabel) == name
}

// put adds the set get missed.
func (c *LabelCache) put(ls labels.Labels) {
	c.sets[c.hash] = cachedLabels{ls: ls, gen: c.gen}
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
