package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	goredis "github.com/redis/go-redis/v9"

	"github.com/redwire/redwire/internal/harness"
	"github.com/redwire/redwire/sources/redis"
)

// The slow tests hold what the agent talks to: a Redis busy in DEBUG SLEEP
// and a receiver that answers each write only after seconds. Neither may
// hold up the scrapes of the other targets or the agent's HTTP endpoints.
// Nothing here measures speed. Each test takes a span of time in which
// something is known to be stuck (a Redis asleep, a write unanswered) and
// checks that the rest kept working all along: other targets scraped,
// every HTTP endpoint answering within a client timeout shorter than the
// stall, so an endpoint waiting on the stuck thing fails rather than just
// looking slow.

const (
	// slowWebTimeout bounds each request to the agent's HTTP endpoints. It
	// is a failure condition: shorter than every stall below, so a
	// handler that waits for the stuck scrape or send runs out of time.
	slowWebTimeout = 2 * time.Second
	// slowProgress is how many more scrapes every unaffected target must
	// make while something is stuck.
	slowProgress = 3
	// slowWait bounds every wait here; reaching it is a failure.
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
		client:  &http.Client{Transport: tr, Timeout: slowWebTimeout},
		targets: slices.Sorted(slices.Values(targets)),
	}
}

// check fails the test unless /metrics, /api/v1/targets and /api/v1/status
// each answer in full within slowWebTimeout, while what names something
// stuck.
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
		t.Fatalf("GET %s while %s: %v (client timeout %v)", path, while, err, slowWebTimeout)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s while %s: HTTP %d, body read error %v", path, while, resp.StatusCode, err)
	}
	return body
}

// redisSleeper keeps one Redis busy in DEBUG SLEEP, back to back, from a
// connection of its own: the server's single thread runs nothing else, so
// every client, the agent included, waits.
type redisSleeper struct {
	client *goredis.Client
	cancel context.CancelFunc
	done   chan struct{}
	errc   chan error // the first error while not stopping
}

// startSleeper puts r to sleep for d at a time until stop. r must run with
// --enable-debug-command.
func startSleeper(t *testing.T, r *harness.Redis, d time.Duration) *redisSleeper {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{
		Addr: r.Addr(), PoolSize: 1, MaxRetries: -1,
		ReadTimeout: d + 10*time.Second, // a sleep is an answer that takes d
	})
	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	if err := c.Do(t.Context(), "DEBUG", "SLEEP", "0").Err(); err != nil {
		c.Close()
		t.Fatalf("DEBUG SLEEP on %s: %v (is --enable-debug-command on?)", r.Addr(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &redisSleeper{client: c, cancel: cancel, done: make(chan struct{}), errc: make(chan error, 1)}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			if err := c.Do(ctx, "DEBUG", "SLEEP", secs).Err(); err != nil && ctx.Err() == nil {
				s.errc <- fmt.Errorf("DEBUG SLEEP %s on %s: %w", secs, r.Addr(), err)
				return
			}
		}
	}()
	t.Cleanup(s.stop)
	return s
}

// failed fails the test if the sleeper stopped on an error: then Redis is
// not kept asleep and the test would prove nothing.
func (s *redisSleeper) failed(t *testing.T) {
	t.Helper()
	select {
	case err := <-s.errc:
		t.Fatalf("the sleeper stopped: %v", err)
	default:
	}
}

// stop ends the loop without waiting for the sleep in progress: closing
// the connection ends the wait for its answer. Redis itself sleeps on
// until that sleep is over. Idempotent.
func (s *redisSleeper) stop() {
	s.cancel()
	s.client.Close()
	<-s.done
}

// TestSlowRedisDoesNotBlockOthers: one of three Redis is kept asleep
// (DEBUG SLEEP, longer than the scrape timeout, over and over). Its scrapes
// time out, and while they do the other two are scraped as before, their
// samples reach the receiver, and every HTTP endpoint answers. Once it
// wakes up it is scraped successfully again.
//
// The scrape timeout equals the interval and exceeds slowWebTimeout, so
// the slow target has a scrape in flight nearly all the time and a
// handler that waits for it (a lock the scrape holds) misses the client
// timeout. With the default 1 s interval the timeout would be 0.8 s, and
// such a handler would only look slow.
func TestSlowRedisDoesNotBlockOthers(t *testing.T) {
	const (
		interval = 3 * time.Second
		// asleep is one DEBUG SLEEP. Between two of them Redis answers
		// what waits, so a scrape spanning the gap succeeds; a sleep
		// several scrape timeouts long makes most scrapes time out.
		asleep = 10 * time.Second
	)
	slow := harness.StartRedis(t, harness.WithArgs("--enable-debug-command", "yes"))
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
	awake := timedOut()
	sleeper := startSleeper(t, slow, asleep)
	harness.WaitFor(t, slowWait, "a scrape of the sleeping Redis timed out", func() (bool, error) {
		sleeper.failed(t)
		web.check(t, "a Redis is asleep")
		n := timedOut()
		return n > awake, fmt.Errorf("%v timed-out scrapes", n)
	})

	// From here until `to` the slow Redis is asleep but for the gaps
	// between two sleeps.
	from := time.Now()
	scrapes0 := byTarget(t, a.reg, "redwire_target_scrapes_total")
	skipped0 := byTarget(t, a.reg, "redwire_target_scrapes_skipped_total")
	errors0 := byTarget(t, a.reg, "redwire_target_scrape_errors_total")
	timedOut0 := timedOut()
	what := fmt.Sprintf("%d more scrapes of each awake Redis and 2 more timed-out ones of the sleeping one", slowProgress)
	harness.WaitFor(t, slowWait, what, func() (bool, error) {
		sleeper.failed(t)
		web.check(t, "a Redis is asleep")
		scrapes := byTarget(t, a.reg, "redwire_target_scrapes_total")
		for _, r := range healthy {
			if d := scrapes[r.Addr()] - scrapes0[r.Addr()]; d < slowProgress {
				return false, fmt.Errorf("%s: %v more scrapes", r.Addr(), d)
			}
		}
		if d := timedOut() - timedOut0; d < 2 {
			return false, fmt.Errorf("sleeping %s: %v more timed-out scrapes", slow.Addr(), d)
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
			t.Errorf("awake %s: %v scrapes skipped while the other Redis slept, want 0", n, d)
		}
		if d := errs[n] - errors0[n]; d != 0 || failures[n] != 0 {
			t.Errorf("awake %s: %v failed scrapes while the other Redis slept (%v in a row), want 0", n, d, failures[n])
		}
	}

	// What the awake targets took while the other slept is in the
	// receiver: of the scrapes counted after `from`, at most the one in
	// flight then began before it.
	for _, r := range healthy {
		want := slowProgress - 1
		harness.WaitFor(t, slowWait, fmt.Sprintf("redis_up of %s in Prometheus for the time the other Redis slept", r.Addr()), func() (bool, error) {
			n, err := storedBetween(prom, r.Addr(), from, to)
			if err != nil {
				return false, err
			}
			return n >= want, fmt.Errorf("%d redis_up samples from %v to %v, want at least %d", n, from.Format(time.StampMilli), to.Format(time.StampMilli), want)
		})
	}

	// Awake again, the slow Redis is scraped successfully: its loop was
	// not wedged by the timeouts.
	sleeper.stop()
	harness.WaitFor(t, slowWait, "a successful scrape of the Redis that slept", func() (bool, error) {
		web.check(t, "a Redis wakes up")
		n := gathered(t, a.reg, "redwire_target_consecutive_failures", map[string]string{"target": slow.Addr()})
		return n == 0, fmt.Errorf("%v failed scrapes in a row", n)
	})
	assertNoRejections(t, prom)
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

// TestSlowReceiverDoesNotBlockScraping: the receiver holds every write for
// seconds, within remote_timeout, so each one succeeds, late. While one
// write is held, every target is scraped several times and every HTTP
// endpoint answers; once the receiver is fast again, everything taken
// arrives: taken = sent + dropped + pending with nothing dropped or
// pending, every sample sent is in Prometheus, and Prometheus refused
// none. (A receiver slower than remote_timeout is
// TestFaultSlowReceiverTimesOutAndRetries.)
func TestSlowReceiverDoesNotBlockScraping(t *testing.T) {
	const (
		// held is how long the receiver holds each write: several scrape
		// intervals, and more than slowWebTimeout.
		held          = 8 * time.Second
		remoteTimeout = 10 * time.Second
	)
	rs := []*harness.Redis{harness.StartRedis(t), harness.StartRedis(t), harness.StartRedis(t)}
	prom := harness.StartPrometheus(t)
	proxy := harness.StartProxy(t, prom.URL())
	gate, writeURL := startRequestCounter(t, proxy.URL())
	var targets []redis.TargetConfig
	var names []string
	for _, r := range rs {
		targets = append(targets, redis.TargetConfig{Addr: r.URL()})
		names = append(names, r.Addr())
	}
	cfg := editedTestConfig(t, writeURL, func(c *Config) {
		c.RemoteWrite[0].RemoteTimeout = model.Duration(remoteTimeout)
		off := false
		c.SelfMetrics.Enabled = &off // only Redis samples: counts stay exact
	}, targets...)
	ep := map[string]string{"endpoint": cfg.RemoteWrite[0].Label()}
	proxy.Delay(held)
	a := runAgent(t, cfg)
	web := newWebProbe(t, cfg, names)

	// The sender is inside one request from now until the receiver
	// answers it, `held` after it arrived.
	harness.WaitFor(t, slowWait, "a write held by the receiver", func() (bool, error) {
		begun, answered := gate.counts()
		return begun == 1 && answered == 0, fmt.Errorf("%d writes begun, %d answered", begun, answered)
	})
	scrapes0 := byTarget(t, a.reg, "redwire_target_scrapes_total")
	what := fmt.Sprintf("%d more scrapes of every target while one write is held", slowProgress)
	harness.WaitFor(t, slowWait, what, func() (bool, error) {
		web.check(t, "a write is held by the receiver")
		scrapes := byTarget(t, a.reg, "redwire_target_scrapes_total")
		// Read after the scrapes: a scrape counted above happened while
		// the write was still held.
		if begun, answered := gate.counts(); begun != 1 || answered != 0 {
			t.Fatalf("the held write was answered (%d begun, %d answered) before every target was scraped %d more times: scrapes %v, before %v",
				begun, answered, slowProgress, scrapes, scrapes0)
		}
		for _, n := range names {
			if d := scrapes[n] - scrapes0[n]; d < slowProgress {
				return false, fmt.Errorf("%s: %v more scrapes", n, d)
			}
		}
		return true, nil
	})

	proxy.Clear()
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
	taken, sent, dropped, pending float64
}

func sampleAccount(t *testing.T, reg prometheus.Gatherer, ep map[string]string) account {
	t.Helper()
	return account{
		taken:   gathered(t, reg, "redwire_samples_scraped_total", nil),
		sent:    gathered(t, reg, "redwire_remote_write_samples_total", map[string]string{"endpoint": ep["endpoint"], "result": "success"}),
		dropped: gathered(t, reg, "redwire_samples_dropped_total", ep),
		pending: gathered(t, reg, "redwire_queue_samples", ep) + gathered(t, reg, "redwire_buffer_samples", ep),
	}
}

// balanced: nothing taken is unaccounted for, nothing counted twice.
func (a account) balanced() bool { return a.taken == a.sent+a.dropped+a.pending }

// Error makes an account the reason a wait goes on.
func (a account) Error() string {
	return fmt.Sprintf("taken %v, sent %v + dropped %v + pending %v = %v", a.taken, a.sent, a.dropped, a.pending, a.sent+a.dropped+a.pending)
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
