package sample

import (
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// Scrape collects the samples of one target taken at one instant. Every
// sample carries the target's base labels (instance, job, target and
// external labels); a metric label that collides with a base label is kept
// as exported_<name>, as Prometheus does with honor_labels: false.
//
// A Scrape is not safe for concurrent use; each target fills its own.
type Scrape struct {
	T        int64
	Samples  []Sample
	Metadata []Metadata

	base     labels.Labels
	families map[string]int // family -> index in Metadata
	b        *labels.Builder
	cache    *LabelCache // nil: every label set is built
}

// NewScrape starts a scrape taken at t whose samples all carry base.
func NewScrape(t time.Time, base labels.Labels) *Scrape {
	return &Scrape{
		T:        t.UnixMilli(),
		base:     base,
		families: make(map[string]int),
		b:        labels.NewBuilder(labels.EmptyLabels()),
	}
}

// Gauge adds a gauge sample; kv are label name/value pairs.
func (s *Scrape) Gauge(name, help string, v float64, kv ...string) {
	s.Add(name, Gauge, help, v, kv...)
}

// Counter adds a counter sample; kv are label name/value pairs.
func (s *Scrape) Counter(name, help string, v float64, kv ...string) {
	s.Add(name, Counter, help, v, kv...)
}

// Add adds a sample of the given family and type. The first call for a
// family records its metadata; later calls with another help text keep the
// first one. kv must hold an even number of strings.
func (s *Scrape) Add(name string, typ Type, help string, v float64, kv ...string) {
	if len(kv)%2 != 0 {
		panic("sample: odd number of label strings for " + name)
	}
	if _, ok := s.families[name]; !ok {
		s.families[name] = len(s.Metadata)
		s.Metadata = append(s.Metadata, Metadata{Family: name, Type: typ, Help: help})
	}
	var ls labels.Labels
	var cached bool
	if s.cache != nil {
		ls, cached = s.cache.get(name, kv)
	}
	if !cached {
		ls = s.build(name, kv)
		if s.cache != nil {
			s.cache.put(ls)
		}
	}
	s.Samples = append(s.Samples, Sample{Labels: ls, T: s.T, V: v})
}

func (s *Scrape) build(name string, kv []string) labels.Labels {
	s.b.Reset(s.base)
	for i := 0; i < len(kv); i += 2 {
		k, val := kv[i], kv[i+1]
		if s.base.Has(k) {
			k = "exported_" + k
		}
		s.b.Set(k, val)
	}
	s.b.Set(model.MetricNameLabel, name)
	return s.b.Labels()
}

// Batch returns the scrape's samples and metadata as a batch. It ends
// the scrape for its label cache, if it has one.
func (s *Scrape) Batch() Batch {
	if s.cache != nil {
		s.cache.end(s)
	}
	return Batch{Samples: s.Samples, Metadata: s.Metadata}
}
