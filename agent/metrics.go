package agent

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redwire/redwire/buffer"
)

// metrics are the agent's own, served on /metrics. They are registered on
// the registry passed to Run, never on the global one.
type metrics struct {
	samplesScraped      *prometheus.CounterVec // target
	scrapes             *prometheus.CounterVec // target
	targetUp            *prometheus.GaugeVec   // target
	scrapeErrors        *prometheus.CounterVec // target, phase
	lastSuccess         *prometheus.GaugeVec   // target
	consecutiveFailures *prometheus.GaugeVec   // target
	scrapeDuration      *prometheus.GaugeVec   // target
	scrapesSkipped      *prometheus.CounterVec // target
	samplesQueued       *prometheus.CounterVec // endpoint
	samplesDropped      *prometheus.CounterVec // endpoint, reason
	samplesThinned      *prometheus.CounterVec // endpoint
	lostSeconds         *prometheus.CounterVec // endpoint, target, reason
	rwSamples           *prometheus.CounterVec // endpoint, result
	rwRequests          *prometheus.CounterVec // endpoint, result
	rwRetries           *prometheus.CounterVec // endpoint
	rwProbes            *prometheus.CounterVec // endpoint, result
	rwDuration          *prometheus.HistogramVec
	lastSendSuccess     *prometheus.GaugeVec   // endpoint
	replaySamples       *prometheus.CounterVec // endpoint
	degraded            *prometheus.GaugeVec   // endpoint
	circuitState        *prometheus.GaugeVec   // endpoint
	paused              *prometheus.GaugeVec   // endpoint, reason
	rwProtocol          *prometheus.GaugeVec   // endpoint, message
	rwRefused           *prometheus.CounterVec // endpoint, cause
	rwBytes             *prometheus.CounterVec // endpoint
	rwUncompressed      *prometheus.CounterVec // endpoint
	budgetHeldRequests  *prometheus.CounterVec // endpoint, stream
	budgetHeldBytes     *prometheus.CounterVec // endpoint, stream
	budgetWait          *prometheus.CounterVec // endpoint, stream
	samplesParked       *prometheus.CounterVec // endpoint
	samplesUnparked     *prometheus.CounterVec // endpoint
	corruptions         *prometheus.CounterVec // endpoint
	buffers             *bufferCollector
	reloadSuccess       prometheus.Gauge
	reloadTime          prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	m := &metrics{
		samplesScraped:      counter("redwire_samples_scraped_total", "Samples taken from each target (after degraded-mode filtering): the 'taken' of taken = sent + dropped + pending.", "target"),
		scrapes:             counter("redwire_target_scrapes_total", "Scrapes of each target whose samples were handed to the buffers.", "target"),
		targetUp:            gauge("redwire_target_up", "Whether the target is up, as redis_up reports it (soft: 0 only after soft_fail_threshold consecutive failures).", "target"),
		scrapeErrors:        counter("redwire_target_scrape_errors_total", "Failed scrapes by phase: connect, auth, timeout, info, parse.", "target", "phase"),
		lastSuccess:         gauge("redwire_target_last_success_timestamp_seconds", "Unix time of the target's last successful scrape.", "target"),
		consecutiveFailures: gauge("redwire_target_consecutive_failures", "Scrapes of the target that failed in a row.", "target"),
		scrapeDuration:      gauge("redwire_target_scrape_duration_seconds", "Duration of the last scrape of the target.", "target"),
		scrapesSkipped:      counter("redwire_target_scrapes_skipped_total", "Scrapes of the target skipped because no slot of global.max_concurrent_scrapes was free before the next one was due.", "target"),
		samplesQueued:       counter("redwire_samples_queued_total", "Samples handed to each endpoint's buffer.", "endpoint"),
		samplesDropped:      counter("redwire_samples_dropped_total", "Samples given up on, by reason: rejected (receiver refused the batch for good), buffer_full (buffer.max_bytes), too_old (buffer.max_age), disk_full (no disk space and memory full), shutdown (could not be stored at shutdown), out_of_order (scraped while the wall clock was behind the last sent scrape of the target, never sent).", "endpoint", "reason"),
		samplesThinned:      counter("redwire_samples_thinned_total", "Samples removed from old data to keep the buffer under buffer.max_bytes: the ranges are kept at a coarser resolution (one scrape per target every kept_every_seconds of GET /api/v1/gaps, down to buffer.thin_floor), nothing of them is lost. Part of taken = sent + dropped + thinned + pending + parked.", "endpoint"),
		lostSeconds:         counter("redwire_lost_seconds_total", "Seconds of a target's data lost, by reason: the reasons of redwire_samples_dropped_total, and agent_down (the agent was not running; the scrapes due meanwhile). Each lost range counts its length plus one scrape interval; GET /api/v1/gaps lists the ranges.", "endpoint", "target", "reason"),
		rwSamples:           counter("redwire_remote_write_samples_total", "Samples in remote-write requests, by result: success or the failure class.", "endpoint", "result"),
		rwRequests:          counter("redwire_remote_write_requests_total", "Remote-write requests, by result: success or the failure class.", "endpoint", "result"),
		rwRetries:           counter("redwire_remote_write_retries_total", "Remote-write requests that resent a batch already tried.", "endpoint"),
		rwProbes:            counter("redwire_remote_write_probes_total", "Empty write requests asking a down endpoint whether it is back, by result (success, or the failure class).", "endpoint", "result"),
		rwDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "redwire_remote_write_request_duration_seconds",
			Help:    "Duration of remote-write requests, whatever their result.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		lastSendSuccess:    gauge("redwire_last_successful_send_timestamp_seconds", "Unix time of the last remote-write request the endpoint accepted.", "endpoint"),
		replaySamples:      counter("redwire_replay_samples_total", "Samples delivered from the disk backlog.", "endpoint"),
		degraded:           gauge("redwire_degraded", "1 while the endpoint is down and the agent buffers to disk and samples less.", "endpoint"),
		circuitState:       gauge("redwire_circuit_state", "Circuit breaker of the endpoint: 0 closed, 1 open, 2 half-open (probe in flight).", "endpoint"),
		paused:             gauge("redwire_remote_write_paused", "1 while sending is paused because the receiver refuses credentials or URL (401, 403, 404); data is kept.", "endpoint", "reason"),
		rwProtocol:         gauge("redwire_remote_write_protocol", "1 for the protobuf message the endpoint is sent now: io.prometheus.write.v2.Request, or prometheus.WriteRequest (configured, or fallen back to when the receiver did not take 2.0).", "endpoint", "message"),
		rwRefused:          counter("redwire_remote_write_refused_samples_total", "Samples the receiver refused for good, by cause: age (older than its window: parked, not dropped), duplicate (another value at the same time), limits (a tenant limit), malformed, unknown.", "endpoint", "cause"),
		rwBytes:            counter("redwire_remote_write_bytes_total", "Bytes of remote-write request bodies as sent (compressed), every request counted: data, retries, probes and the out-of-order check. HTTP headers are not counted.", "endpoint"),
		rwUncompressed:     counter("redwire_remote_write_uncompressed_bytes_total", "Bytes of the protobuf those request bodies compress: redwire_remote_write_bytes_total over it is the compression ratio.", "endpoint"),
		budgetHeldRequests: counter("redwire_remote_write_budget_held_requests_total", "Requests the endpoint's link budget (max_bytes_per_second, max_bytes_per_day) held back, by stream: backlog (from the disk buffer) or live.", "endpoint", "stream"),
		budgetHeldBytes:    counter("redwire_remote_write_budget_held_bytes_total", "Bytes of the requests the link budget held back, by stream.", "endpoint", "stream"),
		budgetWait:         counter("redwire_remote_write_budget_wait_seconds_total", "Seconds requests waited for the link budget, by stream; the data waited in the buffer meanwhile.", "endpoint", "stream"),
		samplesParked:      counter("redwire_samples_parked_total", "Samples the receiver refused for their age, moved to the parked area of the endpoint's buffer file (redwire_buffer_parked_samples holds them now).", "endpoint"),
		samplesUnparked:    counter("redwire_samples_unparked_total", "Parked samples delivered after all, within the receiver's declared out_of_order_time_window.", "endpoint"),
		corruptions:        counter("redwire_buffer_corruptions_total", "Buffer files found unreadable and moved aside, plus records quarantined for a bad checksum.", "endpoint"),
		buffers:            &bufferCollector{},
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redwire_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt succeeded."}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "redwire_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload (or of the start)."}),
	}
	reg.MustRegister(m.samplesScraped, m.scrapes, m.targetUp, m.scrapeErrors, m.lastSuccess, m.consecutiveFailures, m.scrapeDuration, m.scrapesSkipped, m.samplesQueued,
		m.samplesDropped, m.samplesThinned, m.lostSeconds, m.rwSamples, m.rwRequests, m.rwRetries, m.rwProbes, m.rwDuration,
		m.lastSendSuccess, m.replaySamples, m.degraded, m.circuitState, m.paused, m.rwProtocol,
		m.rwRefused, m.rwBytes, m.rwUncompressed, m.budgetHeldRequests, m.budgetHeldBytes, m.budgetWait, m.samplesParked, m.samplesUnparked, m.corruptions, m.buffers, m.reloadSuccess, m.reloadTime)
	return m
}

// initEndpoint creates every labelled series of an endpoint so dashboards
// see zeros, not gaps.
func (m *metrics) initEndpoint(name string) {
	m.samplesQueued.WithLabelValues(name)
	m.rwRetries.WithLabelValues(name)
	m.rwSamples.WithLabelValues(name, "success")
	m.rwRequests.WithLabelValues(name, "success")
	m.replaySamples.WithLabelValues(name)
	m.degraded.WithLabelValues(name)
	m.circuitState.WithLabelValues(name)
	m.corruptions.WithLabelValues(name)
	m.samplesParked.WithLabelValues(name)
	m.samplesThinned.WithLabelValues(name)
	m.samplesUnparked.WithLabelValues(name)
	m.rwBytes.WithLabelValues(name)
	m.rwUncompressed.WithLabelValues(name)
	for _, r := range dropReasons {
		m.samplesDropped.WithLabelValues(name, r)
	}
}

// bufferCollector reads every buffer's state when /metrics is scraped,
// so the gauges are never stale and cost nothing between scrapes.
type bufferCollector struct {
	mu    sync.Mutex // a reload adds and removes buffers
	names []string
	bufs  []*buffer.Buffer
	progs []*progress // nil for the buffer-only mode's buffer
	// budgets are the endpoints' link budgets (nil for the local
	// buffer): here, so that a reload's new sender keeps its endpoint's.
	budgets []*linkBudget
	gaps    []*gapLog
	fills   []*fillRate
	now     func() time.Time
}

var (
	bufBytesDesc     = prometheus.NewDesc("redwire_buffer_bytes", "Bytes of samples held in the endpoint's disk buffer.", []string{"endpoint"}, nil)
	bufFileDesc      = prometheus.NewDesc("redwire_buffer_file_bytes", "Size of the endpoint's buffer file on disk.", []string{"endpoint"}, nil)
	bufBatchesDesc   = prometheus.NewDesc("redwire_buffer_batches", "Batches held in the endpoint's disk buffer.", []string{"endpoint"}, nil)
	bufSamplesDesc   = prometheus.NewDesc("redwire_buffer_samples", "Samples held in the endpoint's disk buffer.", []string{"endpoint"}, nil)
	bufOldestDesc    = prometheus.NewDesc("redwire_buffer_oldest_timestamp_seconds", "Timestamp of the oldest sample in the endpoint's disk buffer; 0 when empty.", []string{"endpoint"}, nil)
	quarantineDesc   = prometheus.NewDesc("redwire_buffer_quarantined_records_total", "Buffered records whose checksum failed, moved to the file's quarantine bucket (kept, never sent) since start.", []string{"endpoint"}, nil)
	timeToFullDesc   = prometheus.NewDesc("redwire_buffer_time_to_full_seconds", "At the pace the endpoint's disk buffer has grown lately, how long until it reaches buffer.max_bytes or the disk's buffer.min_free_bytes; absent while it is not growing.", []string{"endpoint"}, nil)
	parkedDesc       = prometheus.NewDesc("redwire_buffer_parked_samples", "Samples the receiver refused for their age, parked in the endpoint's buffer file: sent again within a declared out_of_order_time_window, or written into TSDB blocks by redwire backfill. Part of taken = sent + dropped + pending + parked.", []string{"endpoint"}, nil)
	parkedBytesDesc  = prometheus.NewDesc("redwire_buffer_parked_bytes", "Bytes of the parked samples in the endpoint's buffer file (counted in buffer.max_bytes).", []string{"endpoint"}, nil)
	parkedOldestDesc = prometheus.NewDesc("redwire_buffer_parked_oldest_timestamp_seconds", "Timestamp of the oldest parked sample; 0 when none.", []string{"endpoint"}, nil)
	parkedNewestDesc = prometheus.NewDesc("redwire_buffer_parked_newest_timestamp_seconds", "Timestamp of the newest parked sample; 0 when none.", []string{"endpoint"}, nil)
	memSamplesDesc   = prometheus.NewDesc("redwire_queue_samples", "Samples waiting in the endpoint's memory queue, including a batch in flight.", []string{"endpoint"}, nil)
)

// add is called before the collector is first gathered.
func (c *bufferCollector) add(name string, b *buffer.Buffer, p *progress, g *gapLog) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = append(c.names, name)
	c.bufs = append(c.bufs, b)
	c.progs = append(c.progs, p)
	var lb *linkBudget
	if p != nil {
		lb = newLinkBudget()
	}
	c.budgets = append(c.budgets, lb)
	c.gaps = append(c.gaps, g)
	c.fills = append(c.fills, &fillRate{})
}

// fillOf is how fast the named endpoint's buffer grows; nil if it is
// gone.
func (c *bufferCollector) fillOf(name string) *fillRate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.names, name); i >= 0 {
		return c.fills[i]
	}
	return nil
}

// gapsOf is the lost ranges of the named endpoint; nil if it is gone.
func (c *bufferCollector) gapsOf(name string) *gapLog {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.names, name); i >= 0 {
		return c.gaps[i]
	}
	return nil
}

// budgetOf is the link budget of the named endpoint; nil if it has
// none.
func (c *bufferCollector) budgetOf(name string) *linkBudget {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.names, name); i >= 0 {
		return c.budgets[i]
	}
	return nil
}

// progressOf is the delivery progress of the named endpoint; nil if it
// has none.
func (c *bufferCollector) progressOf(name string) *progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.names, name); i >= 0 {
		return c.progs[i]
	}
	return nil
}

// remove stops reporting the named buffer (an endpoint removed by reload).
func (c *bufferCollector) remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.names, name); i >= 0 {
		c.names = slices.Delete(c.names, i, i+1)
		c.bufs = slices.Delete(c.bufs, i, i+1)
		c.progs = slices.Delete(c.progs, i, i+1)
		c.budgets = slices.Delete(c.budgets, i, i+1)
		c.gaps = slices.Delete(c.gaps, i, i+1)
		c.fills = slices.Delete(c.fills, i, i+1)
	}
}

func (c *bufferCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{bufBytesDesc, bufFileDesc, bufBatchesDesc, bufSamplesDesc, bufOldestDesc, quarantineDesc, parkedDesc, parkedBytesDesc, parkedOldestDesc, parkedNewestDesc, memSamplesDesc, lagDesc, drainDesc, timeToFullDesc, budgetDayBytesDesc, budgetDayResetDesc, budgetDaySpentDesc} {
		ch <- d
	}
}

func (c *bufferCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, b := range c.bufs {
		st, n := b.Stats(), c.names[i]
		ch <- prometheus.MustNewConstMetric(bufBytesDesc, prometheus.GaugeValue, float64(st.Store.Bytes), n)
		ch <- prometheus.MustNewConstMetric(bufFileDesc, prometheus.GaugeValue, float64(st.Store.FileBytes), n)
		ch <- prometheus.MustNewConstMetric(bufBatchesDesc, prometheus.GaugeValue, float64(st.Store.Batches), n)
		ch <- prometheus.MustNewConstMetric(bufSamplesDesc, prometheus.GaugeValue, float64(st.Store.Samples), n)
		ch <- prometheus.MustNewConstMetric(bufOldestDesc, prometheus.GaugeValue, float64(st.Store.OldestT)/1000, n)
		ch <- prometheus.MustNewConstMetric(quarantineDesc, prometheus.CounterValue, float64(b.Quarantined()), n)
		ch <- prometheus.MustNewConstMetric(memSamplesDesc, prometheus.GaugeValue, float64(st.MemorySamples), n)
		pk := b.Parked()
		ch <- prometheus.MustNewConstMetric(parkedDesc, prometheus.GaugeValue, float64(pk.Samples), n)
		ch <- prometheus.MustNewConstMetric(parkedBytesDesc, prometheus.GaugeValue, float64(pk.Bytes), n)
		ch <- prometheus.MustNewConstMetric(parkedOldestDesc, prometheus.GaugeValue, float64(pk.MinT)/1000, n)
		ch <- prometheus.MustNewConstMetric(parkedNewestDesc, prometheus.GaugeValue, float64(pk.MaxT)/1000, n)
		if ttf, ok := c.fills[i].timeToFull(b.Room()); ok {
			ch <- prometheus.MustNewConstMetric(timeToFullDesc, prometheus.GaugeValue, ttf, n)
		}
		if lb := c.budgets[i]; lb != nil {
			lb.collect(ch, n)
		}
		if p := c.progs[i]; p != nil {
			now := time.Now()
			if c.now != nil {
				now = c.now()
			}
			if lag, ok := p.lag(now); ok {
				ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, lag, n)
			}
			if d, ok := p.drainEstimate(st.Store.Samples, now); ok {
				ch <- prometheus.MustNewConstMetric(drainDesc, prometheus.GaugeValue, d, n)
			}
		}
	}
}

// forgetTarget deletes the per-target series of a target that is no
// longer scraped, so a churning cluster does not grow /metrics forever.
func (m *metrics) forgetTarget(name string) {
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.samplesScraped, m.scrapes, m.targetUp, m.scrapeErrors, m.lastSuccess,
		m.consecutiveFailures, m.scrapeDuration, m.scrapesSkipped,
	} {
		v.DeletePartialMatch(prometheus.Labels{"target": name})
	}
}
