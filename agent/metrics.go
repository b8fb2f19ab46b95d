package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's own, served on /metrics. They are registered on
// the registry passed to Run, never on the global one.
type metrics struct {
	samplesScraped  *prometheus.CounterVec // target
	targetUp        *prometheus.GaugeVec   // target
	scrapeDuration  *prometheus.GaugeVec   // target
	samplesQueued   *prometheus.CounterVec // endpoint
	queueSamples    *prometheus.GaugeVec   // endpoint
	samplesDropped  *prometheus.CounterVec // endpoint, reason
	rwSamples       *prometheus.CounterVec // endpoint, result
	rwRequests      *prometheus.CounterVec // endpoint, result
	rwRetries       *prometheus.CounterVec // endpoint
	rwDuration      *prometheus.HistogramVec
	lastSendSuccess *prometheus.GaugeVec // endpoint
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		samplesScraped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redwire_samples_scraped_total",
			Help: "Samples taken from each target, before any queueing.",
		}, []string{"target"}),
		targetUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redwire_target_up",
			Help: "Whether the last scrape of the target succeeded.",
		}, []string{"target"}),
		scrapeDuration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redwire_target_scrape_duration_seconds",
			Help: "Duration of the last scrape of the target.",
		}, []string{"target"}),
		samplesQueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redwire_samples_queued_total",
			Help: "Samples put on each endpoint's queue.",
		}, []string{"endpoint"}),
		queueSamples: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redwire_queue_samples",
			Help: "Samples waiting in each endpoint's in-memory queue, excluding the batch in flight.",
		}, []string{"endpoint"}),
		samplesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redwire_samples_dropped_total",
			Help: "Samples given up on, by reason (queue_full: memory queue over capacity; rejected: receiver refused the batch; retries_exhausted; shutdown: not sent before the shutdown deadline).",
		}, []string{"endpoint", "reason"}),
		rwSamples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redwire_remote_write_samples_total",
			Help: "Samples in remote-write requests, by result (success or the failure class).",
		}, []string{"endpoint", "result"}),
		rwRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redwire_remote_write_requests_total",
			Help: "Remote-write requests, by result (success or the failure class).",
		}, []string{"endpoint", "result"}),
		rwRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redwire_remote_write_retries_total",
			Help: "Remote-write requests that were sends of a batch already tried.",
		}, []string{"endpoint"}),
		rwDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "redwire_remote_write_request_duration_seconds",
			Help:    "Duration of remote-write requests, whatever their result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		lastSendSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "redwire_last_successful_send_timestamp_seconds",
			Help: "Unix time of the last remote-write request the endpoint accepted.",
		}, []string{"endpoint"}),
	}
	reg.MustRegister(m.samplesScraped, m.targetUp, m.scrapeDuration, m.samplesQueued,
		m.queueSamples, m.samplesDropped, m.rwSamples, m.rwRequests, m.rwRetries,
		m.rwDuration, m.lastSendSuccess)
	return m
}
