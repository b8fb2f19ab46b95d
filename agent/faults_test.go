package agent

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"

	"github.com/redwire/redwire/buffer"
	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// The fault tests put the harness proxy between the agent and a real
// Prometheus and make the receiver misbehave the ways remote write 1.0
// names (5xx, 429, 400, 413, 401, a hung receiver). Each checks what an
// operator is promised: which data arrives, which is dropped and counted,
// which state the agent reports, and what it logs.

// sampleWindow is how far back the receiver is read: longer than any test.
const sampleWindow = 10 * time.Minute

// faultRig is one Redis, a real Prometheus behind the fault proxy, and an
// agent config writing through the proxy. Self metrics are off, so every
// request carries only the Redis target's samples and counts stay exact.
type faultRig struct {
	prom   *harness.Prometheus
	proxy  *harness.Proxy
	cfg    *Config
	target string // the target label in the agent's metrics

	// Set by start.
	ep    string // the endpoint label in the agent's metrics
	logs  *syncBuffer
	agent *testAgent
}

// newFaultRig starts the servers and builds the config; queue faults and
// tweak rig.cfg, then call start. When the test ends, after the agent has
// stopped, it checks that Prometheus refused none of what it was sent.
func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	r := harness.StartRedis(t)
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	cfg := testConfig(t, proxy.URL()+"/api/v1/write", redis.TargetConfig{Addr: r.URL()})
	off := false
	cfg.SelfMetrics.Enabled = &off
	rig := &faultRig{prom: prom, proxy: proxy, cfg: cfg, target: r.Addr()}
	t.Cleanup(func() { rig.assertReceiverRefusedNothing(t) })
	return rig
}

// start runs the agent until the test ends.
func (r *faultRig) start(t *testing.T) {
	t.Helper()
	r.ep = r.cfg.RemoteWrite[0].Label()
	r.agent = runAgent(t, r.cfg)
	r.logs = r.agent.logs
}

// metric reads an endpoint series of the agent's /metrics, e.g.
// r.metric(t, "redwire_samples_dropped_total", `reason="rejected"`);
// -1 if absent. Exposition sorts labels, and every one of ours sorts after
// "endpoint".
func (r *faultRig) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	series := fmt.Sprintf("%s{%s}", name, strings.Join(append([]string{fmt.Sprintf("endpoint=%q", r.ep)}, labels...), ","))
	return agentMetric(t, r.cfg, series)
}

// waitMetric waits until an endpoint series has the value want.
func (r *faultRig) waitMetric(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	what := fmt.Sprintf("%s = %v", name, want)
	if len(labels) > 0 {
		what = fmt.Sprintf("%s{%s} = %v", name, strings.Join(labels, ","), want)
	}
	harness.WaitFor(t, 30*time.Second, what, func() (bool, error) {
		got := r.metric(t, name, labels...)
		return got == want, fmt.Errorf("value %v", got)
	})
}

// waitRequests waits until the proxy has finished n requests and returns
// all it has finished, in order.
func (r *faultRig) waitRequests(t *testing.T, n int) []harness.Request {
	t.Helper()
	var reqs []harness.Request
	harness.WaitFor(t, 30*time.Second, fmt.Sprintf("%d requests at the proxy", n), func() (bool, error) {
		reqs = r.proxy.Requests()
		return len(reqs) >= n, fmt.Errorf("%d requests", len(reqs))
	})
	for i, req := range reqs {
		if req.Write == nil {
			t.Fatalf("request %d: no decodable write request: %v", i, req.DecodeErr)
		}
	}
	return reqs
}

// waitScrapeBufferedWhileDown, called once the endpoint is down, waits
// until the disk holds one more record than now: a scrape taken while
// down, queued behind what was spilled, so the replay that follows has a
// backlog written in both ways.
func (r *faultRig) waitScrapeBufferedWhileDown(t *testing.T) {
	t.Helper()
	spilled := r.metric(t, "redwire_buffer_batches")
	harness.WaitFor(t, 30*time.Second, "a scrape buffered while the endpoint is down", func() (bool, error) {
		n := r.metric(t, "redwire_buffer_batches")
		return n > spilled, fmt.Errorf("%v batches on disk, %v when down", n, spilled)
	})
}

// assertNothingDropped: every reason the agent counts drops under is 0.
func (r *faultRig) assertNothingDropped(t *testing.T) {
	t.Helper()
	for _, reason := range []string{"rejected", "buffer_full", "too_old", "disk_full"} {
		if v := r.metric(t, "redwire_samples_dropped_total", fmt.Sprintf("reason=%q", reason)); v != 0 {
			t.Errorf("redwire_samples_dropped_total{reason=%q} = %v, want 0", reason, v)
		}
	}
}

// assertNotDegraded: the circuit is closed and the endpoint not down.
func (r *faultRig) assertNotDegraded(t *testing.T) {
	t.Helper()
	if v := r.metric(t, "redwire_degraded"); v != 0 {
		t.Errorf("redwire_degraded = %v, want 0", v)
	}
	if v := r.metric(t, "redwire_circuit_state"); v != circuitClosed {
		t.Errorf("redwire_circuit_state = %v, want %d (closed)", v, circuitClosed)
	}
}

// assertStored waits until every sample of want (sampleKeys) is in
// Prometheus with its own timestamp and value.
func (r *faultRig) assertStored(t *testing.T, what string, want []string) {
	t.Helper()
	harness.WaitFor(t, 30*time.Second, what+" stored in Prometheus", func() (bool, error) {
		have, err := r.stored()
		if err != nil {
			return false, err
		}
		var missing []string
		for _, k := range want {
			if !have[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			return false, fmt.Errorf("%d of %d samples missing, e.g. %s", len(missing), len(want), missing[0])
		}
		return true, nil
	})
}

// stored is every Redis sample in Prometheus, as sampleKeys.
func (r *faultRig) stored() (map[string]bool, error) {
	series, err := r.prom.Samples(context.Background(), `{job="redis"}`, sampleWindow)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, s := range series {
		for _, p := range s.Points {
			have[sampleKey(s.Labels, p.T.UnixMilli(), p.V)] = true
		}
	}
	return have, nil
}

// waitEveryScrapeStored waits until Prometheus holds one redis_up sample
// per scrape the agent took: nothing taken was lost on the way, through
// retries, the disk buffer and replay alike. The scrape counter is read
// before and after the receiver, so a scrape landing in between cannot
// make the counts meet by accident.
func (r *faultRig) waitEveryScrapeStored(t *testing.T) {
	t.Helper()
	scrapes := fmt.Sprintf(`redwire_target_scrapes_total{target=%q}`, r.target)
	harness.WaitFor(t, 30*time.Second, "a redis_up sample in Prometheus for every scrape taken", func() (bool, error) {
		before := agentMetric(t, r.cfg, scrapes)
		series, err := r.prom.Samples(context.Background(), "redis_up", sampleWindow)
		if err != nil {
			return false, err
		}
		after := agentMetric(t, r.cfg, scrapes)
		stored := 0
		for _, s := range series {
			stored += len(s.Points)
		}
		if before <= 0 || before != after || float64(stored) != after {
			return false, fmt.Errorf("%d redis_up samples stored, %v scrapes taken (%v before the query)", stored, after, before)
		}
		return true, nil
	})
}

// assertReceiverRefusedNothing: Prometheus counted no sample as out of
// order or out of bounds, i.e. the agent kept every series in time order
// through all retries and replays.
func (r *faultRig) assertReceiverRefusedNothing(t *testing.T) {
	t.Helper()
	for _, m := range []string{"prometheus_tsdb_out_of_order_samples_total", "prometheus_tsdb_out_of_bound_samples_total"} {
		if v, err := r.prom.Metric(context.Background(), m); err != nil || v != 0 {
			t.Errorf("Prometheus %s = %v (err %v), want 0", m, v, err)
		}
	}
}

// sampleKeys flattens a write request to one key per sample, in request
// order: series by series, samples in time order.
func sampleKeys(wr *prompb.WriteRequest) []string {
	var keys []string
	for _, ts := range wr.Timeseries {
		ls := make(map[string]string, len(ts.Labels))
		for _, l := range ts.Labels {
			ls[l.Name] = l.Value
		}
		for _, s := range ts.Samples {
			keys = append(keys, sampleKey(ls, s.Timestamp, s.Value))
		}
	}
	return keys
}

// sampleKey names one sample by label set, millisecond timestamp and exact
// value (NaN included), the same whether read off the wire or the TSDB.
func sampleKey(ls map[string]string, ms int64, v float64) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(ls)) {
		fmt.Fprintf(&b, "%s=%q,", name, ls[name])
	}
	fmt.Fprintf(&b, "@%d=%s", ms, strconv.FormatFloat(v, 'g', -1, 64))
	return b.String()
}

// TestFault500IsRetriedAndDelivered: a receiver's 5xx loses nothing. The
// batch that failed is sent again, unchanged, until it is accepted; the
// retries are counted; a short outage neither drops data nor declares the
// endpoint down.
func TestFault500IsRetriedAndDelivered(t *testing.T) {
	rig := newFaultRig(t)
	rig.proxy.Fail(2, http.StatusInternalServerError, nil, "try later")
	rig.start(t)

	reqs := rig.waitRequests(t, 3)
	batch := sampleKeys(reqs[0].Write)
	for i, req := range reqs[:3] {
		if i < 2 && req.Status != http.StatusInternalServerError {
			t.Fatalf("request %d answered %d, want the queued 500", i, req.Status)
		}
		if i == 2 && (!req.Forwarded || req.Status/100 != 2) {
			t.Fatalf("request 2: forwarded %v, status %d, err %v; want accepted by Prometheus", req.Forwarded, req.Status, req.Err)
		}
		if got := sampleKeys(req.Write); !slices.Equal(got, batch) {
			t.Errorf("request %d carries %d samples that differ from the failed batch's %d: the failed batch was not resent as it was", i, len(got), len(batch))
		}
	}
	rig.assertStored(t, "the batch answered 500 twice", batch)

	if v := rig.metric(t, "redwire_remote_write_retries_total"); v != 2 {
		t.Errorf("redwire_remote_write_retries_total = %v, want 2 (one per resend after a 500)", v)
	}
	rig.assertNothingDropped(t)
	rig.assertNotDegraded(t)
}

// requestCounter stands between the agent and a receiver (or the fault
// proxy) and counts the remote-write requests begun and answered (or
// abandoned), and the most it ever had open at once. Remote write 1.0 from
// one queue must not send the next batch before the previous one is
// answered, and a 429 must never be met with more concurrency.
type requestCounter struct {
	next http.Handler

	mu                    sync.Mutex
	begun, answered, peak int
}

func (c *requestCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.begun++
	c.peak = max(c.peak, c.begun-c.answered)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.answered++
		c.mu.Unlock()
	}()
	c.next.ServeHTTP(w, r)
}

// most is the peak number of requests open at once.
func (c *requestCounter) most() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak
}

// counts returns the requests begun and answered (or abandoned) so far.
func (c *requestCounter) counts() (begun, answered int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.begun, c.answered
}

// startRequestCounter serves a counter forwarding to upstream until the
// test ends and returns it with its remote-write URL.
func startRequestCounter(t *testing.T, upstream string) (*requestCounter, string) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	rp.Transport = tr
	c := &requestCounter{next: rp}
	srv := httptest.NewServer(c)
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	return c, srv.URL + "/api/v1/write"
}

// countInFlight points the agent at a requestCounter in front of the
// proxy; call it before start.
func (r *faultRig) countInFlight(t *testing.T) *requestCounter {
	t.Helper()
	c, writeURL := startRequestCounter(t, r.proxy.URL())
	w, err := url.Parse(writeURL)
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.RemoteWrite[0].URL = &config.URL{URL: w}
	return c
}

// earliestRetry is the first moment RFC 9110 lets a client retry after a
// 429 answered at `answered` with Retry-After v (delay-seconds or an
// HTTP-date).
func earliestRetry(t *testing.T, v string, answered time.Time) time.Time {
	t.Helper()
	if s, err := strconv.Atoi(v); err == nil {
		return answered.Add(time.Duration(s) * time.Second)
	}
	d, err := http.ParseTime(v)
	if err != nil {
		t.Fatalf("Retry-After %q is neither delay-seconds nor an HTTP-date", v)
	}
	return d
}

// TestFault429HonoursRetryAfter: a rate-limited agent waits as long as
// the receiver asks, in either form of Retry-After, then delivers the same
// batch, one request at a time.
func TestFault429HonoursRetryAfter(t *testing.T) {
	cases := []struct {
		name       string
		retryAfter func(now time.Time) string
	}{
		{"delay-seconds", func(time.Time) string { return "2" }},
		// The date must still lie ahead when the first request arrives,
		// ~1 s after start, and HTTP-dates drop sub-seconds.
		{"http-date", func(now time.Time) string { return now.Add(4 * time.Second).UTC().Format(http.TimeFormat) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rig := newFaultRig(t)
			meter := rig.countInFlight(t)
			retryAfter := c.retryAfter(time.Now())
			rig.proxy.Fail(1, http.StatusTooManyRequests, http.Header{"Retry-After": {retryAfter}}, "slow down")
			rig.start(t)

			reqs := rig.waitRequests(t, 2)
			limited, next := reqs[0], reqs[1]
			if limited.Status != http.StatusTooManyRequests {
				t.Fatalf("first request answered %d, want the queued 429", limited.Status)
			}
			// limited.Received is before the 429 left the proxy, so this
			// bound is one the agent must meet whatever the latency.
			if earliest := earliestRetry(t, retryAfter, limited.Received); next.Received.Before(earliest) {
				t.Errorf("next request %v after the 429, before Retry-After %q allows (%v after)",
					next.Received.Sub(limited.Received), retryAfter, earliest.Sub(limited.Received))
			}
			batch := sampleKeys(limited.Write)
			if !next.Forwarded || next.Status/100 != 2 {
				t.Fatalf("request after the 429: forwarded %v, status %d, err %v; want accepted", next.Forwarded, next.Status, next.Err)
			}
			if !slices.Equal(sampleKeys(next.Write), batch) {
				t.Errorf("the request after the 429 is not the rate-limited batch")
			}
			rig.assertStored(t, "the rate-limited batch", batch)

			rig.waitRequests(t, 4) // a few more, to see they stay one at a time
			if n := meter.most(); n != 1 {
				t.Errorf("%d requests in flight at once, want 1", n)
			}
			if v := rig.metric(t, "redwire_remote_write_retries_total"); v != 1 {
				t.Errorf("redwire_remote_write_retries_total = %v, want 1", v)
			}
			rig.assertNothingDropped(t)
			rig.assertNotDegraded(t)
		})
	}
}

// TestFault400DropsAndCounts: a batch the receiver refuses for good is
// dropped, counted sample for sample under reason="rejected", and logged
// once with the receiver's reason; later batches flow as before and the
// endpoint is not declared down.
func TestFault400DropsAndCounts(t *testing.T) {
	rig := newFaultRig(t)
	rig.proxy.Fail(1, http.StatusBadRequest, nil, "bad sample")
	rig.start(t)

	reqs := rig.waitRequests(t, 3)
	if reqs[0].Status != http.StatusBadRequest {
		t.Fatalf("first request answered %d, want the queued 400", reqs[0].Status)
	}
	// The metadata rode with the refused batch (the first one carries it
	// all), so the receiver never got it: the next request carries it
	// again, not the periodic resend a minute later.
	refusedMeta := metadataFamilies(reqs[0].Write)
	if len(refusedMeta) == 0 {
		t.Fatal("the refused request carried no metadata; the first request should carry all of it")
	}
	resent := metadataFamilies(reqs[1].Write)
	for _, f := range refusedMeta {
		if !slices.Contains(resent, f) {
			t.Errorf("the request after the 400 carries the metadata of %d families, not that of %s (of %d the refused one carried)",
				len(resent), f, len(refusedMeta))
			break
		}
	}
	rejected := sampleKeys(reqs[0].Write)
	var later []string
	for i, req := range reqs[1:3] {
		if !req.Forwarded || req.Status/100 != 2 {
			t.Fatalf("request %d after the 400: forwarded %v, status %d, err %v; want accepted", i+1, req.Forwarded, req.Status, req.Err)
		}
		later = append(later, sampleKeys(req.Write)...)
	}
	for _, k := range rejected {
		if slices.Contains(later, k) {
			t.Fatalf("the rejected batch was sent again (%s): a 400 must not be retried", k)
		}
	}
	rig.assertStored(t, "the batches after the rejected one", later)

	have, err := rig.stored()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range rejected {
		if have[k] {
			t.Fatalf("a sample of the rejected batch reached Prometheus: %s", k)
		}
	}
	if v := rig.metric(t, "redwire_samples_dropped_total", `reason="rejected"`); v != float64(len(rejected)) {
		t.Errorf(`redwire_samples_dropped_total{reason="rejected"} = %v, want %d (the samples in the 400'd request)`, v, len(rejected))
	}
	if n := rig.logs.Count("rejected", "bad sample"); n != 1 {
		t.Errorf("%d log lines with \"rejected\" and the receiver's body, want 1", n)
	}
	if n := rig.logs.Count("bad sample"); n != 1 {
		t.Errorf("the receiver's body is on %d log lines, want 1", n)
	}
	rig.assertNotDegraded(t)

	rig.agent.stop() // graceful: what is queued is sent, the counters final
	if acc := assertAccounted(t, rig.agent.reg, rig.ep, buffer.DropRejected); acc.dropped != float64(len(rejected)) || acc.pending != 0 {
		t.Errorf("after the stop: %v; want the %d samples of the 400'd request dropped and nothing pending", acc, len(rejected))
	}
}

// metadataFamilies lists the families whose metadata a request carries.
func metadataFamilies(wr *prompb.WriteRequest) []string {
	var fs []string
	for _, m := range wr.Metadata {
		fs = append(fs, m.MetricFamilyName)
	}
	return fs
}

// TestFault401PausesAndKeepsData: a receiver refusing our credentials
// pauses sending, says so once and in a metric, and keeps every sample on
// disk; once it takes them again, the backlog is delivered in full and the
// agent returns to normal.
func TestFault401PausesAndKeepsData(t *testing.T) {
	rig := newFaultRig(t)
	rig.proxy.Fail(-1, http.StatusUnauthorized, nil, "bad token")
	rig.start(t)

	rig.waitMetric(t, 1, "redwire_remote_write_paused", `reason="unauthorized"`)
	rig.waitMetric(t, 1, "redwire_degraded")
	// Spilled before the endpoint was marked down, and nothing can leave.
	if v := rig.metric(t, "redwire_buffer_samples"); v <= 0 {
		t.Errorf("redwire_buffer_samples = %v once degraded, want the queue on disk", v)
	}
	rig.waitScrapeBufferedWhileDown(t)
	rig.waitRequests(t, 5)
	if n := rig.logs.Count("credentials"); n != 1 {
		t.Errorf("%d log lines about credentials after several 401s, want 1", n)
	}
	rig.assertNothingDropped(t)

	rig.proxy.Clear()
	rig.waitMetric(t, 0, "redwire_remote_write_paused", `reason="unauthorized"`)
	rig.waitMetric(t, 0, "redwire_degraded")
	rig.waitEveryScrapeStored(t)
	rig.waitMetric(t, 0, "redwire_buffer_samples")
	rig.assertNothingDropped(t)
	rig.assertNotDegraded(t)
}

// TestFaultSlowReceiverTimesOutAndRetries: a receiver slower than
// remote_timeout counts as failing; after degraded.failure_threshold
// timeouts the endpoint is declared down and data goes to disk; once the
// receiver is fast again every sample taken arrives.
func TestFaultSlowReceiverTimesOutAndRetries(t *testing.T) {
	rig := newFaultRig(t)
	rig.cfg.RemoteWrite[0].RemoteTimeout = model.Duration(300 * time.Millisecond)
	rig.proxy.Delay(2 * time.Second)
	rig.start(t)

	rig.waitMetric(t, 1, "redwire_degraded")
	reqs := rig.waitRequests(t, rig.cfg.Degraded.FailureThreshold)
	for i, req := range reqs {
		if req.Forwarded || req.Status != 0 {
			t.Errorf("request %d while the receiver hangs: forwarded %v, status %d; want abandoned by the agent's timeout", i, req.Forwarded, req.Status)
		}
	}
	if v := rig.metric(t, "redwire_remote_write_requests_total", `result="retry"`); v < float64(rig.cfg.Degraded.FailureThreshold) {
		t.Errorf(`redwire_remote_write_requests_total{result="retry"} = %v, want at least the failure threshold %d`, v, rig.cfg.Degraded.FailureThreshold)
	}
	if v := rig.metric(t, "redwire_circuit_state"); v != circuitOpen && v != circuitHalfOpen {
		t.Errorf("redwire_circuit_state = %v while degraded, want open or half-open", v)
	}

	rig.waitScrapeBufferedWhileDown(t)

	rig.proxy.Delay(0)
	rig.waitMetric(t, 0, "redwire_degraded")
	rig.waitEveryScrapeStored(t)
	rig.assertNothingDropped(t)
	rig.assertNotDegraded(t)
}
