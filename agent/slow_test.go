package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// The slow tests hold what the agent talks to: a Redis that answers
// nothing (frozen with SIGSTOP) and a receiver that holds a write
// unanswered. Neither may hold up the scrapes of the other targets or the
// agent's HTTP endpoints. Nothing here measures speed, and no timeout
// decides an outcome: each stall lasts until the test ends it, and a check
// holds "while stuck" because the stuck thing is seen still stuck after
// it (the write still unanswered, the same scrape still in flight). The
// bounds below only end a broken run.

const (
	// slowProgress is how many more scrapes every unaffected target must
	// make while something is stuck.
	slowProgress = 3
	// slowWait bounds every wait here, and each request to the agent's
	// HTTP endpoints; reaching it is a failure.
	slowWait = time.Minute
)

// webProbe reads the agent's HTTP endpoints with a client of its own.
type webProbe struct {
	base    string
	client  *http.Client
	targets []string // the instances /api/v1/targets must list, sorted
}

func newWebProbe(t *testing.T, cfg *Config, targets []string) *webProbe {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &webProbe{
		base:    "http://" + cfg.Web.ListenAddress,
		client:  &http.Client{Transport: tr, Timeout: slowWait},
		targets: slices.Sorted(slices.Values(targets)),
	}
}

// check fails the test unless /metrics, /api/v1/targets and /api/v1/status
// each answer in full, while what names something stuck.
func (p *webProbe) check(t *testing.T, while string) {
	t.Helper()
	body := p.get(t, "/metrics", while)
	if !bytes.Contains(body, []byte("redwire_target_scrapes_total{")) {
		t.Fatalf("GET /metrics while %s: no redwire_target_scrapes_total series in %d bytes", while, len(body))
	}
	var targets struct {
		Status string       `json:"status"`
		Data   []targetInfo `json:"data"`
	}
	if err := json.Unmarshal(p.get(t, "/api/v1/targets", while), &targets); err != nil {
		t.Fatalf("GET /api/v1/targets while %s: %v", while, err)
	}
	var got []string
	for _, ti := range targets.Data {
		got = append(got, ti.Instance)
	}
	slices.Sort(got)
	if targets.Status != "success" || !slices.Equal(got, p.targets) {
		t.Fatalf("GET /api/v1/targets while %s: status %q, targets %v; want success and %v", while, targets.Status, got, p.targets)
	}
	var st struct {
		Status string `json:"status"`
		Data   status `json:"data"`
	}
	if err := json.Unmarshal(p.get(t, "/api/v1/status", while), &st); err != nil {
		t.Fatalf("GET /api/v1/status while %s: %v", while, err)
	}
	if st.Status != "success" || st.Data.Targets != len(p.targets) {
		t.Fatalf("GET /api/v1/status while %s: status %q, %d targets; want success and %d", while, st.Status, st.Data.Targets, len(p.targets))
	}
}

// get fetches path and fails the test unless it answers 200 in time.
func (p *webProbe) get(t *testing.T, path, while string) []byte {
	t.Helper()
	resp, err := p.client.Get(p.base + path)
	if err != nil {
		t.Fatalf("GET %s while %s: %v (client timeout %v)", path, while, err, slowWait)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s while %s: HTTP %d, body read error %v", path, while, resp.StatusCode, err)
	}
	return body
}

// checkWithinOneScrape fails the test unless, in one round, every endpoint
// answers while a single scrape of a frozen target stays in flight: its
// count of ended scrapes (finished) is the same after the round as before.
// That target's scrape times out after the whole interval and the next
// begins at once, so a round that has to wait for a scrape to end (a lock
// the scrape holds) never fits in one; a round that does not wait fits,
// however slow the machine, on some try.
func (p *webProbe) checkWithinOneScrape(t *testing.T, while string, finished func() float64) {
	t.Helper()
	harness.WaitFor(t, slowWait, "every endpoint answering within one scrape of the frozen Redis", func() (bool, error) {
		before := finished()
		p.check(t, while)
		ended := finished() - before
		return ended == 0, fmt.Errorf("%v scrapes of the frozen Redis ended during the last round of requests", ended)
	})
}

// TestSlowRedisDoesNotBlockOthers: one of three Redis is frozen (SIGSTOP:
// it answers nothing until thawed). Its scrapes time out, and while they
// do the other two are scraped as before, their samples reach the
// receiver, and every HTTP endpoint answers, within a single scrape of the
// frozen one. Thawed, it is scraped successfully again.
//
// The scrape timeout equals the interval, so the frozen target always has
// a scrape in flight: a handler that waits for it (a lock the scrape
// holds) is seen waiting, however fast or slow the machine.
func TestSlowRedisDoesNotBlockOthers(t *testing.T) {
	const interval = 3 * time.Second
	slow := harness.StartRedis(t)
	healthy := []*harness.Redis{harness.StartRedis(t), harness.StartRedis(t)}
	prom := harness.StartPrometheus(t)
	targets := []redis.TargetConfig{{Addr: slow.URL()}}
	names := []string{slow.Addr()}
	for _, r := range healthy {
		targets = append(targets, redis.TargetConfig{Addr: r.URL()})
		names = append(names, r.Addr())
	}
	cfg := editedTestConfig(t, prom.WriteURL(), func(c *Config) {
		c.Global.ScrapeInterval = model.Duration(interval)
		c.Global.ScrapeTimeout = model.Duration(interval)
		off := false
		c.SelfMetrics.Enabled = &off // only Redis samples on the wire
	}, targets...)
	a := runAgent(t, cfg)
	web := newWebProbe(t, cfg, names)

	harness.WaitFor(t, slowWait, "every target scraped successfully once", func() (bool, error) {
		ok := byTarget(t, a.reg, "redwire_target_last_success_timestamp_seconds")
		for _, n := range names {
			if ok[n] == 0 {
				return false, fmt.Errorf("%s not scraped successfully yet", n)
			}
		}
		return true, nil
	})
	web.check(t, "every Redis answers")

	timedOut := func() float64 {
		return gathered(t, a.reg, "redwire_target_scrape_errors_total", map[string]string{"target": slow.Addr(), "phase": redis.PhaseTimeout})
	}
	// Every scrape of the slow target that ends counts once here, taken
	// or failed.
	ended := func() float64 {
		return gathered(t, a.reg, "redwire_target_scrapes_total", map[string]string{"target": slow.Addr()}) +
			gathered(t, a.reg, "redwire_target_scrape_errors_total", map[string]string{"target": slow.Addr()})
	}
	awake := timedOut()
	slow.Freeze()
	harness.WaitFor(t, slowWait, "a scrape of the frozen Redis timed out", func() (bool, error) {
		web.check(t, "a Redis is frozen")
		n := timedOut()
		return n > awake, fmt.Errorf("%v timed-out scrapes", n)
	})
	web.checkWithinOneScrape(t, "a Redis is frozen", ended)

	// From here until `to` the slow Redis is frozen.
	from := time.Now()
	scrapes0 := byTarget(t, a.reg, "redwire_target_scrapes_total")
	skipped0 := byTarget(t, a.reg, "redwire_target_scrapes_skipped_total")
	errors0 := byTarget(t, a.reg, "redwire_target_scrape_errors_total")
	timedOut0 := timedOut()
	what := fmt.Sprintf("%d more scrapes of each awake Redis and 2 more timed-out ones of the frozen one", slowProgress)
	harness.WaitFor(t, slowWait, what, func() (bool, error) {
		web.check(t, "a Redis is frozen")
		scrapes := byTarget(t, a.reg, "redwire_target_scrapes_total")
		for _, r := range healthy {
			if d := scrapes[r.Addr()] - scrapes0[r.Addr()]; d < slowProgress {
				return false, fmt.Errorf("%s: %v more scrapes", r.Addr(), d)
			}
		}
		if d := timedOut() - timedOut0; d < 2 {
			return false, fmt.Errorf("frozen %s: %v more timed-out scrapes", slow.Addr(), d)
		}
		return true, nil
	})
	to := time.Now()

	skipped := byTarget(t, a.reg, "redwire_target_scrapes_skipped_total")
	errs := byTarget(t, a.reg, "redwire_target_scrape_errors_total")
	failures := byTarget(t, a.reg, "redwire_target_consecutive_failures")
	for _, r := range healthy {
		n := r.Addr()
		if d := skipped[n] - skipped0[n]; d != 0 {
			t.Errorf("awake %s: %v scrapes skipped while the other Redis was frozen, want 0", n, d)
		}
		if d := errs[n] - errors0[n]; d != 0 || failures[n] != 0 {
			t.Errorf("awake %s: %v failed scrapes while the other Redis was frozen (%v in a row), want 0", n, d, failures[n])
		}
	}

	// What the awake targets took while the other was frozen is in the
	// receiver: of the scrapes counted after `from`, at most the one in
	// flight then began before it.
	for _, r := range healthy {
		want := slowProgress - 1
		harness.WaitFor(t, slowWait, fmt.Sprintf("redis_up of %s in Prometheus for the time the other Redis was frozen", r.Addr()), func() (bool, error) {
			n, err := storedBetween(prom, r.Addr(), from, to)
			if err != nil {
				return false, err
			}
			return n >= want, fmt.Errorf("%d redis_up samples from %v to %v, want at least %d", n, from.Format(time.StampMilli), to.Format(time.StampMilli), want)
		})
	}

	// Thawed, the slow Redis is scraped successfully: its loop was not
	// wedged by the timeouts.
	slow.Thaw()
	harness.WaitFor(t, slowWait, "a successful scrape of the Redis that was frozen", func() (bool, error) {
		web.check(t, "a Redis thaws")
		n := gathered(t, a.reg, "redwire_target_consecutive_failures", map[string]string{"target": slow.Addr()})
		return n == 0, fmt.Errorf("%v failed scrapes in a row", n)
	})
	assertNoRejections(t, prom)
}

// closeOnce closes c unless it is closed already.
func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

// storedBetween counts the redis_up samples of instance that Prometheus
// holds with timestamps in [from, to].
func storedBetween(prom *harness.Prometheus, instance string, from, to time.Time) (int, error) {
	series, err := prom.Samples(context.Background(), fmt.Sprintf(`redis_up{instance=%q}`, instance), sampleWindow)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range series {
		for _, p := range s.Points {
			if !p.T.Before(from) && !p.T.After(to) {
				n++
			}
		}
	}
	return n, nil
}

// holdWrites passes each request to next only once release is closed (or
// the request is abandoned): a receiver that holds writes for as long as
// the test wants.
func holdWrites(release <-chan struct{}, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			next.ServeHTTP(w, r)
		case <-r.Context().Done():
			http.Error(w, "abandoned", http.StatusServiceUnavailable)
		}
	})
}

// TestSlowReceiverDoesNotBlockScraping: the receiver holds the writes,
// within remote_timeout, so each one succeeds, late. While one write is
// held, every target is scraped several times and every HTTP endpoint
// answers; once the receiver lets the writes through, everything taken
// arrives: taken = sent + dropped + pending with nothing dropped or
// pending, every sample sent is in Prometheus, and Prometheus refused
// none. (A receiver slower than remote_timeout is
// TestFaultSlowReceiverTimesOutAndRetries.)
func TestSlowReceiverDoesNotBlockScraping(t *testing.T) {
	// remoteTimeout outlasts every wait here: the held write ends when
	// the test releases it, not by a timeout.
	const remoteTimeout = 5 * slowWait
	rs := []*harness.Redis{harness.StartRedis(t), harness.StartRedis(t), harness.StartRedis(t)}
	prom := harness.StartPrometheus(t)
	upstream, err := url.Parse(prom.URL())
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	rp := httputil.NewSingleHostReverseProxy(upstream)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	rp.Transport = tr
	gate := &requestCounter{next: holdWrites(release, rp)}
	srv := httptest.NewServer(gate)
	t.Cleanup(func() {
		closeOnce(release)
		srv.Close()
		tr.CloseIdleConnections()
	})
	var targets []redis.TargetConfig
	var names []string
	for _, r := range rs {
		targets = append(targets, redis.TargetConfig{Addr: r.URL()})
		names = append(names, r.Addr())
	}
	cfg := editedTestConfig(t, srv.URL+"/api/v1/write", func(c *Config) {
		c.RemoteWrite[0].RemoteTimeout = model.Duration(remoteTimeout)
		off := false
		c.SelfMetrics.Enabled = &off // only Redis samples: counts stay exact
	}, targets...)
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	a := runAgent(t, cfg)
	web := newWebProbe(t, cfg, names)

	// The sender is inside one request from now until the test releases
	// it.
	harness.WaitFor(t, slowWait, "a write held by the receiver", func() (bool, error) {
		begun, answered := gate.counts()
		return begun == 1 && answered == 0, fmt.Errorf("%d writes begun, %d answered", begun, answered)
	})
	scrapes0 := byTarget(t, a.reg, "redwire_target_scrapes_total")
	what := fmt.Sprintf("%d more scrapes of every target while one write is held", slowProgress)
	harness.WaitFor(t, slowWait, what, func() (bool, error) {
		web.check(t, "a write is held by the receiver")
		scrapes := byTarget(t, a.reg, "redwire_target_scrapes_total")
		// Read after the scrapes and the requests: they happened while
		// the write was still held, not after the agent gave up on it.
		if begun, answered := gate.counts(); begun != 1 || answered != 0 {
			t.Fatalf("the held write was abandoned (%d begun, %d answered) before every target was scraped %d more times: scrapes %v, before %v",
				begun, answered, slowProgress, scrapes, scrapes0)
		}
		for _, n := range names {
			if d := scrapes[n] - scrapes0[n]; d < slowProgress {
				return false, fmt.Errorf("%s: %v more scrapes", n, d)
			}
		}
		return true, nil
	})

	closeOnce(release)
	harness.WaitFor(t, slowWait, "every sample taken sent once the receiver is fast again", func() (bool, error) {
		web.check(t, "the receiver catches up")
		acc := sampleAccount(t, a.reg, ep)
		return acc.balanced() && acc.pending == 0, acc
	})

	// Stopped, the agent's counts stand still and can be compared with
	// the receiver's exactly.
	a.stop()
	acc := sampleAccount(t, a.reg, ep)
	if !acc.balanced() || acc.dropped != 0 || acc.pending != 0 {
		t.Errorf("after stop: %v; want taken = sent, nothing dropped or pending", acc)
	}
	for _, result := range []string{"retry", "rate_limited", "reject", "unauthorized", "too_large"} {
		if v := gathered(t, a.reg, "redwire_remote_write_requests_total", map[string]string{"endpoint": ep["endpoint"], "result": result}); v != 0 {
			t.Errorf(`redwire_remote_write_requests_total{result=%q} = %v, want 0: every write was held, none failed`, result, v)
		}
	}
	harness.WaitFor(t, slowWait, "every sample sent in Prometheus", func() (bool, error) {
		n, err := storedSamples(prom, `{job="redis"}`)
		if err != nil {
			return false, err
		}
		return n == int(acc.sent), fmt.Errorf("%d samples in Prometheus, %v sent", n, acc.sent)
	})
	scrapes := byTarget(t, a.reg, "redwire_target_scrapes_total")
	for _, n := range names {
		if got := delivered(t, prom, n); float64(got) != scrapes[n] {
			t.Errorf("%s: %d redis_up samples in Prometheus, %v scrapes taken", n, got, scrapes[n])
		}
	}
	assertNoRejections(t, prom)
}

// account is taken = sent + dropped + pending for one endpoint, in
// samples, read from the agent's registry.
type account struct {
	taken, sent, dropped, thinned, pending float64
}

func sampleAccount(t *testing.T, reg prometheus.Gatherer, ep map[string]string) account {
	t.Helper()
	return account{
		taken:   gathered(t, reg, "redwire_samples_scraped_total", nil),
		sent:    gathered(t, reg, "redwire_remote_write_samples_total", map[string]string{"endpoint": ep["endpoint"], "result": "success"}),
		dropped: gathered(t, reg, "redwire_samples_dropped_total", ep),
		thinned: gathered(t, reg, "redwire_samples_thinned_total", ep),
		pending: gathered(t, reg, "redwire_queue_samples", ep) + gathered(t, reg, "redwire_buffer_samples", ep),
	}
}

// balanced: nothing taken is unaccounted for, nothing counted twice.
// Thinned samples (buffer.max_bytes kept their range at a coarser
// resolution) are neither sent nor dropped: they have their own term.
func (a account) balanced() bool { return a.taken == a.sent+a.dropped+a.thinned+a.pending }

// Error makes an account the reason a wait goes on.
func (a account) Error() string {
	return fmt.Sprintf("taken %v, sent %v + dropped %v + thinned %v + pending %v = %v", a.taken, a.sent, a.dropped, a.thinned, a.pending, a.sent+a.dropped+a.thinned+a.pending)
}

// storedSamples counts the samples of selector Prometheus holds.
func storedSamples(prom *harness.Prometheus, selector string) (int, error) {
	series, err := prom.Samples(context.Background(), selector, sampleWindow)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range series {
		n += len(s.Points)
	}
	return n, nil
}
