package agent

import (
	"context"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/redwire/redwire/sample"
)

// selfScraper turns the agent's own registry into samples (job="redwire")
// that travel with the Redis samples, so the central side sees every edge
// agent's backlog, degraded flag and drops without reaching into the edge.
type selfScraper struct {
	gatherer prometheus.Gatherer
	base     labels.Labels
	labels   sample.LabelCache // its loop scrapes one at a time
}

// selfFamilies are the families worth their bytes on a metered link:
// redwire's own state plus the process basics.
var selfFamilies = []string{"redwire_", "process_resident_memory_bytes", "process_cpu_seconds_total",
	"process_open_fds", "go_goroutines"}

func newSelfScraper(g prometheus.Gatherer, instance string, external map[string]string) *selfScraper {
	b := labels.NewBuilder(labels.EmptyLabels())
	for k, v := range external {
		b.Set(k, v)
	}
	b.Set("job", "redwire")
	b.Set("instance", instance)
	return &selfScraper{gatherer: g, base: b.Labels()}
}

func (s *selfScraper) Name() string { return "redwire" }

func (s *selfScraper) Scrape(_ context.Context, now time.Time) (*sample.Scrape, error) {
	sc := s.labels.NewScrape(now, s.base)
	mfs, err := s.gatherer.Gather()
	for _, mf := range mfs {
		if !wanted(mf.GetName()) {
			continue
		}
		addFamily(sc, mf)
	}
	return sc, err
}

func wanted(name string) bool {
	for _, p := range selfFamilies {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func addFamily(sc *sample.Scrape, mf *dto.MetricFamily) {
	name, help := mf.GetName(), mf.GetHelp()
	for _, m := range mf.GetMetric() {
		kv := make([]string, 0, 2*len(m.GetLabel())+2)
		for _, lp := range m.GetLabel() {
			kv = append(kv, lp.GetName(), lp.GetValue())
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			sc.Counter(name, help, m.GetCounter().GetValue(), kv...)
		case dto.MetricType_GAUGE:
			sc.Gauge(name, help, m.GetGauge().GetValue(), kv...)
		case dto.MetricType_UNTYPED:
			sc.Gauge(name, help, m.GetUntyped().GetValue(), kv...)
		case dto.MetricType_HISTOGRAM:
			h := m.GetHistogram()
			for _, b := range h.GetBucket() {
				if math.IsInf(b.GetUpperBound(), 1) {
					continue // added below from the sample count
				}
				sc.Add(name+"_bucket", sample.Counter, help, float64(b.GetCumulativeCount()), append(kv, "le", formatFloat(b.GetUpperBound()))...)
			}
			sc.Add(name+"_bucket", sample.Counter, help, float64(h.GetSampleCount()), append(kv, "le", "+Inf")...)
			sc.Add(name+"_sum", sample.Counter, help, h.GetSampleSum(), kv...)
			sc.Add(name+"_count", sample.Counter, help, float64(h.GetSampleCount()), kv...)
		case dto.MetricType_SUMMARY:
			su := m.GetSummary()
			for _, q := range su.GetQuantile() {
				sc.Gauge(name, help, q.GetValue(), append(kv, "quantile", formatFloat(q.GetQuantile()))...)
			}
			sc.Add(name+"_sum", sample.Counter, help, su.GetSampleSum(), kv...)
			sc.Add(name+"_count", sample.Counter, help, float64(su.GetSampleCount()), kv...)
		}
	}
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
